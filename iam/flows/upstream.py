"""Logins at outside providers: `/login/{provider}/{id}` sends the browser there with a fresh
state, `/callback/{provider}/{id}` comes back, and the person is signed in (with that identity as
the session's context) or sent to bind it. For WeCom, `{id}` is the corp id."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam import metrics
from iam.db.unit import in_worker, one_unit
from iam.errors import ConflictError, ForbiddenError, NotFoundError, RateLimitedError
from iam.federation.connector import (
    CallbackConnector,
    CallbackRejectedError,
    ConnectorError,
    Identity,
    LoginHints,
    MemberElsewhereError,
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
        flow = await flow_context(request, flow_id)
    except FlowGoneError:
        return web.error_page(request, "error.flow_expired")
    try:
        connector = await run_in_threadpool(state.providers.open, provider, connector_id)
    except NotFoundError:
        return web.error_page(request, "upstream.unknown", 404, **_back_to(flow))
    link_user_id = None
    if request.query_params.get("link") == "1":  # "link an identity to me" (the linking offer)
        signed_in = await signed_in_person(request)
        link_user_id = signed_in.user.id if signed_in else None
    trip = Trip(provider, connector_id, flow_id or None, link_user_id=link_user_id)
    return await send_to_provider(request, connector, trip)


@dataclass(frozen=True)
class Trip:
    """One round trip to a provider: which instance, the authorization request it serves, whom
    to link to, where to go when no request waits, and whether it asks for private data."""

    provider: str
    connector_id: str
    flow_id: str | None
    link_user_id: str | None = None
    return_to: str | None = None
    private_round: bool = False


def hints_of(request: Request, *, private: bool = False) -> LoginHints:
    web: Web = request.app.state.web
    user_agent = request.headers.get("user-agent", "")
    return LoginHints(user_agent, web.language(request), want_private_info=private)


async def send_to_provider(request: Request, connector: CallbackConnector, trip: Trip) -> Response:
    """Store a fresh state for this browser's trip (counted as a flow start) and redirect."""
    web: Web = request.app.state.web
    store = request.app.state.store
    browser_id = web.browser_id(request)

    def start_login() -> upstream.StartedLogin:
        count_flow_start(request)
        return one_unit(
            store,
            lambda db: upstream.start_login(
                db,
                browser_id,
                trip.provider,
                trip.connector_id,
                trip.flow_id,
                link_user_id=trip.link_user_id,
                return_to=trip.return_to,
                private_round=trip.private_round,
            ),
        )

    try:
        started = await run_in_threadpool(start_login)
    except RateLimitedError as error:
        return too_many(request, error)
    callback_url = _callback_url(request, trip.provider, trip.connector_id)
    hints = hints_of(request, private=trip.private_round)
    return RedirectResponse(connector.login_url(callback_url, started.state, hints), 303)


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
    browser_id, offered = web.browser_id(request), params.get("state", "")
    try:
        connector = await run_in_threadpool(state.providers.open, provider, connector_id)
        used = await in_worker(
            state.store,
            lambda db: upstream.use_state(db, browser_id, provider, connector_id, offered),
        )
    except NotFoundError:
        return web.error_page(request, "upstream.unknown", 404, **await _way_back(request))
    except upstream.LoginStateError as error:
        await _record(request, provider, connector_id, "upstream.bad_state", str(error))
        back = await _way_back(request)
        return web.error_page(request, "upstream.bad_state", 400, **back)
    try:  # before the provider is asked: each answer costs calls against its quota
        state.rate_limits.check("upstream_login", key=connector_id, ip=client_ip(request))
    except RateLimitedError as error:
        return _too_many_logins(request, error, await _way_back(request, used))
    callback_url = _callback_url(request, provider, connector_id)
    try:
        identity = await _identity_of(request, connector, callback_url, params)
    except ConnectorError as error:
        await _record(request, provider, connector_id, error.reason, error.detail, code=error.code)
        back = await _way_back(request, used)
        status = _status_of(error)
        return web.error_page(request, error.reason, status, code=error.code or "-", **back)
    trip = Trip(provider, connector_id, used.flow_id, used.link_user_id, used.return_to)
    if await _second_round_helps(request, connector, identity, used):
        return await send_to_provider(request, connector, replace(trip, private_round=True))
    link_to = await _still_signed_in_as(request, used.link_user_id)
    attempt = attempt_of(request)
    try:
        outcome = await run_in_threadpool(
            lambda: login.sign_in_with_identity(
                state.store,
                identity,
                trip.flow_id,
                attempt=attempt,
                link_to=link_to,
                return_to=trip.return_to,
                previous_cookie=request.cookies.get(SESSION_COOKIE),
            )
        )
    except ForbiddenError as error:
        await _record(request, provider, connector_id, "upstream.disabled", str(error))
        back = await _way_back(request, used)
        return web.error_page(request, "upstream.disabled", 403, **back)
    except ConflictError as error:
        await _record(request, provider, connector_id, "upstream.linked_elsewhere", str(error))
        back = await _way_back(request, used)
        return web.error_page(request, "upstream.linked_elsewhere", 409, **back)
    if isinstance(outcome, accounts.NeedsBinding):
        return RedirectResponse(f"/bind?binding={quote(outcome.token)}", status_code=303)
    return signed_in(request, outcome, trip.flow_id, return_to=trip.return_to)


