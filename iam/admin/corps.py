"""Admin: WeCom corporations. The console lists, connects, edits, disables and tests them; the
API does the same for scripts. An app secret goes in and never comes out: no page and no JSON
answer carries it, the console says only that one is set."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import ApiError, api
from iam.admin.json_body import field_of, read_json, unknown_fields, whole_number
from iam.admin.methods import by_method
from iam.admin.pages import console_form, page, render, see_other
from iam.db.models import Admin, WeComCorp
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.i18n import MESSAGES
from iam.services import corps
from iam.services.corps import ConnectionResult

#: What POST /corps takes, and what PATCH /corps/{corp_id} may change.
INPUT_FIELDS = ("corp_id", "name", "agent_id", "secret", "trust_mobile")
PATCH_FIELDS = ("name", "agent_id", "secret", "trust_mobile", "enabled")
#: Longest agent id the console reads (2**63 - 1 has 19 digits).
MAX_AGENT_ID_DIGITS = 19
NO_STORE = {"cache-control": "no-store"}

#: What the catch-all below the corporations answers (a function route is GET-only otherwise).
EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


# --- what the API shows ------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A stored (naive UTC) time as RFC 3339."""
    return moment.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def corp_json(corp: WeComCorp) -> dict[str, Any]:
    """A corporation as the API shows it: everything but the secret."""
    return {
        "corp_id": corp.corp_id,
        "name": corp.name,
        "agent_id": corp.agent_id,
        "trust_mobile": corp.trust_mobile,
        "enabled": corp.enabled,
        "created_at": iso(corp.created_at),
    }


def connection_json(result: ConnectionResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "errcode": result.errcode,
        "errmsg": result.errmsg,
        "reason": result.reason,
    }


# --- the API -----------------------------------------------------------------------------------


