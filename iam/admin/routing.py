"""Everything under /admin (the address guard in front of it is app-wide middleware)."""

from __future__ import annotations

from starlette.routing import Mount

from iam.admin import apps, audit, corps, home, keys, openapi, users


def admin_mount() -> Mount:
    routes = [
        *home.routes,
        *openapi.routes,
        *apps.routes,
        *corps.routes,
        *users.routes,
        *audit.routes,
        *keys.routes,
    ]
    return Mount("/admin", routes=routes)
