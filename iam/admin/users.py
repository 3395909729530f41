"""Admin: users. Find a person, see their linked identities and live sessions, disable them,
remove a link, sign them out everywhere; as console pages and as the JSON API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller, client_ip
from iam.admin.json_api import ApiError, api
from iam.admin.json_body import field_of, read_json, unknown_fields
from iam.admin.methods import by_method
from iam.admin.pages import console_form, page, render, see_other
from iam.db.models import Admin, IdentityLink, SsoSession, User
from iam.errors import NotFoundError, ValidationError
from iam.services import users

#: Rows per page, in the console and by default in the API; the API takes up to MAX_LIMIT.
PAGE_SIZE = 50
MAX_LIMIT = 200
#: Deep offsets are a scan; past this, narrow the search instead.
MAX_OFFSET = 100_000
STATUSES = ("active", "disabled")
#: What the user page may say after a change (the `done` query parameter).
DONE = ("disabled", "enabled", "ended", "link_removed")
_INTEGER = re.compile(r"-?[0-9]{1,20}", re.ASCII)


# --- JSON ------------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with `Z`."""
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if value else None


def user_json(user: User, link_count: int) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "phone": user.phone,
        "email": user.email,
        "status": user.status,
        "phone_verified_at": iso(user.phone_verified_at),
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
        "link_count": link_count,
    }


def link_json(link: IdentityLink) -> dict[str, Any]:
    return {
        "id": link.id,
        "provider": link.provider,
        "provider_user_id": link.provider_user_id,
        "status": link.status,
        "metadata": dict(link.link_metadata or {}),
        "created_at": iso(link.created_at),
        "updated_at": iso(link.updated_at),
        "last_login_at": iso(link.last_login_at),
    }


def session_json(sso: SsoSession, links: dict[str, IdentityLink]) -> dict[str, Any]:
    context = links.get(sso.context_link_id) if sso.context_link_id else None
    return {
        "id": sso.id,
        "started_at": iso(sso.created_at),
        "last_seen_at": iso(sso.last_seen_at),
        "expires_at": iso(sso.expires_at),
        "auth_time": iso(sso.auth_time),
        "amr": list(sso.amr or []),
        "ip": sso.ip,
        "user_agent": sso.user_agent,
        "context_link_id": sso.context_link_id,
        "context": context.provider_user_id if context else None,
    }


def detail_json(found: users.UserDetail) -> dict[str, Any]:
    links = {link.id: link for link in found.links}
    return {
        **user_json(found.user, len(found.links)),
        "links": [link_json(link) for link in found.links],
        "sessions": [session_json(sso, links) for sso in found.sessions],
    }


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in [low, high]; 422 naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(422, "invalid", f"{name} must be an integer from {low} to {high}.", name)
    return int(raw)


def str_param(request: Request, name: str, max_length: int) -> str | None:
    """A text query parameter of at most `max_length` characters; empty means not given."""
    raw = request.query_params.get(name)
    if raw is not None and len(raw) > max_length:
        raise ApiError(422, "invalid", f"{name} is longer than {max_length} characters.", name)
    return raw or None


# --- the API ---------------------------------------------------------------------------------


@api
async def api_list(request: Request, caller: Caller) -> Response:
    """GET /admin/api/users?q=&limit=&offset=: one page, and the offset of the next."""
    unknown_fields(dict(request.query_params), ("q", "limit", "offset"))
    query = str_param(request, "q", users.MAX_QUERY)
    limit = int_param(request, "limit", PAGE_SIZE, 1, MAX_LIMIT)
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)
    found = await run_in_threadpool(
        users.search_users, request.app.state.store, query, limit=limit + 1, offset=offset
    )
    more = len(found) > limit
    body = {
        "users": [user_json(row.user, row.link_count) for row in found[:limit]],
        "next_offset": offset + limit if more and offset + limit <= MAX_OFFSET else None,
    }
    return JSONResponse(body, headers={"cache-control": "no-store"})


@api
async def api_show(request: Request, caller: Caller) -> Response:
    found = await run_in_threadpool(
        users.user_detail, request.app.state.store, request.path_params["user_id"]
    )
    return JSONResponse(detail_json(found), headers={"cache-control": "no-store"})


