"""Admin: apps (relying parties). The console lists, registers, edits and deletes them and
rotates their secrets; the API under /admin/api/apps does the same in JSON.

`iam.services.clients` checks every value. The API also holds each body to the shape its
OpenAPI description promises (the patterns below), so that a request the description calls
valid is one the service takes, and one it calls invalid is refused with 422."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iam.admin.common import (
    ApiError,
    Caller,
    api,
    by_method,
    console_form,
    field_of,
    page,
    read_json,
    render,
    see_other,
    unknown_fields,
    whole_number,
)
from iam.db.models import Admin, Client
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


# --- the console -----------------------------------------------------------------------------

#: `?done=` on the app page after a redirect → the notice shown.
NOTICES = {
    "saved": "admin.app.saved",
    "retired": "admin.app.retired",
    "deleted": "admin.app.deleted",
}
FORM_FIELDS = ("name", "redirect_uris", "post_logout_redirect_uris", "context_policy")


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _choices() -> dict[str, Any]:
    return {
        "policies": clients.CONTEXT_POLICIES,
        "all_scopes": clients.SUPPORTED_SCOPES,
        "lifetimes": {name: clients.LIFETIMES[name] for name in LIFETIME_FIELDS},
        "default_claim": clients.DEFAULT_CONTEXT_CLAIM,
    }


def new_app_values() -> dict[str, Any]:
    """The create form, empty: the service's defaults."""
    return {
        "name": "",
        "redirect_uris": "",
        "post_logout_redirect_uris": "",
        "public": False,
        "scopes": clients.DEFAULT_SCOPES.split(),
        "context_policy": "none",
        "context_claim": "",
        **{name: str(clients.LIFETIMES[name][0]) for name in LIFETIME_FIELDS},
    }


def values_of(client: Client) -> dict[str, Any]:
    """The edit form, filled from the app."""
    return {
        "name": client.name,
        "redirect_uris": "\n".join(client.redirect_uris),
        "post_logout_redirect_uris": "\n".join(client.post_logout_redirect_uris),
        "public": client.is_public,
        "scopes": client.allowed_scopes.split(),
        "context_policy": client.context_policy,
        "context_claim": client.context_claim,
        **{name: str(getattr(client, name)) for name in LIFETIME_FIELDS},
    }


def form_values(form: FormData) -> dict[str, Any]:
    """What was posted, as the form shows it again."""
    values: dict[str, Any] = {name: str(form.get(name) or "") for name in FORM_FIELDS}
    values["context_claim"] = str(form.get("context_claim") or "").strip()
    values["public"] = form.get("public") == "on"
    values["scopes"] = [str(scope) for scope in form.getlist("scopes")]
    for name in LIFETIME_FIELDS:
        values[name] = str(form.get(name) or "").strip()
    return values


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def parsed(values: dict[str, Any]) -> dict[str, Any]:
    """Form values as the service takes them (the API's names); a lifetime that is not a
    whole number is refused here, everything else by the service."""
    result: dict[str, Any] = {
        "name": values["name"],
        "redirect_uris": _lines(values["redirect_uris"]),
        "post_logout_redirect_uris": _lines(values["post_logout_redirect_uris"]),
        "scopes": values["scopes"],
        "context_policy": values["context_policy"],
        "context_claim": values["context_claim"],
    }
    for name in LIFETIME_FIELDS:
        try:
            result[name] = int(values[name], 10)
        except ValueError:
            raise ValidationError(name, f"{name} must be a whole number of seconds.") from None
    return result


def _not_found(request: Request, admin: Admin) -> Response:
    context = {"message_key": "admin.app.not_found", "params": {}}
    return render(request, "admin/message.html", admin, context, 404)


