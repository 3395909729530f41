"""The admin API's endpoints: an authenticated caller (console session or admin bearer token),
and every refusal as JSON with a status, an error code, a message and the field at fault."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam.admin.auth import Caller, bearer_caller, signed_in_admin
from iam.admin.guard import under
from iam.admin.origin import from_the_console
from iam.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError

CSRF_MESSAGE = (
    "A change with the console session must come from the console: send the issuer's Origin "
    "or the console's CSRF token in X-CSRF-Token."
)

ApiHandler = Callable[[Request, Caller], Awaitable[Response]]


def is_api_path(path: str) -> bool:
    """Paths answered in JSON, errors included (even when no route matches)."""
    return under(path, "/admin/api")


class ApiError(Exception):
    """An API refusal: HTTP status, an error code, a message, and the field at fault."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field


def no_store_json(body: Any = None, status_code: int = 200, **headers: str) -> Response:
    """An API answer (JSON, or nothing for 204) that no cache keeps: answers name people, say
    what is connected where, and may hold a secret shown once."""
    headers["cache-control"] = "no-store"
    if body is None:
        return Response(status_code=status_code, headers=headers)
    return JSONResponse(body, status_code=status_code, headers=headers)


def json_error(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    headers = {"cache-control": "no-store"}
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="iam-admin"'
    return JSONResponse(body, status_code=status, headers=headers)


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
