"""Everything under /admin (the address guard in front of it is app-wide middleware)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from iam.admin import apps, audit, corps, home, keys, openapi, users
from iam.admin.methods import Endpoint
from iam.admin.pages import see_other

#: The prefix the console is mounted at.
PREFIX = "/admin"


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
    return Mount(PREFIX, routes=[*routes, *back_to_pages(routes)])


def back_to_pages(routes: list[BaseRoute]) -> list[Route]:
    """A GET route for each of the console's POST-only form URLs, sending the browser (303) to
    the page the form is on: a reload after a refused form, a shared or typed address, finds
    that page rather than a bare "Method Not Allowed". The page is the nearest path above with
    a GET page (`/apps/{client_id}/rotate` → `/apps/{client_id}`, `/logout` → `/`). The JSON
    API (`/api/...`) keeps its 405."""
    pages = {route.path for route in routes if isinstance(route, Route) and _answers_get(route)}
    added = []
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith("/api/") or _answers_get(route):
            continue
        if route.methods and "POST" in route.methods:
            added.append(Route(route.path, _see_page(_page_above(route.path, pages))))
    return added


def _answers_get(route: Route) -> bool:
    return route.methods is None or "GET" in route.methods


def _page_above(path: str, pages: set[str]) -> str:
    while path not in pages and path != "/":
        path = path.rsplit("/", 1)[0] or "/"
    return path


def _see_page(template: str) -> Endpoint:
    """GET: 303 to `template` filled with the request's path parameters."""

    async def endpoint(request: Request) -> Response:
        params = {name: quote(str(value), safe="") for name, value in request.path_params.items()}
        return see_other(PREFIX + template.format(**params))

    return endpoint