def _app_page(
    request: Request,
    admin: Admin,
    client: Client,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("values", values_of(client))
    return render(
        request,
        "admin/app.html",
        admin,
        {"app": client, "errors": {}, **_choices(), **context},
        status_code,
    )


async def _list_page(
    request: Request, admin: Admin, status_code: int = 200, **context: Any
) -> Response:
    apps = await run_in_threadpool(clients.list_clients, _store(request))
    context.setdefault("values", new_app_values())
    return render(
        request,
        "admin/apps.html",
        admin,
        {"apps": apps, "errors": {}, **_choices(), **context},
        status_code,
    )


@page
async def apps_page(request: Request, admin: Admin) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return await _list_page(request, admin, notice=notice)


@page
async def create_app(request: Request, admin: Admin) -> Response:
    """POST /admin/apps: register; the next page shows the secret, this once."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    values = form_values(form)
    store = _store(request)
    try:
        args = {**parsed(values), "public": values["public"]}
        registered = await _call(
            lambda: clients.create_client(
                store,
                args["name"],
                args["redirect_uris"],
                actor=_actor(admin),
                **_create_args(args),
            )
        )
    except ValidationError as error:
        errors = {error.field: str(error)}
        return await _list_page(request, admin, 422, values=values, errors=errors)
    return _app_page(
        request,
        admin,
        registered.client,
        201,
        secret=registered.client_secret,
        notice="admin.app.created",
    )


@page
async def app_page(request: Request, admin: Admin) -> Response:
    try:
        client = await run_in_threadpool(
            clients.get_client, _store(request), request.path_params["client_id"]
        )
    except NotFoundError:
        return _not_found(request, admin)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return _app_page(request, admin, client, notice=notice)


@page
async def update_app(request: Request, admin: Admin) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    client_id = request.path_params["client_id"]
    values = form_values(form)
    store = _store(request)
    try:
        args = _update_args(parsed(values))
        await _call(lambda: clients.update_client(store, client_id, actor=_actor(admin), **args))
    except NotFoundError:
        return _not_found(request, admin)
    except ValidationError as error:
        try:
            client = await run_in_threadpool(clients.get_client, store, client_id)
        except NotFoundError:
            return _not_found(request, admin)
        errors = {error.field: str(error)}
        return _app_page(request, admin, client, 422, values=values, errors=errors)
    return see_other(f"/admin/apps/{client_id}?done=saved")


@page
async def rotate_secret(request: Request, admin: Admin) -> Response:
    """A new secret, shown this once; the previous one works on until retired."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    client_id = request.path_params["client_id"]
    store = _store(request)
    try:
        registered = await run_in_threadpool(
            lambda: clients.rotate_secret(store, client_id, actor=_actor(admin))
        )
    except NotFoundError:
        return _not_found(request, admin)
    except ValidationError:  # a public app
        context = {"message_key": "admin.app.no_secret", "params": {}}
        return render(request, "admin/message.html", admin, context, 409)
    return _app_page(
        request,
        admin,
        registered.client,
        secret=registered.client_secret,
        notice="admin.app.rotated",
    )


@page
async def retire_secret(request: Request, admin: Admin) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    client_id = request.path_params["client_id"]
    store = _store(request)
    try:
        await run_in_threadpool(
            lambda: clients.retire_previous_secret(store, client_id, actor=_actor(admin))
        )
    except NotFoundError:
        return _not_found(request, admin)
    except ValidationError:  # a public app
        context = {"message_key": "admin.app.no_secret", "params": {}}
        return render(request, "admin/message.html", admin, context, 409)
    return see_other(f"/admin/apps/{client_id}?done=retired")


@page
async def confirm_delete(request: Request, admin: Admin) -> Response:
    """GET /admin/apps/{id}/delete: the question, before the POST that deletes."""
    try:
        client = await run_in_threadpool(
            clients.get_client, _store(request), request.path_params["client_id"]
        )
    except NotFoundError:
        return _not_found(request, admin)
    return _app_page(request, admin, client, confirm_delete=True)


@page
async def delete_app(request: Request, admin: Admin) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    client_id = request.path_params["client_id"]
    store = _store(request)
    try:
        await run_in_threadpool(
            lambda: clients.delete_client(store, client_id, actor=_actor(admin))
        )
    except NotFoundError:
        return _not_found(request, admin)
    return see_other("/admin/apps?done=deleted")


# --- OpenAPI ---------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


_URI = {
    "type": "string",
    "maxLength": 2000,
    "pattern": URI_PATTERN,
    "description": "Exact-match redirect URI: https, or http on a loopback host; no fragment, "
    "wildcard or user info.",
}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_LIFETIMES = {
    name: {
        "type": "integer",
        "minimum": least,
        "maximum": most,
        "default": default,
        "description": "seconds" + ("; 0 means no refresh tokens" if least == 0 else ""),
    }
    for name, (default, least, most) in clients.LIFETIMES.items()
}
_INPUT_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN},
    "redirect_uris": {"type": "array", "minItems": 1, "maxItems": MAX_URIS, "items": _URI},
    "post_logout_redirect_uris": {"type": "array", "maxItems": MAX_URIS, "items": _URI},
    "scopes": {
        "type": "array",
        "items": {"type": "string", "enum": list(clients.SUPPORTED_SCOPES)},
        "default": clients.DEFAULT_SCOPES.split(),
    },
    "context_policy": {
        "type": "string",
        "enum": list(clients.CONTEXT_POLICIES),
        "default": "none",
        "description": "none: tokens describe the person only; required: they always carry "
        "the identity context claim; optional: when the session has a context.",
    },
    "context_claim": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": CLAIM_PATTERN,
        "not": {"enum": sorted(clients.RESERVED_CLAIMS)},
        "default": clients.DEFAULT_CONTEXT_CLAIM,
    },
    **_LIFETIMES,
}
_APP_FIELDS: dict[str, Any] = {
    "client_id": {"type": "string"},
    "name": {"type": "string"},
    "public": {"type": "boolean", "description": "no secret, PKCE required; fixed at creation"},
    "admin": {"type": "boolean", "description": "may call this API (scope iam:admin)"},
    "redirect_uris": {"type": "array", "items": {"type": "string"}},
    "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
    "scopes": {"type": "array", "items": {"type": "string"}},
    "context_policy": {"type": "string", "enum": list(clients.CONTEXT_POLICIES)},
    "context_claim": {"type": "string"},
    **{name: {"type": "integer"} for name in LIFETIME_FIELDS},
    "has_previous_secret": {
        "type": "boolean",
        "description": "a rotated-out secret still works until retired",
    },
    "created_at": _TIMESTAMP,
    "secret_rotated_at": {"type": ["string", "null"], "format": "date-time"},
}
_SECRET = {
    "type": ["string", "null"],
    "description": "shown this once (null for a public app); only its digest is kept",
}

