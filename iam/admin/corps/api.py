"""Admin corporations: the API handlers under /admin/api/corps (the bodies and answers are the
records of `iam.records.corps`). Each handler reads the request, then runs its use case in one
worker call and one unit of work; a connection test is the exception (see `tested`)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller
from iam.admin.json_api import api, no_store_json
from iam.admin.json_body import read_json
from iam.db.unit import in_worker
from iam.errors import NotFoundError
from iam.records.base import read
from iam.records.corps import ConnectionTest, Corp, CorpInput, CorpPatch
from iam.services import corps
from iam.services.corps import ConnectionResult


async def tested(request: Request, actor: str) -> ConnectionResult:
    """The connection test of the corporation in the path (console and API alike), in a worker
    thread: it reads, asks WeCom, then audits, with no transaction open while WeCom answers
    (`corps.test_connection`)."""
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    return await run_in_threadpool(
        lambda: corps.test_connection(
            state.store,
            state.box,
            state.wecom,
            corp_id,
            domain=corps.issuer_domain(state.settings.issuer),
            actor=actor,
        )
    )


@api
async def api_list(request: Request, caller: Caller) -> Response:
    found = await in_worker(request.app.state.store, corps.list_corps)
    return no_store_json({"corps": [Corp.of(corp).to_json() for corp in found]})


@api
async def api_create(request: Request, caller: Caller) -> Response:
    given = read(CorpInput, await read_json(request))
    state = request.app.state
    corp = await in_worker(
        state.store,
        lambda db: corps.add_corp(
            db,
            state.box,
            given.corp_id,
            given.name,
            given.agent_id,
            given.secret,
            trust_mobile=given.trust_mobile,
            callback_token=given.callback_token,
            encoding_aes_key=given.encoding_aes_key,
            actor=caller.actor,
        ),
    )
    return no_store_json(Corp.of(corp).to_json(), 201, location=f"/admin/api/corps/{corp.corp_id}")


@api
async def api_show(request: Request, caller: Caller) -> Response:
    corp_id = request.path_params["corp_id"]
    corp = await in_worker(request.app.state.store, lambda db: corps.get_corp(db, corp_id))
    return no_store_json(Corp.of(corp).to_json())


@api
async def api_update(request: Request, caller: Caller) -> Response:
    changes = read(CorpPatch, await read_json(request)).sent()
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    corp = await in_worker(
        state.store,
        lambda db: corps.update_corp(db, state.box, corp_id, actor=caller.actor, **changes),
    )
    return no_store_json(Corp.of(corp).to_json())


@api
async def api_test(request: Request, caller: Caller) -> Response:
    result = await tested(request, caller.actor)
    return no_store_json(ConnectionTest.of(result).to_json())


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
