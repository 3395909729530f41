"""The console's pages: signed-in admins only, the console's layout, its CSRF-checked forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam.admin.auth import signed_in_admin
from iam.db.models import Admin
from iam.web import FormRefusedError, Web

PageHandler = Callable[[Request, Admin], Awaitable[Response]]


def page(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A console page: signed-in admins only (others go to the sign-in page)."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        admin = await signed_in_admin(request)
        if admin is None:
            return RedirectResponse("/admin/login", status_code=303)
        return await handler(request, admin)

    return endpoint


def render(
    request: Request,
    template: str,
    admin: Admin | None,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    web: Web = request.app.state.web
    response = web.render(request, template, {"admin": admin, **(context or {})}, status_code)
    response.headers["cache-control"] = "no-store"
    return response


async def console_form(request: Request, admin: Admin) -> FormData | Response:
    """The posted form, CSRF-checked; or the page that refuses it."""
    web: Web = request.app.state.web
    try:
        return await web.read_form(request)
    except FormRefusedError as refused:
        return render(
            request,
            "admin/message.html",
            admin,
            {"message_key": refused.message_key, "params": {}},
            refused.status_code,
        )


def see_other(path: str) -> Response:
    return RedirectResponse(path, status_code=303)
