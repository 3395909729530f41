"""Logins at outside providers: `/login/{provider}/{id}` sends the browser there with a fresh
state, `/callback/{provider}/{id}` comes back, and the person is signed in (with that identity as
the session's context) or sent to bind it. For WeCom, `{id}` is the corp id."""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam import metrics
from iam.db.unit import in_worker, one_unit
from iam.errors import ConflictError, ForbiddenError, NotFoundError, RateLimitedError
from iam.federation.connector import (
    CallbackRejectedError,
    ConnectorError,
    LoginHints,
    NotAMemberError,
    UpstreamUnavailableError,
)
from iam.flows.login import (
    FlowGoneError,
    attempt_of,
    client_ip,
    count_flow_start,
    flow_context,
    signed_in,
    signed_in_person,
    too_many,
)
from iam.services import accounts, login, upstream
from iam.web import SESSION_COOKIE, Web

log = logging.getLogger("iam.flows")
MAX_CALLBACK_QUERY = 4096


def _status_of(error: ConnectorError) -> int:
    if isinstance(error, UpstreamUnavailableError):
        return 502
    if isinstance(error, NotAMemberError):
        return 403
    if isinstance(error, CallbackRejectedError):
        return 400
    return 502


def _callback_url(request: Request, provider: str, connector_id: str) -> str:
    issuer = request.app.state.settings.issuer
    return f"{issuer}/callback/{quote(provider)}/{quote(connector_id)}"


async def start(request: Request) -> Response:
    """GET /login/{provider}/{connector_id}[?flow=]: off to the provider."""
    web: Web = request.app.state.web
    state = request.app.state
    provider = request.path_params["provider"]
    connector_id = request.path_params["connector_id"]
    flow_id = request.query_params.get("flow", "")
    try:
        await flow_context(request, flow_id)
        connector = await run_in_threadpool(state.providers.open, provider, connector_id)
    except FlowGoneError:
        return web.error_page(request, "error.flow_expired")
    except NotFoundError:
        return web.error_page(request, "upstream.unknown", 404)
    link_user_id = None
    if request.query_params.get("link") == "1":  # "link an identity to me" (the linking offer)
        signed_in = await signed_in_person(request)
        link_user_id = signed_in.user.id if signed_in else None

    browser_id = web.browser_id(request)

    def start_login() -> upstream.StartedLogin:
        count_flow_start(request)
        return one_unit(
            state.store,
            lambda db: upstream.start_login(
                db, browser_id, provider, connector_id, flow_id, link_user_id=link_user_id
            ),
        )

    try:
        started = await run_in_threadpool(start_login)
    except RateLimitedError as error:
        return too_many(request, error)
    hints = LoginHints(request.headers.get("user-agent", ""), web.language(request))
    url = connector.login_url(_callback_url(request, provider, connector_id), started.state, hints)
    return RedirectResponse(url, status_code=303)


async def callback(request: Request) -> Response:
    """GET /callback/{provider}/{connector_id}?code=&state=: check the state, ask the provider
    who this is, then sign in or go to binding. Every failure is a page and an audit event."""
    web: Web = request.app.state.web
    state = request.app.state
    provider = request.path_params["provider"]
    connector_id = request.path_params["connector_id"]
    if len(request.url.query) > MAX_CALLBACK_QUERY:
        return web.error_page(request, "error.too_large", 413)
    params = dict(request.query_params)
    try:
        connector = await run_in_threadpool(state.providers.open, provider, connector_id)
        browser_id, offered = web.browser_id(request), params.get("state", "")
        used = await in_worker(
            state.store,
            lambda db: upstream.use_state(db, browser_id, provider, connector_id, offered),
        )
    except NotFoundError:
        return web.error_page(request, "upstream.unknown", 404)
    except upstream.LoginStateError as error:
        await _record(request, provider, connector_id, "upstream.bad_state", str(error))
        return web.error_page(request, "upstream.bad_state", 400)
    callback_url = _callback_url(request, provider, connector_id)
    try:
        identity = await run_in_threadpool(connector.handle_callback, callback_url, params)
    except ConnectorError as error:
        await _record(request, provider, connector_id, error.reason, error.detail, code=error.code)
        return web.error_page(request, error.reason, _status_of(error), code=error.code or "-")
    flow_id = used.flow_id
    link_to = await _still_signed_in_as(request, used.link_user_id)
    attempt = attempt_of(request)
    try:
        outcome = await run_in_threadpool(
            lambda: login.sign_in_with_identity(
                state.store,
                identity,
                flow_id,
                attempt=attempt,
                link_to=link_to,
                previous_cookie=request.cookies.get(SESSION_COOKIE),
            )
        )
    except ForbiddenError as error:
        await _record(request, provider, connector_id, "upstream.disabled", str(error))
        return web.error_page(request, "upstream.disabled", 403)
    except ConflictError as error:
        await _record(request, provider, connector_id, "upstream.linked_elsewhere", str(error))
        return web.error_page(request, "upstream.linked_elsewhere", 409)
    if isinstance(outcome, accounts.NeedsBinding):
        return RedirectResponse(f"/bind?binding={quote(outcome.token)}", status_code=303)
    return signed_in(request, outcome, flow_id)


async def _still_signed_in_as(request: Request, user_id: str | None) -> str | None:
    """The user to link to, if the browser is still signed in as the one who asked."""
    if user_id is None:
        return None
    signed_in = await signed_in_person(request)
    return user_id if signed_in is not None and signed_in.user.id == user_id else None


async def _record(
    request: Request,
    provider: str,
    connector_id: str,
    reason: str,
    detail: str,
    *,
    code: int | str | None = None,
) -> None:
    log.warning("%s login at %s failed: %s (%s)", provider, connector_id, reason, detail)
    metrics.LOGINS.labels(provider, "failure").inc()
    ip = client_ip(request)
    await in_worker(
        request.app.state.store,
        lambda db: upstream.record_failure(
            db, provider, connector_id, reason, detail, ip=ip, code=code
        ),
    )