async def _identity_of(
    request: Request, connector: CallbackConnector, callback_url: str, params: dict[str, str]
) -> Identity:
    """Who the provider says came back. A member of another instance (WeCom 企业互联/上下游:
    `CorpId/userid`) is that instance's member when it is configured here, looked up there, so
    they get the same link as through their own corporation's app; `ConnectorError` else."""
    try:
        return await run_in_threadpool(connector.handle_callback, callback_url, params)
    except MemberElsewhereError as elsewhere:
        try:
            providers: upstream.Providers = request.app.state.providers
            home = await run_in_threadpool(
                providers.open, connector.provider, elsewhere.connector_id
            )
        except NotFoundError:
            raise elsewhere from None
        member = await run_in_threadpool(home.look_up, elsewhere.user_id)
        if member is None:
            raise NotAMemberError(
                f"{elsewhere.connector_id} has no member {elsewhere.user_id}"
            ) from elsewhere
        return member


async def _second_round_helps(
    request: Request, connector: CallbackConnector, identity: Identity, used: upstream.UsedState
) -> bool:
    """Whether to go back to the provider once more asking for private data (for WeCom the
    mobile, with a consent screen): only for a member we do not know yet, where the provider
    says it would help, and never twice or for a person who asked to link (they are known)."""
    if used.private_round or used.link_user_id is not None:
        return False
    if not connector.private_round_helps(identity, hints_of(request)):
        return False
    known = await in_worker(request.app.state.store, lambda db: accounts.is_linked(db, identity))
    return not known


def _too_many_logins(request: Request, error: RateLimitedError, back: dict[str, Any]) -> Response:
    """429: this network's sign-ins, or (the ceiling that keeps a corporation inside WeCom's
    quota) everyone's sign-ins through this corporation right now."""
    web: Web = request.app.state.web
    busy = error.limit.endswith(".key")
    key = "upstream.corp_busy" if busy else "upstream.too_many"
    minutes = max(1, -(-error.retry_after // 60))
    response = web.error_page(request, key, 429, minutes=minutes, **back)
    response.headers["retry-after"] = str(error.retry_after)
    return response


def _back_to(flow: dict[str, Any], *, linking: bool = False) -> dict[str, Any]:
    """An error page's way back to the sign-in of a live request (`flow_context`), named after
    its app: the login page, or the identity selector for a person who asked to link. None
    waits: the error page's own (`/login`)."""
    if not flow["flow"]:
        return {}
    page = "/select-identity" if linking else "/login"
    return {"back": f"{page}?{urlencode({'flow': flow['flow']})}", "back_app": flow["app_name"]}


async def _way_back(request: Request, used: upstream.UsedState | None = None) -> dict[str, Any]:
    """`_back_to` the request a WeCom trip served: the spent state's (`used`), else the one
    this browser's callback carries, spent, expired or refused. A request that has ended since
    has no way back but the login page."""
    if used is None:
        browser_id = request.app.state.web.browser_id(request)
        offered = request.query_params.get("state", "")
        used = await in_worker(
            request.app.state.store, lambda db: upstream.held_state(db, browser_id, offered)
        )
    if used is None or not used.flow_id:
        return {}
    try:
        flow = await flow_context(request, used.flow_id)
    except FlowGoneError:
        return {}
    return _back_to(flow, linking=used.link_user_id is not None)


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
