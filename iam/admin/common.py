"""What every admin page and API call shares: who is calling (an admin's console session, or a
bearer token of an admin client), the address guard, JSON errors that name the field, and the
console's layout, forms and CSRF."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from iam.db.models import Admin
from iam.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from iam.oidc.endpoints import Oidc
from iam.oidc.tokens import admin_client_of
from iam.services import admins, clients
from iam.settings import IpNetwork
from iam.web import CSRF_FIELD, FormRefusedError, Web

log = logging.getLogger("iam.admin")
ADMIN_COOKIE = "iam_admin"
ADMIN_SCOPE = clients.ADMIN_SCOPE
MAX_JSON_BYTES = 64 * 1024
#: What a console page sends its CSRF token in when it calls the API with the cookie.
CSRF_HEADER = "x-csrf-token"
CSRF_MESSAGE = (
    "A change with the console session must come from the console: send the issuer's Origin "
    "or the console's CSRF token in X-CSRF-Token."
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressGuard:
    """An address allowlist, before anything else (`IAM_ADMIN_ALLOW_CIDRS` for `/admin`,
    `IAM_METRICS_ALLOW_CIDRS` for `/metrics`): a refused address gets 403 and no page, for
    every path under `prefix` (whether or not a route matches it)."""

    def __init__(self, app: ASGIApp, networks: Sequence[IpNetwork], prefix: str = "/admin") -> None:
        self.app = app
        self.networks = tuple(networks)
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "http" and _under(scope.get("path", ""), self.prefix)
        if guarded and not self.allows(scope.get("client")):
            response = Response(status_code=403, headers={"cache-control": "no-store"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def allows(self, client: tuple[str, int] | None) -> bool:
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def is_api_path(path: str) -> bool:
    """Paths answered in JSON, errors included (even when no route matches)."""
    return _under(path, "/admin/api")


@dataclass(frozen=True)
class Caller:
    """Who makes an admin call: an admin (console session) or an admin client (bearer token)."""

    name: str
    kind: str  # "admin" or "client"

    @property
    def actor(self) -> str:
        """How the audit trail names them."""
        return f"{self.kind}:{self.name}"


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def signed_in_admin(request: Request) -> Admin | None:
    return await run_in_threadpool(
        admins.find_session, request.app.state.store, request.cookies.get(ADMIN_COOKIE)
    )


async def bearer_caller(request: Request) -> Caller | None:
    """A live JWT access token of ours, from `client_credentials` (no user), with scope
    `iam:admin`, of a client flagged as admin."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    oidc: Oidc = request.app.state.oidc
    client_id = await oidc.runner(
        admin_client_of, token.strip(), oidc.keys, oidc.issuer, ADMIN_SCOPE
    )
    return Caller(client_id, "client") if client_id else None


# --- the API ---------------------------------------------------------------------------------


class ApiError(Exception):
    """An API refusal: HTTP status, an error code, a message, and the field at fault."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field


def json_error(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    headers = {"cache-control": "no-store"}
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="iam-admin"'
    return JSONResponse(body, status_code=status, headers=headers)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object: `application/json` (so no plain HTML form can send it
    cross-site), at most 64 KiB."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send application/json.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_JSON_BYTES):
        raise ApiError(413, "too_large", "The request body is too large.")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", "The request body is too large.")
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return data


ApiHandler = Callable[[Request, Caller], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def by_method(**handlers: Endpoint) -> Endpoint:
    """One route, several methods: a wrong method gets 405 listing all of them (two routes on
    one path would each list only their own)."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint


def origin_of(url: str) -> str:
    """The ASCII serialisation of a URL's origin (RFC 6454 6.2), as browsers send it in
    `Origin`: scheme and host lowercased, the default port left out."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return "null"
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def from_the_console(request: Request) -> bool:
    """Whether a call that rides on the console cookie can be the console's own. The cookie is
    SameSite=Strict, but "same site" includes sibling hosts, and a browser sends it on any
    request its pages start: a change (POST, PUT, PATCH, DELETE) must prove it came from our
    origin, by the console's CSRF token in `X-CSRF-Token`, or by an `Origin` that is the
    issuer's (OWASP CSRF Prevention: verifying origin with standard headers). Fetch metadata
    that says another site started it, or an `Origin` that is not ours, is refused whatever
    else comes."""
    if request.method in SAFE_METHODS:
        return True
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    origin = request.headers.get("origin")
    ours = origin_of(request.app.state.settings.issuer)
    if origin is not None and origin != ours:
        return False
    token = request.headers.get(CSRF_HEADER)
    if token is not None:
        web: Web = request.app.state.web
        return web.check_csrf(request, {CSRF_FIELD: token})
    return origin == ours


def api(handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
    """An admin API endpoint: the caller is authenticated (console session or admin bearer
    token), and service errors become JSON with a status: 404, 409, 403, 422 naming the field."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        admin = await signed_in_admin(request)
        cross_site = admin is not None and not from_the_console(request)
        if cross_site:
            admin = None  # the cookie does not count; a bearer token still may
        caller = Caller(admin.username, "admin") if admin else await bearer_caller(request)
        if caller is None and cross_site:
            return json_error(403, "csrf", CSRF_MESSAGE)
        if caller is None:
            return json_error(401, "unauthorized", "Sign in to the console or send an admin token.")
        try:
            return await handler(request, caller)
        except ApiError as error:
            return json_error(error.status, error.error, error.message, error.field)
        except ValidationError as error:
            return json_error(422, "invalid", str(error), error.field)
        except NotFoundError as error:
            return json_error(404, "not_found", str(error))
        except ConflictError as error:
            return json_error(409, "conflict", str(error))
        except ForbiddenError as error:
            return json_error(403, "forbidden", str(error))

    return endpoint


def field_of(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool
) -> Any:
    """One field of a JSON body, of the given type; `ApiError` 422 naming it otherwise."""
    if name not in data or data[name] is None:
        if required:
            raise ApiError(422, "invalid", f"{name} is required.", name)
        return None
    value = data[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
    if not isinstance(value, kind):
        raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
    return value


def whole_number(data: dict[str, Any], name: str, *, required: bool) -> int | None:
    """An integer field; JSON Schema counts 600.0 as an integer too, so it is read as 600."""
    value: int | float | None = field_of(data, name, (int, float), required=required)
    if isinstance(value, float):
        if not value.is_integer():
            raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
        value = int(value)
    return value


def unknown_fields(data: dict[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ApiError(422, "invalid", f"Unknown field {extra[0]!r}.", extra[0])


# --- the console -----------------------------------------------------------------------------

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
