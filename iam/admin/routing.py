"""Everything under /admin, behind the address guard."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount

from iam.admin import apps, audit, corps, home, keys, openapi, users
from iam.admin.common import AddressGuard
from iam.settings import Settings


def admin_mount(settings: Settings) -> Mount:
    routes = [
        *home.routes,
        *openapi.routes,
        *apps.routes,
        *corps.routes,
        *users.routes,
        *audit.routes,
        *keys.routes,
    ]
    guard = Middleware(AddressGuard, networks=settings.admin_allow_cidrs)
    return Mount("/admin", routes=routes, middleware=[guard])
