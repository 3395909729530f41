"""Admin users: the API handlers under /admin/api/users (the bodies, parameters and answers are
the records of `iam.records.users`). Each handler reads the request, then runs its whole use
case as one unit of work in a worker thread."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller, client_ip
from iam.admin.json_api import api, no_store_json
from iam.admin.json_body import read_json
from iam.admin.query import read_query
from iam.db.unit import in_worker
from iam.errors import NotFoundError
from iam.records import users as records
from iam.records.base import read
from iam.services import users


@api
async def api_list(request: Request, caller: Caller) -> Response:
    """GET /admin/api/users?q=&limit=&after= (or &offset=): one page, and the cursor (and, when
    paging by offset, the offset) of the next."""
    query = read_query(records.UserQuery, request)
    limit, offset = query.limit, query.offset
    after = users.Cursor.read(query.after) if query.after is not None else None  # checked
    found = await in_worker(
        request.app.state.store,
        lambda db: users.search_users(db, query.q, limit=limit + 1, offset=offset, after=after),
    )
    more = len(found) > limit
    shown = found[:limit]
    by_offset = after is None and offset + limit <= records.MAX_OFFSET
    page = records.UserPage(
        users=[records.User.of(row.user, row.link_count) for row in shown],
        next_after=users.Cursor.of(shown[-1].user).text if more else None,
        next_offset=offset + limit if more and by_offset else None,
    )
    return no_store_json(page.to_json())


@api
async def api_show(request: Request, caller: Caller) -> Response:
    user_id = request.path_params["user_id"]
    found = await in_worker(request.app.state.store, lambda db: users.user_detail(db, user_id))
    return no_store_json(records.UserDetail.found(found).to_json())


@api
async def api_patch(request: Request, caller: Caller) -> Response:
    """PATCH /admin/api/users/{user_id} `{"status": "active"|"disabled"}`: the change, its
    audit row and the person as they are now, in one unit."""
    patch = read(records.UserPatch, await read_json(request))
    user_id, ip = request.path_params["user_id"], client_ip(request)
    found = await in_worker(
        request.app.state.store,
        lambda db: users.user_detail(
            db,
            users.set_user_status(
                db, user_id, patch.status == "active", actor=caller.actor, ip=ip
            ).id,
        ),
    )
    return no_store_json(records.UserDetail.found(found).to_json())


@api
async def api_remove_link(request: Request, caller: Caller) -> Response:
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    ip = client_ip(request)
    await in_worker(
        request.app.state.store,
        lambda db: users.remove_link(db, user_id, link_id, actor=caller.actor, ip=ip),
    )
    return no_store_json(status_code=204)


@api
async def api_end_sessions(request: Request, caller: Caller) -> Response:
    user_id, ip = request.path_params["user_id"], client_ip(request)
    ended = await in_worker(
        request.app.state.store,
        lambda db: users.end_user_sessions(db, user_id, actor=caller.actor, ip=ip),
    )
    return no_store_json(records.SessionsEnded(ended=ended).to_json())


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