def _checked_body(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """No unknown field, and no null: every field is either given with its type or left out."""
    unknown_fields(data, allowed)
    for name in allowed:
        if name in data and data[name] is None:
            raise ApiError(422, "invalid", f"{name} must not be null.", name)


def _agent_id(data: dict[str, Any], *, required: bool) -> int | None:
    return whole_number(data, "agent_id", required=required)


@api
async def api_list(request: Request, caller: Caller) -> Response:
    found = await run_in_threadpool(corps.list_corps, request.app.state.store)
    return JSONResponse({"corps": [corp_json(corp) for corp in found]}, headers=NO_STORE)


@api
async def api_create(request: Request, caller: Caller) -> Response:
    data = await read_json(request)
    _checked_body(data, INPUT_FIELDS)
    corp_id = field_of(data, "corp_id", str, required=True)
    name = field_of(data, "name", str, required=True)
    agent_id = _agent_id(data, required=True)
    assert agent_id is not None  # required
    secret = field_of(data, "secret", str, required=True)
    trust_mobile = field_of(data, "trust_mobile", bool, required=False) or False
    state = request.app.state
    corp = await run_in_threadpool(
        lambda: corps.add_corp(
            state.store,
            state.box,
            corp_id,
            name,
            agent_id,
            secret,
            trust_mobile=trust_mobile,
            actor=caller.actor,
        )
    )
    headers = {**NO_STORE, "location": f"/admin/api/corps/{corp.corp_id}"}
    return JSONResponse(corp_json(corp), status_code=201, headers=headers)


@api
async def api_show(request: Request, caller: Caller) -> Response:
    corp = await run_in_threadpool(
        corps.get_corp, request.app.state.store, request.path_params["corp_id"]
    )
    return JSONResponse(corp_json(corp), headers=NO_STORE)


@api
async def api_update(request: Request, caller: Caller) -> Response:
    data = await read_json(request)
    _checked_body(data, PATCH_FIELDS)
    changes = {
        "name": field_of(data, "name", str, required=False),
        "agent_id": _agent_id(data, required=False),
        "secret": field_of(data, "secret", str, required=False),
        "trust_mobile": field_of(data, "trust_mobile", bool, required=False),
        "enabled": field_of(data, "enabled", bool, required=False),
    }
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    corp = await run_in_threadpool(
        lambda: corps.update_corp(state.store, state.box, corp_id, actor=caller.actor, **changes)
    )
    return JSONResponse(corp_json(corp), headers=NO_STORE)


@api
async def api_test(request: Request, caller: Caller) -> Response:
    result = await _test(request, caller.actor)
    return JSONResponse(connection_json(result), headers=NO_STORE)


async def _test(request: Request, actor: str) -> ConnectionResult:
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    return await run_in_threadpool(
        lambda: corps.test_connection(state.store, state.box, state.wecom, corp_id, actor=actor)
    )


# --- the console -------------------------------------------------------------------------------


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _agent_id_of(text: str) -> int:
    """The agent id typed into a form (the service checks its range)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_AGENT_ID_DIGITS):
        raise ValidationError("agent_id", "The agent id is the app's positive number.")
    return int(text)


def _error_keys(error: ValidationError) -> dict[str, str]:
    return {error.field: f"admin.corp.invalid.{error.field}"}


def _not_found(request: Request, admin: Admin) -> Response:
    context = {"message_key": "admin.corp.not_found", "params": {}}
    return render(request, "admin/message.html", admin, context, 404)


async def _list_page(
    request: Request,
    admin: Admin,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    found = await run_in_threadpool(corps.list_corps, request.app.state.store)
    empty = {"corp_id": "", "name": "", "agent_id": "", "trust_mobile": False}
    context = {"corps": found, "form": form or empty, "errors": errors or {}}
    return render(request, "admin/corps.html", admin, context, status_code)


def _hint_key(reason: str | None) -> str | None:
    """What the admin may do about a failed test, by our reason key."""
    if reason is None:
        return None
    key = f"admin.corp.hint.{reason}"
    return key if key in MESSAGES else "admin.corp.hint.other"


def _corp_page(
    request: Request,
    admin: Admin,
    corp: WeComCorp,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice_key: str | None = None,
    test: ConnectionResult | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "corp": corp,
        "created": corp.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "form": form
        or {
            "name": corp.name,
            "agent_id": str(corp.agent_id),
            "trust_mobile": corp.trust_mobile,
            "enabled": corp.enabled,
        },
        "errors": errors or {},
        "notice_key": notice_key,
        "test": test,
        "hint_key": _hint_key(test.reason) if test else None,
    }
    return render(request, "admin/corp.html", admin, context, status_code)


async def _find(request: Request) -> WeComCorp | None:
    try:
        return await run_in_threadpool(
            corps.get_corp, request.app.state.store, request.path_params["corp_id"]
        )
    except NotFoundError:
        return None


@page
async def list_page(request: Request, admin: Admin) -> Response:
    return await _list_page(request, admin)


@page
async def add(request: Request, admin: Admin) -> Response:
    """POST /admin/corps: connect a corporation; a refused form comes back without the secret."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    corp_id = _text(form, "corp_id").strip()
    name = _text(form, "name")
    agent_id = _text(form, "agent_id")
    trust_mobile = "trust_mobile" in form
    values = {
        "corp_id": corp_id,
        "name": name,
        "agent_id": agent_id,
        "trust_mobile": trust_mobile,
    }
    secret = _text(form, "secret")
    state = request.app.state

    def connect() -> WeComCorp:
        return corps.add_corp(
            state.store,
            state.box,
            corp_id,
            name,
            _agent_id_of(agent_id),
            secret,
            trust_mobile=trust_mobile,
            actor=_actor(admin),
        )

    try:
        corp = await run_in_threadpool(connect)
    except ValidationError as error:
        return await _list_page(request, admin, values, _error_keys(error), 422)
    except ConflictError:
        return await _list_page(request, admin, values, {"corp_id": "admin.corp.taken"}, 409)
    return see_other(f"/admin/corps/{corp.corp_id}?done=added")


#: `?done=` after a change, and the notice it shows.
NOTICES = {
    "added": "admin.corp.added",
    "saved": "admin.corp.saved",
    "enabled": "admin.corp.enabled_now",
    "disabled": "admin.corp.disabled_now",
}


@page
async def corp_page(request: Request, admin: Admin) -> Response:
    corp = await _find(request)
    if corp is None:
        return _not_found(request, admin)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return _corp_page(request, admin, corp, notice_key=notice)


@page
async def edit(request: Request, admin: Admin) -> Response:
    """POST /admin/corps/{corp_id}: name, agent id, flags, and a new secret if one is typed."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    name = _text(form, "name")
    agent_id = _text(form, "agent_id")
    trust_mobile = "trust_mobile" in form
    enabled = "enabled" in form
    values = {
        "name": name,
        "agent_id": agent_id,
        "trust_mobile": trust_mobile,
        "enabled": enabled,
    }
    secret = _text(form, "secret") or None
    state = request.app.state
    corp_id = request.path_params["corp_id"]

    def save() -> WeComCorp:
        return corps.update_corp(
            state.store,
            state.box,
            corp_id,
            actor=_actor(admin),
            name=name,
            agent_id=_agent_id_of(agent_id),
            secret=secret,
            trust_mobile=trust_mobile,
            enabled=enabled,
        )

    try:
        await run_in_threadpool(save)
    except NotFoundError:
        return _not_found(request, admin)
    except ValidationError as error:
        corp = await _find(request)
        if corp is None:
            return _not_found(request, admin)
        return _corp_page(
            request, admin, corp, form=values, errors=_error_keys(error), status_code=422
        )
    return see_other(f"/admin/corps/{corp_id}?done=saved")


async def _switch(request: Request, admin: Admin, enabled: bool) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    try:
        await run_in_threadpool(
            lambda: corps.update_corp(
                state.store, state.box, corp_id, actor=_actor(admin), enabled=enabled
            )
        )
    except NotFoundError:
        return _not_found(request, admin)
    return see_other(f"/admin/corps/{corp_id}?done={'enabled' if enabled else 'disabled'}")


@page
async def enable(request: Request, admin: Admin) -> Response:
    return await _switch(request, admin, True)


@page
async def disable(request: Request, admin: Admin) -> Response:
    """Logins through this corporation stop at once; its links and users stay."""
    return await _switch(request, admin, False)


@page
async def connection_test(request: Request, admin: Admin) -> Response:
    """POST /admin/corps/{corp_id}/test: a live gettoken, and what WeCom answered."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    try:
        result = await _test(request, _actor(admin))
    except NotFoundError:
        return _not_found(request, admin)
    corp = await _find(request)
    if corp is None:
        return _not_found(request, admin)
    return _corp_page(request, admin, corp, test=result)


# --- the OpenAPI description -------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


UNAUTHORIZED = _error("No console session and no admin bearer token.")
NOT_FOUND = _error("No such corporation.")
BODY_ERRORS = {
    "400": _error("The body is not a JSON object."),
    "413": _error("The body is larger than 64 KiB."),
    "415": _error("The body is not application/json."),
    "422": _error("A field is unknown, null, of the wrong type or not valid; `field` names it."),
}
CORP_ID_PARAMETER = {
    "name": "corp_id",
    "in": "path",
    "required": True,
    "description": "The WeCom corp id.",
    "schema": {"type": "string", "pattern": corps.CORP_ID_PATTERN},
}
_CORP_ID = {
    "type": "string",
    "pattern": corps.CORP_ID_PATTERN,
    "description": "The WeCom corp id (letters, digits, `_` and `-`).",
}
_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": corps.MAX_NAME,
    "pattern": corps.NAME_PATTERN,
    "description": "Shown to people signing in; surrounding whitespace is dropped.",
}
_AGENT_ID = {
    "type": "integer",
    "minimum": 1,
    "maximum": corps.MAX_AGENT_ID,
    "description": "The self-built app's AgentId.",
}
_SECRET = {
    "type": "string",
    "minLength": 1,
    "maxLength": corps.MAX_SECRET,
    "pattern": corps.SECRET_PATTERN,
    "writeOnly": True,
    "description": "The app's Secret, as WeCom shows it. Stored encrypted; never returned.",
}
_TRUST_MOBILE = {
    "type": "boolean",
    "description": "A mobile number read from this corporation's directory may bind a member "
    "without an SMS code, to a new person or to the person with that number who has no active "
    "identity in another corporation (or at another provider); anyone who has one still proves "
    "the number by SMS code at /bind (audited as link.trusted_mobile_refused).",
}
_ENABLED = {"type": "boolean", "description": "Whether people may sign in through it."}

