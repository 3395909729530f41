"""`/authorize` and `/flow/{id}`: the single place where an authorization request is decided.

`/authorize` validates with Authlib and decides at once (silent SSO costs no extra redirect);
when the person must act, the request is saved and each step returns to `/flow/{id}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oidc.core.errors import (
    AccountSelectionRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam.clock import utcnow
from iam.db.store import Store
from iam.db.unit import current_connection, current_session, in_worker, one_unit
from iam.errors import NotFoundError, RateLimitedError
from iam.flows.login import count_flow_start, signed_in_person, too_many
from iam.flows.state import Fail, Issue, Login, OfferLinking, Select, Situation, next_step
from iam.oidc.context import Principal
from iam.oidc.endpoints import Oidc
from iam.oidc.requests import Pairs, SnapshotRequest, form_pairs, from_parts, snapshot
from iam.oidc.server import Server
from iam.services import accounts, authorizations, sessions
from iam.web import SESSION_COOKIE, Web

log = logging.getLogger("iam.flows")
MAX_QUERY = 8192
FAILURES: dict[str, type[OAuth2Error]] = {
    "login_required": LoginRequiredError,
    "account_selection_required": AccountSelectionRequiredError,
    "interaction_required": InteractionRequiredError,
    "access_denied": AccessDeniedError,
}
#: Request objects (OIDC Core 6) are not supported, and must be refused, not ignored.
UNSUPPORTED_PARAMETERS = {
    "request": RequestNotSupportedError,
    "request_uri": RequestURINotSupportedError,
}


#: What is kept of a request that waits for the person (OIDC Core 3.1.2.1 and PKCE): other
#: parameters mean nothing to us, and must not make an unauthenticated request's row larger.
STORED_PARAMETERS = frozenset(
    {
        "scope",
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "response_mode",
        "nonce",
        "display",
        "prompt",
        "max_age",
        "ui_locales",
        "id_token_hint",
        "login_hint",
        "acr_values",
        "claims_locales",
        "code_challenge",
        "code_challenge_method",
    }
)


#: The page each interactive step is, by the name `Decided.page` carries.
PAGES = {"login": "/login", "select": "/select-identity", "link": "/select-identity"}


@dataclass(frozen=True)
class Decided:
    """The worker's answer: a response for the browser, or the page the person must see."""

    response: Response | None
    client_id: str | None = None
    page: str = "login"


@dataclass(frozen=True)
class Progress:
    """What the person did since the request started (nothing yet, at /authorize)."""

    logged_in: bool = False
    chose_context: bool = False
    denied: bool = False


def principal_of(signed_in: sessions.SignedIn | None) -> Principal | None:
    if signed_in is None:
        return None
    return Principal(
        user=signed_in.user,
        auth_time=signed_in.session.auth_time,
        amr=tuple(signed_in.session.amr),
        sid=signed_in.session.id,
        context_link_id=signed_in.session.context_link_id,
    )


#: The longest nonce kept (the codes' column): a longer one is refused, not cut.
MAX_NONCE = 500


def _check_oidc_parameters(request: SnapshotRequest) -> None:
    """What OIDC Core 3.1.2.1 adds to OAuth: request objects are refused (not supported); a
    nonce is at most `MAX_NONCE` characters."""
    for name, error in UNSUPPORTED_PARAMETERS.items():
        if name in request.payload.data:
            raise error()
    if len(request.payload.data.get("nonce") or "") > MAX_NONCE:
        raise InvalidRequestError(f"nonce is longer than {MAX_NONCE} characters.")