@api
async def api_patch(request: Request, caller: Caller) -> Response:
    """PATCH /admin/api/users/{user_id} `{"status": "active"|"disabled"}`."""
    data = await read_json(request)
    unknown_fields(data, ("status",))
    status = field_of(data, "status", str, required=True)
    if status not in STATUSES:
        raise ApiError(422, "invalid", "status must be active or disabled.", "status")
    store = request.app.state.store
    user_id = request.path_params["user_id"]
    await run_in_threadpool(
        lambda: users.set_user_status(
            store, user_id, status == "active", actor=caller.actor, ip=client_ip(request)
        )
    )
    found = await run_in_threadpool(users.user_detail, store, user_id)
    return JSONResponse(detail_json(found), headers={"cache-control": "no-store"})


@api
async def api_remove_link(request: Request, caller: Caller) -> Response:
    store = request.app.state.store
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    await run_in_threadpool(
        lambda: users.remove_link(
            store, user_id, link_id, actor=caller.actor, ip=client_ip(request)
        )
    )
    return Response(status_code=204, headers={"cache-control": "no-store"})


@api
async def api_end_sessions(request: Request, caller: Caller) -> Response:
    store = request.app.state.store
    user_id = request.path_params["user_id"]
    ended = await run_in_threadpool(
        lambda: users.end_user_sessions(store, user_id, actor=caller.actor, ip=client_ip(request))
    )
    return JSONResponse({"ended": ended}, headers={"cache-control": "no-store"})


#: The catch-all below a user answers them all (a bare Route would take GET only).
EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
#: The paths below a user (each answers DELETE only), for the catch-all's 405.
_BELOW_USER = (re.compile(r"sessions"), re.compile(r"links/[^/]+"))


async def api_below_user(request: Request) -> Response:
    """What the routes above leave: a wrong method on a path below a user (405, as the router
    would say), or an id with a slash in it (sent as %2F), which names nobody (the API's JSON
    404, not the router's HTML page)."""
    if any(shape.fullmatch(request.path_params["rest"]) for shape in _BELOW_USER):
        raise HTTPException(405, headers={"allow": "DELETE"})
    return await _no_such_user(request)


@api
async def _no_such_user(request: Request, caller: Caller) -> Response:
    raise NotFoundError(f"No user or link at {request.path_params['rest']!r}.")


# --- the console -----------------------------------------------------------------------------


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _count(raw: str | None) -> int:
    """A small count from the console's own links; anything else reads as 0."""
    return int(raw) if raw and len(raw) <= 9 and raw.isascii() and raw.isdigit() else 0


def _not_found(request: Request, admin: Admin) -> Response:
    context = {"message_key": "admin.user_not_found", "params": {}}
    return render(request, "admin/message.html", admin, context, 404)


@page
async def users_page(request: Request, admin: Admin) -> Response:
    """The search box and one page of results."""
    query = request.query_params.get("q", "")
    offset = min(_count(request.query_params.get("offset")), MAX_OFFSET)
    context: dict[str, Any] = {"q": query, "rows": [], "next_url": None, "previous_url": None}
    try:
        rows = await run_in_threadpool(
            users.search_users,
            request.app.state.store,
            query,
            limit=PAGE_SIZE + 1,
            offset=offset,
        )
    except ValidationError:
        context["error_key"] = "admin.user_query_too_long"
        return render(request, "admin/users.html", admin, context, 400)
    context["rows"] = rows[:PAGE_SIZE]
    if len(rows) > PAGE_SIZE:
        context["next_url"] = "?" + urlencode({"q": query, "offset": offset + PAGE_SIZE})
    if offset:
        context["previous_url"] = "?" + urlencode(
            {"q": query, "offset": max(0, offset - PAGE_SIZE)}
        )
    return render(request, "admin/users.html", admin, context)


