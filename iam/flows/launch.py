"""Workbench links (`/launch/{client_id}/wecom/{corp_id}`): third-party-initiated login (OIDC
Core 4) from one corporation's WeCom workbench. The link signs the person in through that
corporation (silently inside WeCom), so the session's context is that corporation's identity,
then sends the browser to the app's `initiate_login_uri`; the app's own authorization request
then completes with no page."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from iam.db.unit import in_worker
from iam.errors import NotFoundError, ValidationError
from iam.flows.upstream import Trip, send_to_provider
from iam.services import clients
from iam.web import Web

PROVIDER = "wecom"


async def launch(request: Request) -> Response:
    """GET /launch/{client_id}/wecom/{corp_id}[?target_link_uri=]: an unknown app, an app
    without `initiate_login_uri`, a target off the app's origins, and an unknown or disabled
    corporation each get a page that says so; nothing is stored for them."""
    web: Web = request.app.state.web
    state = request.app.state
    client_id = request.path_params["client_id"]
    corp_id = request.path_params["corp_id"]
    target = request.query_params.get("target_link_uri") or None
    issuer = state.settings.issuer
    try:
        return_to = await in_worker(
            state.store, lambda db: clients.initiate_login_url(db, client_id, issuer, target)
        )
    except NotFoundError:
        return web.error_page(request, "launch.unknown_app", 404)
    except ValidationError as error:
        key = "launch.bad_target" if error.field == "target_link_uri" else "launch.not_set_up"
        return web.error_page(request, key, 400)
    try:
        connector = await run_in_threadpool(state.providers.open, PROVIDER, corp_id)
    except NotFoundError:
        return web.error_page(request, "upstream.unknown", 404)
    trip = Trip(PROVIDER, corp_id, None, return_to=return_to)
    return await send_to_provider(request, connector, trip)