SCHEMAS: dict[str, Any] = {
    "App": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_APP_FIELDS),
        "properties": _APP_FIELDS,
    },
    "AppWithSecret": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_APP_FIELDS, "client_secret"],
        "properties": {**_APP_FIELDS, "client_secret": _SECRET},
    },
    "AppInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "redirect_uris"],
        "properties": {
            **_INPUT_FIELDS,
            "public": {
                "type": "boolean",
                "default": False,
                "description": "a public app (mobile, single-page) has no secret and must use "
                "PKCE; this cannot change later",
            },
        },
    },
    "AppPatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields sent change. Public/confidential cannot change.",
        "properties": _INPUT_FIELDS,
    },
}

_CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_UNAUTHORIZED = _error("Neither a console session nor an admin bearer token")
_NOT_FOUND = _error("No such app")
_BODY_ERRORS = {
    "400": _error("The body is not a JSON object"),
    "413": _error("The body is larger than 64 KiB"),
    "415": _error("The body is not application/json"),
    "422": _error("A field is missing, unknown, of the wrong type or invalid (`field` names it)"),
}
_NO_SECRET = _error("A public app has no secret")
_LINK = {"client_id": "$response.body#/client_id"}
_LINKS = {
    "GetApp": {"operationId": "getApp", "parameters": _LINK},
    "UpdateApp": {"operationId": "updateApp", "parameters": _LINK},
    "DeleteApp": {"operationId": "deleteApp", "parameters": _LINK},
    "RotateAppSecret": {"operationId": "rotateAppSecret", "parameters": _LINK},
    "RetireAppPreviousSecret": {"operationId": "retireAppPreviousSecret", "parameters": _LINK},
}