async def _user_page(
    request: Request, admin: Admin, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    try:
        found = await run_in_threadpool(
            users.user_detail, request.app.state.store, request.path_params["user_id"]
        )
    except NotFoundError:
        return _not_found(request, admin)
    done = request.query_params.get("done")
    context = {
        "user": found.user,
        "links": found.links,
        "sessions": found.sessions,
        "link_by_id": {link.id: link for link in found.links},
        "done": done if done in DONE else None,
        "count": _count(request.query_params.get("n")),
        **(extra or {}),
    }
    return render(request, "admin/user.html", admin, context, status_code)


@page
async def user_page(request: Request, admin: Admin) -> Response:
    """One person: details, links, live sessions, and what can be done to them."""
    return await _user_page(request, admin)


@page
async def confirm_remove_page(request: Request, admin: Admin) -> Response:
    """Removing a link asks first (no script needed: the question is a page)."""
    return await _user_page(request, admin, {"confirm_link_id": request.path_params["link_id"]})


def _back_to(user_id: str, done: str, count: int | None = None) -> Response:
    query = {"done": done, **({"n": str(count)} if count is not None else {})}
    return see_other(f"/admin/users/{user_id}?{urlencode(query)}")


@page
async def status_form(request: Request, admin: Admin) -> Response:
    """POST /admin/users/{user_id}/status: `status` active or disabled."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    status = form.get("status")
    if status not in STATUSES:
        context = {"message_key": "admin.user_bad_status", "params": {}}
        return render(request, "admin/message.html", admin, context, 400)
    store, user_id = request.app.state.store, request.path_params["user_id"]
    try:
        user = await run_in_threadpool(
            lambda: users.set_user_status(
                store, user_id, status == "active", actor=_actor(admin), ip=client_ip(request)
            )
        )
    except NotFoundError:
        return _not_found(request, admin)
    return _back_to(user.id, "enabled" if status == "active" else "disabled")


@page
async def end_sessions_form(request: Request, admin: Admin) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    store, user_id = request.app.state.store, request.path_params["user_id"]
    try:
        ended = await run_in_threadpool(
            lambda: users.end_user_sessions(
                store, user_id, actor=_actor(admin), ip=client_ip(request)
            )
        )
    except NotFoundError:
        return _not_found(request, admin)
    return _back_to(user_id, "ended", ended)


@page
async def remove_link_form(request: Request, admin: Admin) -> Response:
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    store = request.app.state.store
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    try:
        await run_in_threadpool(
            lambda: users.remove_link(
                store, user_id, link_id, actor=_actor(admin), ip=client_ip(request)
            )
        )
    except NotFoundError:
        return _not_found(request, admin)
    return _back_to(user_id, "link_removed")


# --- the API description ---------------------------------------------------------------------

ERROR = {"$ref": "#/components/schemas/Error"}
TIME = {"type": "string", "format": "date-time"}
MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
MAYBE_TEXT = {"type": ["string", "null"]}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


UNAUTHORIZED = error_response("No console session and no admin bearer token.")
NOT_FOUND = error_response("No such user (or link).")
INVALID = error_response("A value is refused; `field` names it.")
ID = {"type": "string", "format": "uuid", "maxLength": 36}
USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": ID}

_USER_PROPERTIES: dict[str, Any] = {
    "id": {**ID, "description": "the `sub` of the person's tokens"},
    "name": {"type": "string"},
    "phone": {**MAYBE_TEXT, "description": "E.164"},
    "email": MAYBE_TEXT,
    "status": {"type": "string", "enum": list(STATUSES)},
    "phone_verified_at": MAYBE_TIME,
    "created_at": TIME,
    "updated_at": TIME,
    "link_count": {"type": "integer", "minimum": 0},
}

SCHEMAS: dict[str, Any] = {
    "User": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_USER_PROPERTIES),
        "properties": _USER_PROPERTIES,
    },
    "UserDetail": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_USER_PROPERTIES, "links", "sessions"],
        "properties": {
            **_USER_PROPERTIES,
            "links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
        },
    },
    "UserPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["users", "next_offset"],
        "properties": {
            "users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
            "next_offset": {
                "type": ["integer", "null"],
                "description": "`offset` of the next page; null on the last one",
            },
        },
    },
    "Link": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "provider",
            "provider_user_id",
            "status",
            "metadata",
            "created_at",
            "updated_at",
            "last_login_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "provider": {"type": "string", "examples": ["wecom"]},
            "provider_user_id": {"type": "string", "examples": ["CORP_A/zhangsan_A"]},
            "status": {"type": "string", "enum": ["active", "disabled"]},
            "metadata": {
                "type": "object",
                "description": "as read from the provider: corp_name, userid, department, "
                "position, avatar...",
            },
            "created_at": TIME,
            "updated_at": TIME,
            "last_login_at": MAYBE_TIME,
        },
    },
    "Session": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "started_at",
            "last_seen_at",
            "expires_at",
            "auth_time",
            "amr",
            "ip",
            "user_agent",
            "context_link_id",
            "context",
        ],
        "properties": {
            "id": {"type": "string", "description": "the `sid` of tokens from this session"},
            "started_at": TIME,
            "last_seen_at": TIME,
            "expires_at": TIME,
            "auth_time": TIME,
            "amr": {"type": "array", "items": {"type": "string"}},
            "ip": MAYBE_TEXT,
            "user_agent": MAYBE_TEXT,
            "context_link_id": MAYBE_TEXT,
            "context": {**MAYBE_TEXT, "description": "provider_user_id of the context link"},
        },
    },
    "UserPatch": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": list(STATUSES)}},
    },
}

PATHS: dict[str, Any] = {
    "/users": {
        "get": {
            "operationId": "listUsers",
            "summary": "Find users by name, phone, email or WeCom userid",
            "description": "`q` is matched literally (no wildcards), case-insensitively, "
            "anywhere in the name, email, phone or a linked identity's id; an 11-digit "
            "mainland phone number also matches its E.164 form. Oldest users first.",
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": PAGE_SIZE,
                    },
                },
                {
                    "name": "offset",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_OFFSET,
                        "default": 0,
                    },
                },
            ],
            "responses": {
                "200": json_response("A page of users", {"$ref": "#/components/schemas/UserPage"}),
                "401": UNAUTHORIZED,
                "422": INVALID,
            },
        }
    },
    "/users/{user_id}": {
        "parameters": [USER_ID],
        "get": {
            "operationId": "getUser",
            "summary": "A user with every link and their live sessions",
            "responses": {
                "200": json_response("The user", {"$ref": "#/components/schemas/UserDetail"}),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "setUserStatus",
            "summary": "Enable or disable a user",
            "description": "Disabling ends every session of the user and revokes their "
            "refresh and access tokens; they can no longer sign in.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/UserPatch"}}
                },
            },
            "responses": {
                "200": json_response("The user", {"$ref": "#/components/schemas/UserDetail"}),
                "400": error_response("The body is not a JSON object."),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "413": error_response("The body is too large."),
                "415": error_response("The body is not application/json."),
                "422": INVALID,
            },
        },
    },
    "/users/{user_id}/links/{link_id}": {
        "parameters": [
            USER_ID,
            {"name": "link_id", "in": "path", "required": True, "schema": ID},
        ],
        "delete": {
            "operationId": "removeUserLink",
            "summary": "Remove one of the user's identity links",
            "description": "Sessions whose identity context was this link keep going without "
            "a context.",
            "responses": {
                "204": {"description": "Removed"},
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
    },
    "/users/{user_id}/sessions": {
        "parameters": [USER_ID],
        "delete": {
            "operationId": "endUserSessions",
            "summary": "End every session of the user and revoke the tokens bound to them",
            "responses": {
                "200": json_response(
                    "How many sessions ended",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["ended"],
                        "properties": {"ended": {"type": "integer", "minimum": 0}},
                    },
                ),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
    },
}

routes: list[BaseRoute] = [
    Route("/users", users_page, methods=["GET"]),
    Route("/users/{user_id}", user_page, methods=["GET"]),
    Route("/users/{user_id}/status", status_form, methods=["POST"]),
    Route("/users/{user_id}/sessions/end", end_sessions_form, methods=["POST"]),
    Route(
        "/users/{user_id}/links/{link_id}/remove",
        by_method(GET=confirm_remove_page, POST=remove_link_form),
        methods=["GET", "POST"],
    ),
    Route("/api/users", api_list, methods=["GET"]),
    Route(
        "/api/users/{user_id}", by_method(GET=api_show, PATCH=api_patch), methods=["GET", "PATCH"]
    ),
    Route("/api/users/{user_id}/links/{link_id}", api_remove_link, methods=["DELETE"]),
    Route("/api/users/{user_id}/sessions", api_end_sessions, methods=["DELETE"]),
    Route("/api/users/{user_id}/{rest:path}", api_below_user, methods=EVERY_METHOD),
]
