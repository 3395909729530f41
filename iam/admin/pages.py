"""The console's pages: signed-in admins only, the console's layout, its CSRF-checked forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam.admin.auth import signed_in_admin
from iam.db.models import Admin
from iam.errors import NotFoundError
from iam.web import FormRefusedError, Web

PageHandler = Callable[[Request, Admin], Awaitable[Response]]
FormHandler = Callable[[Request, Admin, FormData], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page(handler: PageHandler, *, not_found: str | None = None) -> Endpoint:
    """A console page: signed-in admins only (others go to the sign-in page). With `not_found`,
    a `NotFoundError` the handler lets through (the record its path names is gone) answers that
    message, 404: the handler need not catch it around each lookup."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        admin = await signed_in_admin(request)
        if admin is None:
            return RedirectResponse("/admin/login", status_code=303)
        try:
            return await handler(request, admin)
        except NotFoundError:
            if not_found is None:
                raise
            return message(request, admin, not_found, 404)

    return endpoint


def form_page(handler: FormHandler, *, not_found: str | None = None) -> Endpoint:
    """A console form's POST: a `page` whose handler gets the posted form, CSRF-checked first
    (a refused form answers the refusal page, and the handler never runs)."""

    @wraps(handler)
    async def with_form(request: Request, admin: Admin) -> Response:
        form = await console_form(request, admin)
        if isinstance(form, Response):
            return form
        return await handler(request, admin, form)

    return page(with_form, not_found=not_found)


@dataclass(frozen=True)
class Area:
    """The `page` and `form_page` of one console area (apps, corps, users), which says its
    not-found message once for all its pages."""

    not_found: str

    def page(self, handler: PageHandler) -> Endpoint:
        return page(handler, not_found=self.not_found)

    def form(self, handler: FormHandler) -> Endpoint:
        return form_page(handler, not_found=self.not_found)


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


def message(request: Request, admin: Admin, message_key: str, status_code: int) -> Response:
    """The console's page that says only `message_key` (a refusal, a record not found...)."""
    context = {"message_key": message_key, "params": {}}
    return render(request, "admin/message.html", admin, context, status_code)


#: The console's forms are longer than the sign-in pages' (`iam.web.MAX_FORM_FIELDS`): an
#: app's holds some 20 fields, a lifetime's unit beside each lifetime, and one per scope.
MAX_CONSOLE_FORM_FIELDS = 60


async def console_form(request: Request, admin: Admin) -> FormData | Response:
    """The posted form, CSRF-checked; or the page that refuses it."""
    web: Web = request.app.state.web
    try:
        return await web.read_form(request, max_fields=MAX_CONSOLE_FORM_FIELDS)
    except FormRefusedError as refused:
        return message(request, admin, refused.message_key, refused.status_code)


def see_other(path: str) -> Response:
    return RedirectResponse(path, status_code=303)