SCHEMAS: dict[str, Any] = {
    "Corp": {
        "type": "object",
        "description": "A connected WeCom corporation and its self-built app (no secret).",
        "required": ["corp_id", "name", "agent_id", "trust_mobile", "enabled", "created_at"],
        "additionalProperties": False,
        "properties": {
            "corp_id": _CORP_ID,
            "name": {"type": "string"},
            "agent_id": {"type": "integer"},
            "trust_mobile": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "CorpInput": {
        "type": "object",
        "description": "A corporation to connect; it starts enabled.",
        "required": ["corp_id", "name", "agent_id", "secret"],
        "additionalProperties": False,
        "properties": {
            "corp_id": _CORP_ID,
            "name": _NAME,
            "agent_id": _AGENT_ID,
            "secret": _SECRET,
            "trust_mobile": {**_TRUST_MOBILE, "default": False},
        },
    },
    "CorpPatch": {
        "type": "object",
        "description": "The fields to change; the others stay. `secret` replaces the secret.",
        "additionalProperties": False,
        "properties": {
            "name": _NAME,
            "agent_id": _AGENT_ID,
            "secret": _SECRET,
            "trust_mobile": _TRUST_MOBILE,
            "enabled": _ENABLED,
        },
    },
    "ConnectionTest": {
        "type": "object",
        "description": "What WeCom answered a live gettoken with the stored secret. A refusal "
        "has WeCom's errcode and errmsg; no answer in time, or none that is WeCom's, has "
        "errcode and errmsg null. `reason` is our message key (e.g. wecom.misconfigured, "
        "wecom.busy, wecom.timeout, wecom.unavailable), null when ok.",
        "required": ["ok", "errcode", "errmsg", "reason"],
        "additionalProperties": False,
        "properties": {
            "ok": {"type": "boolean"},
            "errcode": {"type": ["integer", "null"]},
            "errmsg": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]},
        },
    },
}