def _check_where_to_answer(request: SnapshotRequest) -> None:
    """Errors the server shows instead of redirecting (RFC 6749 4.1.2.1): an OpenID request
    without `redirect_uri` (OIDC Core 3.1.2.1 requires it; the conformance suite's
    `ensure-redirect-uri-in-authorization-request`), and a `response_mode` other than
    `query` (the only one we answer in: an app that asked for another would misread it)."""
    if "openid" in (request.scope or "").split() and not request.payload.redirect_uri:
        raise PageError("error.invalid_request", "redirect_uri is required")
    mode = request.payload.data.get("response_mode")
    if mode is not None and mode != "query":
        raise PageError("error.invalid_request", "response_mode must be query")


def _hinted_subject(server: Server, request: SnapshotRequest) -> str | None:
    """The `sub` of the request's `id_token_hint` (an ID token we issued; expired is fine),
    None without one; `InvalidRequestError` for a hint that is not ours."""
    hint = request.payload.data.get("id_token_hint")
    if not hint:
        return None
    subject = server.end_session.hint_claims(str(hint)).get("sub")
    return str(subject) if subject else None


def _max_age(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequestError("max_age must be a non-negative integer.")
    return int(raw)


def decide(
    server: Server, request: SnapshotRequest, principal: Principal | None, progress: Progress
) -> Decided:
    """Validate the request with Authlib, then act on `next_step` (runs in the worker)."""
    try:
        grant = server.get_consent_grant(request, end_user=principal)
    except OAuth2Error as error:
        return Decided(_refusal(server, request, error))
    _check_where_to_answer(request)
    try:
        _check_oidc_parameters(request)
        max_age = _max_age(request.payload.data.get("max_age"))
        hinted = _hinted_subject(server, request)
    except OAuth2Error as error:
        error.redirect_uri = grant.redirect_uri
        return Decided(_refusal(server, request, error))
    client = grant.client
    situation = Situation(
        prompt=frozenset((request.payload.data.get("prompt") or "").split()),
        max_age=max_age,
        signed_in_at=principal.auth_time if principal else None,
        logged_in_during_request=progress.logged_in,
        now=utcnow(),
        policy=client.context_policy,
        session_context=principal.context_link_id if principal else None,
        # Only apps that take a context need the person's identities: no query on the hot
        # path of `none` apps.
        active_links=(
            accounts.active_link_ids(current_session(), principal.user.id)
            if principal is not None and client.context_policy != "none"
            else ()
        ),
        chose_during_request=progress.chose_context,
        denied=progress.denied,
        hint_names_another=(
            hinted is not None and principal is not None and hinted != principal.user.id
        ),
    )
    match next_step(situation):
        case Issue(context_link_id=context):
            assert principal is not None  # next_step asks a login of nobody signed in
            user = replace(principal, context_link_id=context)
            return Decided(server.issue_code(request, grant, user))
        case Fail(error=code):
            failure = FAILURES[code](redirect_uri=grant.redirect_uri, state=request.payload.state)
            return Decided(server.handle_error_response(request, failure))
        case Login():
            return Decided(None, client_id=client.client_id, page="login")
        case Select():
            return Decided(None, client_id=client.client_id, page="select")
        case OfferLinking():
            return Decided(None, client_id=client.client_id, page="link")
    raise AssertionError("unreachable")


def _decide_for_cookie(server: Server, request: SnapshotRequest, cookie: str | None) -> Decided:
    """A fresh /authorize: the browser's session is read in the same unit of work."""
    signed_in = sessions.find_in(current_connection(), cookie)
    return decide(server, request, principal_of(signed_in), Progress())


class PageError(Exception):
    """An authorization error shown at the server, never redirected (unknown client, bad URI)."""

    def __init__(self, message_key: str, detail: str = "") -> None:
        super().__init__(message_key)
        self.message_key = message_key
        self.detail = detail


def _refusal(server: Server, request: SnapshotRequest, error: OAuth2Error) -> Response:
    """Redirect the error to the client only once its redirect URI is proven (RFC 6749 4.1.2.1)."""
    if error.redirect_uri:
        error.state = request.payload.state
        return server.handle_error_response(request, error)
    if isinstance(error, InvalidClientError):
        raise PageError("error.unknown_client", request.payload.client_id or "-")
    if "redirect" in (error.description or "").lower():
        raise PageError("error.bad_redirect_uri")
    raise PageError("error.invalid_request", error.description or error.error)


def _page_for(web: Web, request: Request, error: PageError) -> Response:
    return web.error_page(request, error.message_key, status_code=400, detail=error.detail)


def _page_redirect(page: str, flow_id: str) -> Response:
    return RedirectResponse(f"{PAGES[page]}?" + urlencode({"flow": flow_id}), status_code=303)


async def _parameters(request: Request) -> Pairs:
    """The request's parameters: its query, or for `POST /authorize` (OIDC Core 3.1.2.1: an OP
    MUST support it) its form body, which then counts as the query would (a POSTed request
    that waits for a login is kept, and resumed, as the same parameters)."""
    if request.method == "POST":
        return await form_pairs(request)
    return request.query_params.multi_items()


async def authorize(request: Request) -> Response:
    """GET or POST /authorize."""
    oidc: Oidc = request.app.state.oidc
    web: Web = request.app.state.web
    store: Store = request.app.state.store
    if len(request.url.query) > MAX_QUERY:
        return web.error_page(request, "error.too_large", status_code=414)
    try:
        parameters = await _parameters(request)
        if request.method == "POST" and len(urlencode(parameters)) > MAX_QUERY:
            return web.error_page(request, "error.too_large", status_code=413)
        if request.method == "POST":
            oauth_request = from_parts("GET", oidc.issuer, "/authorize", parameters)
        else:
            oauth_request = await snapshot(request, oidc.issuer, read_form=False)
    except InsecureTransportError:
        return web.error_page(request, "error.invalid_request", detail="insecure transport")
    cookie = request.cookies.get(SESSION_COOKIE)
    try:
        decided = await oidc.runner(_decide_for_cookie, oidc.server, oauth_request, cookie)
    except PageError as error:
        return _page_for(web, request, error)
    if decided.response is not None:
        return decided.response
    client_id = decided.client_id
    assert client_id is not None  # a decision for a page names its client
    kept = [(k, v) for k, v in parameters if k in STORED_PARAMETERS]

    browser_id = web.browser_id(request)

    def save() -> str:
        count_flow_start(request)
        return one_unit(store, lambda db: authorizations.create(db, browser_id, client_id, kept).id)

    try:
        flow_id = await run_in_threadpool(save)
    except RateLimitedError as error:
        return too_many(request, error)
    return _page_redirect(decided.page, flow_id)


async def resume(request: Request) -> Response:
    """`/flow/{id}`: where every interactive step returns."""
    oidc: Oidc = request.app.state.oidc
    web: Web = request.app.state.web
    store: Store = request.app.state.store
    flow_id = request.path_params["flow_id"]
    try:
        browser_id = web.browser_id(request)
        pending = await in_worker(store, lambda db: authorizations.get(db, flow_id, browser_id))
    except NotFoundError:
        return web.error_page(request, "error.flow_expired", status_code=400)
    signed_in = await signed_in_person(request)
    principal = principal_of(signed_in)
    chosen_at = signed_in.session.context_set_at if signed_in else None
    progress = Progress(
        logged_in=principal is not None and principal.auth_time >= pending.created_at,
        chose_context=chosen_at is not None and chosen_at >= pending.created_at,
        denied=pending.denied_at is not None,
    )
    params: Pairs = [(str(key), str(value)) for key, value in pending.params]
    oauth_request = from_parts("GET", oidc.issuer, "/authorize", params)
    try:
        decided = await oidc.runner(decide, oidc.server, oauth_request, principal, progress)
    except PageError as error:
        return _page_for(web, request, error)
    if decided.response is None:
        return _page_redirect(decided.page, flow_id)
    await in_worker(store, lambda db: authorizations.finish(db, flow_id))
    return decided.response