PATHS: dict[str, Any] = {
    "/apps": {
        "get": {
            "operationId": "listApps",
            "tags": ["apps"],
            "summary": "All registered apps",
            "responses": {
                "200": _json(
                    "The apps, oldest first",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["apps"],
                        "properties": {"apps": {"type": "array", "items": _ref("App")}},
                    },
                ),
                "401": _UNAUTHORIZED,
            },
        },
        "post": {
            "operationId": "createApp",
            "tags": ["apps"],
            "summary": "Register an app",
            "description": "A confidential app's secret is in this answer and nowhere else.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AppInput")}},
            },
            "responses": {
                "201": _json(
                    "Registered",
                    _ref("AppWithSecret"),
                    headers={
                        "Location": {
                            "description": "the app's URL in this API",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    },
                    links=_LINKS,
                ),
                "401": _UNAUTHORIZED,
                **_BODY_ERRORS,
            },
        },
    },
    "/apps/{client_id}": {
        "parameters": [_CLIENT_ID],
        "get": {
            "operationId": "getApp",
            "tags": ["apps"],
            "summary": "One app",
            "responses": {
                "200": _json("The app", _ref("App")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateApp",
            "tags": ["apps"],
            "summary": "Change an app's settings",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AppPatch")}},
            },
            "responses": {
                "200": _json("The app as it is now", _ref("App")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                **_BODY_ERRORS,
            },
        },
        "delete": {
            "operationId": "deleteApp",
            "tags": ["apps"],
            "summary": "Delete an app; its tokens stop working",
            "responses": {
                "204": {"description": "Deleted"},
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
    "/apps/{client_id}/secret": {
        "parameters": [_CLIENT_ID],
        "post": {
            "operationId": "rotateAppSecret",
            "tags": ["apps"],
            "summary": "Rotate the secret",
            "description": "A new secret, in this answer only. The one it replaces keeps "
            "working until retired (two at most: rotating again retires the older).",
            "responses": {
                "200": _json("The new secret", _ref("AppWithSecret")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _NO_SECRET,
            },
        },
    },
    "/apps/{client_id}/previous-secret": {
        "parameters": [_CLIENT_ID],
        "delete": {
            "operationId": "retireAppPreviousSecret",
            "tags": ["apps"],
            "summary": "Retire the previous secret",
            "description": "Only the current secret works afterwards. Nothing to retire is "
            "not an error.",
            "responses": {
                "204": {"description": "Retired (or there was none)"},
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _NO_SECRET,
            },
        },
    },
}

routes: list[BaseRoute] = [
    Route("/apps", apps_page, methods=["GET"]),
    Route("/apps", create_app, methods=["POST"]),
    Route("/apps/{client_id}", app_page, methods=["GET"]),
    Route("/apps/{client_id}", update_app, methods=["POST"]),
    Route("/apps/{client_id}/rotate", rotate_secret, methods=["POST"]),
    Route("/apps/{client_id}/retire", retire_secret, methods=["POST"]),
    Route("/apps/{client_id}/delete", confirm_delete, methods=["GET"]),
    Route("/apps/{client_id}/delete", delete_app, methods=["POST"]),
    Route("/api/apps", by_method(GET=api_list, POST=api_create), methods=["GET", "POST"]),
    Route(
        "/api/apps/{client_id}",
        by_method(GET=api_get, PATCH=api_update, DELETE=api_delete),
        methods=["GET", "PATCH", "DELETE"],
    ),
    Route("/api/apps/{client_id}/secret", api_rotate, methods=["POST"]),
    Route("/api/apps/{client_id}/previous-secret", api_retire, methods=["DELETE"]),
    Route("/api/apps/{client_id}/{rest:path}", api_below_app),
]
