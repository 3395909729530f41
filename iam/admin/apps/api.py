"""Admin apps: reading app JSON and the API handlers under /admin/api/apps."""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam.admin.auth import Caller
from iam.admin.json_api import ApiError, api
from iam.admin.json_body import field_of, read_json, unknown_fields, whole_number
from iam.db.models import Client
from iam.db.store import Store
from iam.errors import NotFoundError, ValidationError
from iam.services import clients

T = TypeVar("T")

LIFETIME_FIELDS = ("access_token_ttl", "id_token_ttl", "refresh_token_ttl")
#: What a caller may set; `public` only at creation.
EDITABLE = (
    "name",
    "redirect_uris",
    "post_logout_redirect_uris",
    "scopes",
    "context_policy",
    "context_claim",
    *LIFETIME_FIELDS,
)
READ_ONLY = (
    "client_id",
    "admin",
    "has_previous_secret",
    "created_at",
    "secret_rotated_at",
    "client_secret",
)
#: The service's names for a field at fault → the API's and the forms'.
FIELD_NAMES = {
    "redirect_uri": "redirect_uris",
    "post_logout_redirect_uri": "post_logout_redirect_uris",
    "allowed_scopes": "scopes",
}
MAX_URIS = 20

# The documented shapes. Each ends in `(?!\n)$`: Python's `$` also matches before a final
# newline, ECMA-262's does not; this way both read the pattern alike.
#: Not blank, no control characters.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*(?!\n)$"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#: https with a plain ASCII host, or http on a loopback host; no userinfo, fragment, wildcard,
#: space or control character. (The service also takes IDN and IPv6 hosts from the CLI.)
URI_PATTERN = (
    r"^(?:https://(?:[A-Za-z0-9._~%!$&'()+,;=-]+|\[::1\])"
    rf"|http://(?:localhost|127\.{_OCTET}\.{_OCTET}\.{_OCTET}|\[::1\]))"
    r"(?::[0-9]{1,5})?(?:[/?][^\x00-\x20\x7f#*]*)?(?!\n)$"
)
CLAIM_PATTERN = r"^[A-Za-z0-9_:/.\-#]{1,255}(?!\n)$"


# --- JSON ------------------------------------------------------------------------------------


def _timestamp(moment: datetime | None) -> str | None:
    return moment.replace(microsecond=0).isoformat() + "Z" if moment else None


def app_json(client: Client) -> dict[str, Any]:
    """An app as the API shows it: never a secret or its digest. `iam:admin` is not listed
    among the scopes; `admin` says whether the app has it."""
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "admin": client.is_admin,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "scopes": [
            scope for scope in client.allowed_scopes.split() if scope != clients.ADMIN_SCOPE
        ],
        "context_policy": client.context_policy,
        "context_claim": client.context_claim,
        "access_token_ttl": client.access_token_ttl,
        "id_token_ttl": client.id_token_ttl,
        "refresh_token_ttl": client.refresh_token_ttl,
        "has_previous_secret": client.previous_secret_hash is not None,
        "created_at": _timestamp(client.created_at),
        "secret_rotated_at": _timestamp(client.secret_rotated_at),
    }


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid", message, field)


def _present(data: dict[str, Any], name: str, kind: type) -> Any:
    """A field the body has: of `kind`, never null (no field of an app may be)."""
    if data[name] is None:
        raise _invalid(name, f"{name} must not be null.")
    return field_of(data, name, kind, required=True)


def _text(data: dict[str, Any], name: str, pattern: str, max_length: int) -> str:
    value: str = _present(data, name, str)
    if not _is_text(value) or len(value) > max_length or not re.search(pattern, value):
        raise _invalid(name, f"{name} is not in the documented form: {value[:100]!r}")
    return value


def _is_text(value: str) -> bool:
    """Encodable (a lone surrogate in JSON is not text any database takes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _uris(data: dict[str, Any], name: str, *, least: int) -> list[str]:
    value: list[Any] = _present(data, name, list)
    if not least <= len(value) <= MAX_URIS:
        raise _invalid(name, f"{name} takes {least} to {MAX_URIS} URIs.")
    for uri in value:
        if not isinstance(uri, str) or not _is_text(uri):
            raise _invalid(name, f"{name} must be a list of strings.")
        try:  # the service's own message first: it says what is wrong
            clients.check_redirect_uri(uri, name)
        except ValidationError as error:
            raise _invalid(name, str(error)) from None
        if len(uri) > 2000 or not re.search(URI_PATTERN, uri):
            raise _invalid(
                name,
                f"{name}: use https with a plain ASCII host name (http only on 127.0.0.1, "
                f"localhost or [::1]), without user info: {uri[:100]!r}",
            )
    return value


def _scopes(data: dict[str, Any]) -> list[str]:
    value: list[Any] = _present(data, "scopes", list)
    for scope in value:
        if scope not in clients.SUPPORTED_SCOPES:
            raise _invalid(
                "scopes",
                f"Unsupported scope {scope!r}: choose among "
                f"{', '.join(clients.SUPPORTED_SCOPES)} ({clients.ADMIN_SCOPE} comes with an "
                "admin client and cannot be granted here).",
            )
    return value


def _lifetime(data: dict[str, Any], name: str) -> int:
    if data[name] is None:
        raise _invalid(name, f"{name} must not be null.")
    value = whole_number(data, name, required=True)
    assert value is not None  # required
    _default, least, most = clients.LIFETIMES[name]
    if not least <= value <= most:
        raise _invalid(name, f"{name} must be {least} to {most} seconds.")
    return value


def read_app(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The body's fields, each of the documented type and form (422 naming the first that is
    not). Absent fields are absent from the result: the service's defaults, or no change."""
    if not creating and "public" in data:
        raise _invalid("public", "public cannot change after creation: register a new app instead.")
    for name in READ_ONLY:
        if name in data:
            raise _invalid(name, f"{name} is read-only.")
    unknown_fields(data, (*EDITABLE, "public") if creating else EDITABLE)
    if creating:
        for name in ("name", "redirect_uris"):
            field_of(data, name, object, required=True)
    return {name: _read(data, name) for name in (*EDITABLE, "public") if name in data}


