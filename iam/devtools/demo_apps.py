"""Two small relying-party apps for `iam demo`: a "learning platform" (context policy `none`) and
a "CRM" (`required`), served beside the identity server so a person can watch what each app gets.

They are real OpenID Connect clients that know the server only over HTTP: discovery, an
authorization-code flow with PKCE whose URL Authlib's client builds, tokens verified with PyJWT
against the published JWKS. No server code is used, so the page shows exactly what any outside
app would receive. Sessions live in this process's memory: a dev tool, never scaled out.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from iam.errors import IamError

# PyJWT is in the `demo` extra, not among the server's dependencies. Checked first, so that
# without the extra `iam demo` says only this (Authlib's client, below, would warn before).
try:
    import jwt
except ImportError:
    raise IamError(
        "`iam demo` needs the demo extra (PyJWT): pip install -e '.[demo]', or run `make demo`"
    ) from None

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from iam.web import SECURITY_HEADERS, TEMPLATES_DIR

HTTP_TIMEOUT = 10
#: Sign-ins started (a state handed out) and not yet answered, kept per browser; older ones drop.
MAX_PENDING = 5
NO_CONTEXT = "No subsidiary context"
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time"})
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 section 2.1
#: What WeCom's OAuth URLs end with; a link copied from one may still carry it. Never ours.
WECHAT_REDIRECT = "#wechat_redirect"
_TEMPLATE = "dev/demo_app.html"
_templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

STYLESHEET = """\
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "PingFang SC", "Microsoft YaHei",
       sans-serif; color: #1f2328; background: #f6f8fa; }