PATHS: dict[str, Any] = {
    "/corps": {
        "get": {
            "operationId": "listCorps",
            "summary": "List the connected WeCom corporations, oldest first.",
            "responses": {
                "200": {
                    "description": "The corporations.",
                    "content": _json(
                        {
                            "type": "object",
                            "required": ["corps"],
                            "additionalProperties": False,
                            "properties": {"corps": {"type": "array", "items": _ref("Corp")}},
                        }
                    ),
                },
                "401": UNAUTHORIZED,
            },
        },
        "post": {
            "operationId": "addCorp",
            "summary": "Connect a WeCom corporation with its self-built app.",
            "requestBody": {"required": True, "content": _json(_ref("CorpInput"))},
            "responses": {
                "201": {
                    "description": "Connected.",
                    "headers": {
                        "Location": {
                            "description": "The corporation's address in this API.",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": _json(_ref("Corp")),
                },
                "401": UNAUTHORIZED,
                "409": _error("A corporation with this corp id is already connected."),
                **BODY_ERRORS,
            },
        },
    },
    "/corps/{corp_id}": {
        "parameters": [CORP_ID_PARAMETER],
        "get": {
            "operationId": "getCorp",
            "summary": "One corporation.",
            "responses": {
                "200": {"description": "The corporation.", "content": _json(_ref("Corp"))},
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateCorp",
            "summary": "Change a corporation: name, agent id, secret, trust_mobile, enabled.",
            "requestBody": {"required": True, "content": _json(_ref("CorpPatch"))},
            "responses": {
                "200": {"description": "The corporation now.", "content": _json(_ref("Corp"))},
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                **BODY_ERRORS,
            },
        },
    },
    "/corps/{corp_id}/test": {
        "parameters": [CORP_ID_PARAMETER],
        "post": {
            "operationId": "testCorp",
            "summary": "Ask WeCom for an access token now (past the cache) and say what it "
            "answered. Disabled corporations may be tested too. Audited as corp.tested.",
            "responses": {
                "200": {
                    "description": "WeCom's answer (also when it refused or did not answer).",
                    "content": _json(_ref("ConnectionTest")),
                },
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
    },
}


async def api_below_corp(request: Request) -> Response:
    """What the routes above leave: a wrong method on .../test (405, as the router would say),
    or an id with a slash in it (sent as %2F), which is no corporation: the API's JSON 404
    rather than the site's HTML page."""
    if request.path_params["rest"] == "test":
        raise HTTPException(405, headers={"allow": "POST"})
    return await _no_such_corp(request)


@api
async def _no_such_corp(request: Request, caller: Caller) -> Response:
    corp_id = f"{request.path_params['corp_id']}/{request.path_params['rest']}"
    raise NotFoundError(f"No corporation {corp_id!r}.")


routes: list[BaseRoute] = [
    Route("/corps", by_method(GET=list_page, POST=add), methods=["GET", "POST"]),
    Route("/corps/{corp_id}", by_method(GET=corp_page, POST=edit), methods=["GET", "POST"]),
    Route("/corps/{corp_id}/enable", enable, methods=["POST"]),
    Route("/corps/{corp_id}/disable", disable, methods=["POST"]),
    Route("/corps/{corp_id}/test", connection_test, methods=["POST"]),
    Route("/api/corps", by_method(GET=api_list, POST=api_create), methods=["GET", "POST"]),
    Route(
        "/api/corps/{corp_id}",
        by_method(GET=api_show, PATCH=api_update),
        methods=["GET", "PATCH"],
    ),
    Route("/api/corps/{corp_id}/test", api_test, methods=["POST"]),
    Route("/api/corps/{corp_id}/{rest:path}", api_below_corp, methods=EVERY_METHOD),
]