def _read(data: dict[str, Any], name: str) -> Any:
    if name == "name":
        return _text(data, name, NAME_PATTERN, 200)
    if name in ("redirect_uris", "post_logout_redirect_uris"):
        return _uris(data, name, least=1 if name == "redirect_uris" else 0)
    if name == "public":
        return _present(data, name, bool)
    if name == "scopes":
        return _scopes(data)
    if name == "context_policy":
        return _policy(data)
    if name == "context_claim":
        return _claim(data)
    return _lifetime(data, name)


def _policy(data: dict[str, Any]) -> str:
    value: str = _present(data, "context_policy", str)
    if value not in clients.CONTEXT_POLICIES:
        raise _invalid(
            "context_policy",
            f"context_policy must be one of {', '.join(clients.CONTEXT_POLICIES)}.",
        )
    return value


def _claim(data: dict[str, Any]) -> str:
    value = _text(data, "context_claim", CLAIM_PATTERN, 255)
    if value in clients.RESERVED_CLAIMS:
        raise _invalid("context_claim", f"{value!r} is a standard claim: choose another name.")
    return value


def _create_args(values: dict[str, Any]) -> dict[str, Any]:
    """create_client's keyword arguments from the API's (or a form's) names."""
    args = {key: value for key, value in values.items() if key not in ("name", "redirect_uris")}
    if "scopes" in args:
        args["scopes"] = " ".join(args["scopes"])
    return args


def _update_args(values: dict[str, Any]) -> dict[str, Any]:
    args = dict(values)
    if "scopes" in args:
        args["allowed_scopes"] = args.pop("scopes")
    return args


async def _call(service: Callable[[], T]) -> T:
    """Run a service in the thread pool; the field it names at fault is named as the API and
    the forms name it."""
    try:
        return await run_in_threadpool(service)
    except ValidationError as error:
        raise ValidationError(FIELD_NAMES.get(error.field, error.field), str(error)) from None


def _answer(body: Any = None, status_code: int = 200, **headers: str) -> Response:
    """JSON (or nothing, for 204) that no cache keeps: answers may hold a secret."""
    headers["cache-control"] = "no-store"
    if body is None:
        return Response(status_code=status_code, headers=headers)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@api
async def api_list(request: Request, caller: Caller) -> Response:
    apps = await run_in_threadpool(clients.list_clients, _store(request))
    return _answer({"apps": [app_json(client) for client in apps]})


@api
async def api_create(request: Request, caller: Caller) -> Response:
    values = read_app(await read_json(request), creating=True)
    store = _store(request)
    registered = await _call(
        lambda: clients.create_client(
            store,
            values["name"],
            values["redirect_uris"],
            actor=caller.actor,
            **_create_args(values),
        )
    )
    body = {**app_json(registered.client), "client_secret": registered.client_secret}
    return _answer(body, 201, location=f"/admin/api/apps/{registered.client.client_id}")


@api
async def api_get(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    client = await run_in_threadpool(clients.get_client, _store(request), client_id)
    return _answer(app_json(client))


@api
async def api_update(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    values = read_app(await read_json(request), creating=False)
    store = _store(request)
    client = await _call(
        lambda: clients.update_client(store, client_id, actor=caller.actor, **_update_args(values))
    )
    return _answer(app_json(client))


@api
async def api_delete(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    store = _store(request)
    await run_in_threadpool(lambda: clients.delete_client(store, client_id, actor=caller.actor))
    return _answer(status_code=204)


@api
async def api_rotate(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    store = _store(request)
    try:
        registered = await run_in_threadpool(
            lambda: clients.rotate_secret(store, client_id, actor=caller.actor)
        )
    except ValidationError as error:  # a public app: it has no secret
        raise ApiError(409, "conflict", str(error)) from None
    return _answer({**app_json(registered.client), "client_secret": registered.client_secret})


@api
async def api_retire(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    store = _store(request)
    try:
        await run_in_threadpool(
            lambda: clients.retire_previous_secret(store, client_id, actor=caller.actor)
        )
    except ValidationError as error:  # a public app: it has no secret
        raise ApiError(409, "conflict", str(error)) from None
    return _answer(status_code=204)


#: The paths below an app, and the one method each takes.
SUBRESOURCES = {"secret": "POST", "previous-secret": "DELETE"}


async def api_below_app(request: Request) -> Response:
    """What the routes above leave: a wrong method on a path below an app (405, as the router
    would say), or an id with a slash in it (sent as %2F), which is no app (the API's JSON 404,
    not the router's plain-text one)."""
    allowed = SUBRESOURCES.get(request.path_params["rest"])
    if allowed is not None:
        raise HTTPException(405, headers={"allow": allowed})
    return await _no_such_app(request)


@api
async def _no_such_app(request: Request, caller: Caller) -> Response:
    client_id = f"{request.path_params['client_id']}/{request.path_params['rest']}"
    raise NotFoundError(f"No client {client_id!r}.")