.band { height: 10px; background: #59636e; }
.band-learning { background: #1a7f37; }
.band-crm { background: #8250df; }
header, main { max-width: 960px; margin: 0 auto; padding: 16px 20px; }
h1 { font-size: 2rem; margin: 8px 0 4px; }
h2 { font-size: 1.1rem; margin: 28px 0 8px; }
.issuer, .zh { color: #59636e; }
nav a { display: inline-block; margin: 0 12px 8px 0; padding: 8px 14px; border-radius: 6px;
        background: #0b63ce; color: #fff; text-decoration: none; }
nav a.secondary { background: #eaeef2; color: #1f2328; }
.person, .context { background: #fff; border: 1px solid #d0d7de; border-radius: 8px;
                    padding: 12px 16px; margin: 12px 0; }
#who { font-size: 1.4rem; font-weight: 600; }
.context { font-size: 1.25rem; border-left: 6px solid #8250df; }
.context.none { border-left-color: #1a7f37; }
#context { font-weight: 600; margin: 0; }
.error { color: #b42318; background: #fef3f2; border: 1px solid #fecdca; border-radius: 6px;
         padding: 10px 12px; margin: 12px 0; }
table { width: 100%; border-collapse: collapse; background: #fff; font-size: .9rem; }
th, td { text-align: left; vertical-align: top; padding: 6px 8px; border: 1px solid #d0d7de; }
th { width: 12em; font-family: ui-monospace, monospace; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
"""
#: The page's one script (the CSP allows no inline script): WeCom's `#wechat_redirect` reaches
#: the app's pages through every redirect after a workbench link; it is no address of ours.
SCRIPT = """\
if (location.hash === "#wechat_redirect") {
  history.replaceState(null, "", location.pathname + location.search);
}
"""


@dataclass(frozen=True)
class DemoAppConfig:
    """One demo app: who it is, where it runs, and its registration at the identity server."""

    name: str  # "learning" or "crm": also the cookie name prefix and the colour band's class
    title: str
    issuer: str
    client_id: str
    client_secret: str
    base_url: str  # redirect_uri is base_url + "/callback", initiate_login_uri + "/initiate"
    scope: str = "openid profile phone"
    context_claim: str = "wecom_context"


class SignInError(Exception):
    """Why a sign-in or sign-out did not complete, in words shown to the person."""


@dataclass(frozen=True)
class _Pending:
    """What a started sign-in must find again at the callback (looked up by its state)."""

    nonce: str
    code_verifier: str
    target: str | None = None  # where to land once signed in (a workbench link's target)


@dataclass(frozen=True)
class SignedIn:
    """Everything the app received for the signed-in person, already verified."""

    id_token: str
    id_claims: dict[str, Any]
    userinfo: dict[str, Any]
    access_claims: dict[str, Any]


@dataclass
class _Session:
    pending: dict[str, _Pending] = field(default_factory=dict)
    signed_in: SignedIn | None = None
    error: str | None = None  # shown once, on the next page


class _Sessions:
    """Browser sessions by cookie value. Handlers run in worker threads, so every read-modify-write
    holds the lock: a state is taken at most once even when a callback is replayed at once."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _ensure(self, session_id: str | None) -> tuple[str, _Session]:
        if session_id is not None and session_id in self._by_id:
            return session_id, self._by_id[session_id]
        session_id = secrets.token_urlsafe(32)
        session = self._by_id[session_id] = _Session()
        return session_id, session

    def start(self, session_id: str | None, state: str, pending: _Pending) -> str:
        with self._lock:
            session_id, session = self._ensure(session_id)
            session.pending[state] = pending
            for stale in list(session.pending)[:-MAX_PENDING]:
                del session.pending[stale]
            return session_id

    def take_pending(self, session_id: str | None, state: str) -> _Pending | None:
        with self._lock:
            session = self._by_id.get(session_id or "")
            return session.pending.pop(state, None) if session else None

    def sign_in(self, session_id: str | None, signed_in: SignedIn) -> str:
        with self._lock:
            session_id, session = self._ensure(session_id)
            session.signed_in = signed_in
            return session_id

    def flash(self, session_id: str | None, message: str) -> str:
        with self._lock:
            session_id, session = self._ensure(session_id)
            session.error = message
            return session_id

    def view(self, session_id: str | None) -> tuple[SignedIn | None, str | None]:
        """Who is signed in, and the error to show (now, and not again)."""
        with self._lock:
            session = self._by_id.get(session_id or "")
            if session is None:
                return None, None
            error, session.error = session.error, None
            return session.signed_in, error

    def end(self, session_id: str | None) -> SignedIn | None:
        with self._lock:
            session = self._by_id.pop(session_id or "", None)
            return session.signed_in if session else None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise SignInError(f"{what} answered HTTP {response.status_code}.")
    try:
        body = response.json()
    except ValueError:
        raise SignInError(f"{what} did not answer JSON.") from None
    if not isinstance(body, dict):
        raise SignInError(f"{what} did not answer a JSON object.")
    return body


def _oauth_error(response: httpx.Response) -> str:
    """`error: error_description` from an OAuth error answer, or its HTTP status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error, description = body.get("error"), body.get("error_description")
        if isinstance(error, str):
            return error + (f": {description}" if description else "")
    return f"HTTP {response.status_code}"


class _Provider:
    """The identity server as this app sees it over HTTP: discovery and signing keys, read on
    first use (the server may start after the app) and kept."""

    def __init__(self, issuer: str, http: httpx.Client) -> None:
        self.issuer = issuer
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._keys: list[jwt.PyJWK] = []

    def endpoint(self, name: str) -> str:
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            metadata = _json(self._http.get(url), "Discovery")
            if metadata.get("issuer") != self.issuer:  # OIDC Discovery 1.0 section 4.3
                raise SignInError(f"Discovery names issuer {metadata.get('issuer')!r}.")
            self._metadata = metadata
        endpoint = self._metadata.get(name)
        if not isinstance(endpoint, str):
            raise SignInError(f"Discovery names no {name}.")
        return endpoint

    def key_for(self, token: str) -> jwt.PyJWK:
        """The published key the token's `kid` names; the JWKS is read again when the kid is
        new to us (the server rotated its key)."""
        kid = jwt.get_unverified_header(token).get("kid")
        for refresh in (False, True):
            if refresh or not self._keys:
                jwks = _json(self._http.get(self.endpoint("jwks_uri")), "The JWKS endpoint")
                self._keys = list(jwt.PyJWKSet.from_dict(jwks).keys)
            key = next((key for key in self._keys if key.key_id == kid), None)
            if key is not None:
                return key
        raise SignInError(f"No published signing key has kid {kid!r}.")


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPError):
        return f"The identity server could not be reached: {error}"
    if isinstance(error, jwt.PyJWTError):
        return f"A token failed verification: {error}"
    return str(error)


_FAILURES = (SignInError, httpx.HTTPError, jwt.PyJWTError)


def _shown(name: str, value: Any) -> str:
    """A claim value as a table cell: times also in UTC, structures as JSON."""
    if name in TIME_CLAIMS and isinstance(value, int):
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def context_line(context: Any) -> str:
    """'Acting as: 子公司A · 销售经理 (zhangsan_A)' for a context claim; None: no context."""
    if context is None:
        return NO_CONTEXT
    if not isinstance(context, dict):
        return f"Acting as: {_shown('', context)}"
    where = (context.get("corp_name") or context.get("corpid"), context.get("position"))
    return f"Acting as: {' · '.join(str(part) for part in where if part)} ({context.get('userid')})"


class _DemoApp:
    """The handlers, around one configuration, one HTTP client and the in-memory sessions."""

    def __init__(self, config: DemoAppConfig, http: httpx.Client) -> None:
        self.config = config
        self.http = http
        self.cookie = f"{config.name}_session"
        self.redirect_uri = config.base_url + "/callback"
        self.provider = _Provider(config.issuer, http)
        self.sessions = _Sessions()
        # Builds authorization URLs only; every request goes through `http`.
        self.rp = OAuth2Client(
            client_id=config.client_id,
            scope=config.scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )

    # --- the routes ---

    async def home(self, request: Request) -> Response:
        signed_in, error = self.sessions.view(request.cookies.get(self.cookie))
        return _templates.TemplateResponse(
            request,
            _TEMPLATE,
            self._page(signed_in, error),
            headers={**SECURITY_HEADERS, "cache-control": "no-store"},
        )

    async def login(self, request: Request) -> Response:
        select_account = request.query_params.get("prompt") == "select_account"
        return await run_in_threadpool(
            self._login, request.cookies.get(self.cookie), select_account
        )

    async def initiate(self, request: Request) -> Response:
        """The app's initiate_login_uri (OIDC Core 4): a sign-in someone else started (a WeCom
        workbench link, through the server's `/launch/...`). GET or POST, as the spec allows."""
        params = dict(request.query_params)
        if request.method == "POST":
            params |= {key: str(value) for key, value in (await request.form()).items()}
        issuer = params.get("iss", "")
        if issuer != self.config.issuer:  # only the server this app trusts may start one
            return self._refuse(request, issuer)
        target = self._own(params.get("target_link_uri", ""))
        return await run_in_threadpool(self._login, request.cookies.get(self.cookie), False, target)

    async def callback(self, request: Request) -> Response:
        params = dict(request.query_params)
        return await run_in_threadpool(self._callback, request.cookies.get(self.cookie), params)

    async def logout(self, request: Request) -> Response:
        return await run_in_threadpool(self._logout, request.cookies.get(self.cookie))

    async def stylesheet(self, request: Request) -> Response:
        return Response(STYLESHEET, media_type="text/css")

    async def script(self, request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript")

    # --- the work, in worker threads (outbound HTTP is blocking) ---

    def _login(
        self, session_id: str | None, select_account: bool, target: str | None = None
    ) -> Response:
        """The app's ordinary authorization request (its sign-in button, and a sign-in started
        elsewhere): PKCE, a nonce, a state kept with where to land afterwards."""
        try:
            endpoint = self.provider.endpoint("authorization_endpoint")
        except _FAILURES as error:
            return self._fail(session_id, _describe(error))
        pending = _Pending(
            nonce=generate_token(24), code_verifier=generate_token(48), target=target
        )
        url, state = self.rp.create_authorization_url(
            endpoint,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
            **({"prompt": "select_account"} if select_account else {}),
        )
        return self._redirect(url, self.sessions.start(session_id, state, pending))

    def _callback(self, session_id: str | None, params: Mapping[str, str]) -> Response:
        pending = self.sessions.take_pending(session_id, params.get("state", ""))
        if pending is None:
            return self._fail(
                session_id,
                "This answer does not belong to a sign-in started here: its state is missing, "
                "unknown or already used. Please sign in again.",
            )
        if "error" in params:
            description = params.get("error_description")
            reason = params["error"] + (f": {description}" if description else "")
            return self._fail(session_id, f"The identity server answered {reason}")
        try:
            signed_in = self._finish(params.get("code", ""), pending)
        except _FAILURES as error:
            return self._fail(session_id, _describe(error))
        return self._redirect(pending.target or "/", self.sessions.sign_in(session_id, signed_in))

    def _finish(self, code: str, pending: _Pending) -> SignedIn:
        """Redeem the code, verify both tokens, read userinfo: the checks any RP must make."""
        if not code:
            raise SignInError("The answer carried neither a code nor an error.")
        tokens = self._redeem(code, pending.code_verifier)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise SignInError("The token response lacks an ID token or an access token.")
        id_claims = self._verify(id_token, audience=self.config.client_id)
        if id_claims.get("nonce") != pending.nonce:
            raise SignInError("The ID token's nonce is not the one this sign-in sent.")
        token_type = str(jwt.get_unverified_header(access_token).get("typ", "")).lower()
        if token_type not in ACCESS_TOKEN_TYPES:
            raise SignInError(f"The access token's typ is {token_type!r}, not at+jwt.")
        access_claims = self._verify(access_token, audience=None)  # its audience is the API's
        answer = self.http.get(
            self.provider.endpoint("userinfo_endpoint"),
            headers={"authorization": f"Bearer {access_token}"},
        )
        userinfo = _json(answer, "The userinfo endpoint")
        if userinfo.get("sub") != id_claims["sub"]:  # OIDC Core 5.3.2
            raise SignInError("Userinfo describes another person than the ID token.")
        return SignedIn(id_token, id_claims, userinfo, access_claims)

    def _redeem(self, code: str, code_verifier: str) -> dict[str, Any]:
        """The token request, authenticated with client_secret_basic (RFC 6749 2.3.1 wants the
        id and secret form-encoded inside Basic)."""
        answer = self.http.post(
            self.provider.endpoint("token_endpoint"),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": code_verifier,
            },
            auth=(quote(self.config.client_id, safe=""), quote(self.config.client_secret, safe="")),
            headers={"accept": "application/json"},
        )
        if answer.status_code != 200:
            raise SignInError(f"The token endpoint refused the code: {_oauth_error(answer)}")
        return _json(answer, "The token endpoint")

    def _verify(self, token: str, audience: str | None) -> dict[str, Any]:
        return jwt.decode(
            token,
            self.provider.key_for(token),
            algorithms=["RS256"],
            audience=audience,
            issuer=self.config.issuer,
            options={"require": ["iss", "sub", "exp", "iat"], "verify_aud": audience is not None},
        )

    def _logout(self, session_id: str | None) -> Response:
        """Forget the person here, then end the SSO session at the server (RP-initiated)."""
        signed_in = self.sessions.end(session_id)
        try:
            endpoint = self.provider.endpoint("end_session_endpoint")
        except _FAILURES as error:
            return self._fail(None, _describe(error))
        params = {"id_token_hint": signed_in.id_token} if signed_in else {}
        params |= {
            "post_logout_redirect_uri": self.config.base_url + "/",
            "client_id": self.config.client_id,
        }
        response = RedirectResponse(f"{endpoint}?{urlencode(params)}", status_code=303)
        response.delete_cookie(self.cookie, path="/", httponly=True, samesite="lax")
        return response

    # --- helpers ---

    def _own(self, target: str) -> str | None:
        """`target_link_uri` when it is on this app's origin (else None: the home page), without
        a trailing `#wechat_redirect`. Anything else would make the app an open redirector."""
        target = target.removesuffix(WECHAT_REDIRECT)
        try:
            parts, home = urlsplit(target), urlsplit(self.config.base_url)
        except ValueError:
            return None
        same_origin = (parts.scheme, parts.netloc.lower()) == (home.scheme, home.netloc.lower())
        return target if target and same_origin and "\\" not in target else None

    def _refuse(self, request: Request, issuer: str) -> Response:
        """A sign-in started by someone other than the server this app trusts: a page that says
        so, and nothing else happens (no authorization request, no session)."""
        who = repr(issuer) if issuer else "no one (iss is missing)"
        message = (
            f"Refused: this sign-in was started by {who}, not by {self.config.issuer}, the "
            "identity server this app trusts."
        )
        signed_in, _ = self.sessions.view(request.cookies.get(self.cookie))
        return _templates.TemplateResponse(
            request,
            _TEMPLATE,
            self._page(signed_in, message),
            status_code=400,
            headers={**SECURITY_HEADERS, "cache-control": "no-store"},
        )

    def _fail(self, session_id: str | None, message: str) -> Response:
        """Back to the home page, which shows the message once."""
        return self._redirect("/", self.sessions.flash(session_id, message))

    def _redirect(self, url: str, session_id: str) -> Response:
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            self.cookie,
            session_id,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.config.base_url.startswith("https://"),
        )
        return response

    def _page(self, signed_in: SignedIn | None, error: str | None) -> dict[str, Any]:
        page: dict[str, Any] = {"config": self.config, "error": error, "signed_in": signed_in}
        if signed_in is None:
            return page
        sources = (signed_in.id_claims, signed_in.userinfo, signed_in.access_claims)
        claim = self.config.context_claim
        context = next((source[claim] for source in sources if claim in source), None)
        page.update(
            who=signed_in.id_claims.get("name")
            or signed_in.userinfo.get("name")
            or signed_in.id_claims["sub"],
            sub=signed_in.id_claims["sub"],
            has_context=context is not None,
            context_line=context_line(context),
            tables=[
                (table_id, title, [(name, _shown(name, value)) for name, value in claims.items()])
                for table_id, title, claims in (
                    ("claims-id-token", "ID 令牌 ID token (verified)", signed_in.id_claims),
                    ("claims-userinfo", "用户信息 Userinfo", signed_in.userinfo),
                    (
                        "claims-access-token",
                        "访问令牌 Access token (JWT, verified)",
                        signed_in.access_claims,
                    ),
                )
            ],
        )
        return page


def create_demo_app(config: DemoAppConfig, http: httpx.Client | None = None) -> Starlette:
    """The ASGI app of one demo RP. Its own HTTP client (when `http` is not given) is closed at
    shutdown; a given one belongs to the caller."""
    client = http if http is not None else httpx.Client(timeout=HTTP_TIMEOUT)
    demo = _DemoApp(config, client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            demo.rp.close()
            if http is None:
                client.close()

    return Starlette(
        routes=[
            Route("/", demo.home),
            Route("/login", demo.login),
            Route("/callback", demo.callback),
            Route("/initiate", demo.initiate, methods=["GET", "POST"]),
            Route("/logout", demo.logout),
            Route("/app.css", demo.stylesheet),
            Route("/app.js", demo.script),
        ],
        lifespan=lifespan,
    )
