"""A stand-in for WeCom (企业微信): its server API and its two sign-in pages, over HTTP.

WeCom cannot be reached from development machines or CI, so `iam demo` mounts this at
`/_sim/wecom` and tests drive it directly. It speaks the protocol of docs/wecom-api.md: JSON with
`errcode`/`errmsg` and HTTP 200 even on errors, single-use five-minute OAuth codes, 1800 s user
tickets, per-corp access tokens, case-insensitive userids. Tests can also inject failures and
delays, expire every token, and mint codes without clicking through the pages.

Its directory changes as an admin would change WeCom's (`add_member`, `remove_member`,
`update_member`), and, for a corporation given callback settings (`configure_callback`), the
`member_*` methods change it *and* send the contact-change event WeCom would send
(wecom-api.md §6), signed and encrypted (§5), to the callback URL: `member_leaves`,
`member_renamed`, `member_changed`. Its directory page (`/directory`) has a "leaves the
corporation" button per member, so the demo shows a leaver losing a subsidiary live.

State lives in memory behind one lock: tests call it from many threads at once.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import hashlib
import ipaddress
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from iam.federation.wecom.callbacks import CallbackCrypto, CallbackError
from iam.web import TEMPLATES_DIR, BodyLimitMiddleware

APIS = frozenset(
    {"gettoken", "getuserinfo", "getuserdetail", "user_get", "department_get", "department_list"}
    | {"agent_get"}  # the app's own settings (the connection test asks)
)
CODE_TTL = 300  # OAuth codes: single use, five minutes
TICKET_TTL = 1800  # user_ticket lifetime; reusable within it
MAX_BODY_BYTES = 4 * 1024
PICK_OUTSIDER = "__outsider__"
PICK_DECLINE = "__decline__"
SCOPE_BASE = "snsapi_base"
SCOPE_PRIVATEINFO = "snsapi_privateinfo"
_STATE_PATTERN = re.compile(r"[A-Za-z0-9_-]{0,128}")
_TEMPLATE = "dev/wecom_sim.html"
_DIRECTORY_TEMPLATE = "dev/wecom_directory.html"
#: The app settings `configure_app` changes (agent/get reports them).
APP_FIELDS = frozenset(
    {
        "app_name",
        "closed",
        "visible_users",
        "visible_departments",
        "visible_tags",
        "redirect_domain",
        "trusted_ips",
    }
)
#: The address a caller without one (a test client) is seen from: TEST-NET-3 (RFC 5737).
SIM_CALLER_IP = "203.0.113.9"
SEND_TIMEOUT = 5.0  # seconds to wait for the server's answer to an event (WeCom waits 5 s)
ANSWER_CHARS = 200  # how much of the server's answer a Delivery keeps
#: A member's fields (`SimMember`) as the update_user event names them (wecom-api.md §6).
EVENT_FIELDS = {
    "name": "Name",
    "department": "Department",
    "position": "Position",
    "mobile": "Mobile",
    "gender": "Gender",
    "email": "Email",
    "status": "Status",
    "avatar": "Avatar",
}
#: The event elements WeCom sends without CDATA (its samples); every other text is CDATA.
_PLAIN_ELEMENTS = frozenset(
    {"CreateTime", "ChangeType", "MainDepartment", "Mobile", "Gender", "Status"}
)
_templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

JsonObject = dict[str, Any]


def _now() -> float:
    """Seconds on a monotonic clock: one module-level source that tests replace to move time."""
    return time.monotonic()


@dataclass
class SimMember:
    """A member of a simulated corporation, with the fields WeCom reports about them."""

    userid: str  # as WeCom spells it; lookups are case-insensitive (WeCom userids are)
    name: str
    department: list[int]
    position: str = ""
    mobile: str | None = None
    email: str | None = None
    avatar: str = ""
    gender: str = "0"  # a string, as WeCom sends it
    status: int = 1  # 1 active, 2 disabled, 4 not activated, 5 left


@dataclass
class SimCorp:
    """A corporation and its one self-built app (agent), as far as sign-in needs it."""

    corp_id: str
    name: str
    agent_id: int
    secret: str
    departments: dict[int, str]  # id -> name; 1 is the root (parentid 0), others have parentid 1
    members: list[SimMember]
    # False: an app made after 2022-06-20, whose user/get omits mobile, email, avatar, gender
    user_get_private_fields: bool = False
    # The app's own settings, as agent/get reports them (`configure_app` changes them live):
    app_name: str = "统一登录"
    closed: bool = False  # the app is disabled ("close": 1)
    # its visible range (可见范围): members, departments (1: the whole corporation), tags
    visible_users: list[str] = field(default_factory=list)
    visible_departments: list[int] = field(default_factory=lambda: [1])
    visible_tags: list[int] = field(default_factory=list)
    # its trusted domain (可信域名); None: the host its API was called at (in the demo, the
    # server's own, which is what its redirect_uris use)
    redirect_domain: str | None = None
    # its trusted IPs (企业可信IP); None: not checked (an app made before 2022-06-20). Otherwise
    # every API but gettoken called from another address answers 60020 naming that address.
    trusted_ips: list[str] | None = None


class HttpAnswer(Protocol):
    """What a `Sender` answers: an `httpx.Response` has these."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


class Sender(Protocol):
    """How events reach the server: an `httpx.Client` (the default), or in tests a Starlette
    `TestClient` on the app."""

    def post(
        self, url: str, *, content: bytes, params: dict[str, str], headers: dict[str, str]
    ) -> HttpAnswer: ...


@dataclass(frozen=True)
class SimCallback:
    """A corporation's callback settings (接收事件服务器): the URL events are POSTed to, the
    Token and EncodingAESKey they are signed and encrypted with, and the sender that POSTs
    them (None: the simulator's own `httpx.Client`)."""

    url: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    sender: Sender | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Delivery:
    """What became of one change event: sent to `url` (None: the corporation has no callback
    settings, so nothing was sent and only `iam corps sync` will notice), and what the server
    answered (`status_code`, the start of its body), or why no answer came (`error`)."""

    corp_id: str
    change_type: str
    userid: str
    url: str | None = None
    status_code: int | None = None
    answer: str = ""
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.url is not None

    @property
    def accepted(self) -> bool:
        """The server took the event (WeCom counts any 200 as delivered)."""
        return self.status_code == 200

    def summary(self) -> str:
        """One line for people: what was sent where, and what came back."""
        what = f"{self.change_type} for {self.userid} of {self.corp_id}"
        if self.url is None:
            return (
                f"{what}: not sent, the corporation has no callback settings "
                "(the directory changed; `iam corps sync` finds it)."
            )
        if self.status_code is None:
            return f"{what}: sent to {self.url}, no answer ({self.error})."
        answered = f"{what}: sent to {self.url}, the server answered {self.status_code}"
        return f"{answered}: {self.answer}" if self.answer else f"{answered}."


@dataclass(frozen=True)
class _Issued:
    """What the simulated WeCom handed out and must recognise until `expires_at`: an access
    token (of a corporation), a login code (for a member, or None: a person outside the
    corporation; `with_ticket` when the scope asked for the private info), a user ticket (for
    a member)."""

    corp_id: str
    expires_at: float
    userid: str | None = None
    with_ticket: bool = False


@dataclass(frozen=True)
class _Failure:
    """An injected answer: a WeCom error (errcode) or a broken HTTP reply (http_status)."""

    errcode: int | None = None
    errmsg: str = ""
    http_status: int | None = None

    def response(self) -> Response:
        if self.http_status is not None:
            body = f"<html><body><h1>{self.http_status}</h1>simulated failure</body></html>"
            return HTMLResponse(body, status_code=self.http_status)
        return JSONResponse({"errcode": self.errcode, "errmsg": self.errmsg})


@dataclass(frozen=True)
class _LoginRequest:
    """A validated sign-in page request: where the person goes back to, and what they get."""

    corp: SimCorp
    redirect_uri: str
    state: str
    with_ticket: bool
    is_qr: bool


class _ApiError(Exception):
    """A WeCom error answer (HTTP 200 with a non-zero errcode), raised by an API handler."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


class _PageError(Exception):
    """A sign-in request WeCom would refuse with an error page instead of a redirect."""

    def __init__(self, message: str, corp: SimCorp | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.corp = corp


@dataclass
class _State:
    """Everything a test may want forgotten by `reset`."""

    tokens: dict[str, _Issued] = field(default_factory=dict)
    codes: dict[str, _Issued] = field(default_factory=dict)
    tickets: dict[str, _Issued] = field(default_factory=dict)
    failures: collections.defaultdict[str, collections.deque[_Failure]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    delays: dict[str, float] = field(default_factory=dict)


def _ok(**fields: Any) -> JsonObject:
    return {"errcode": 0, "errmsg": "ok", **fields}


class WeComSimulator:
    """WeCom's HTTP protocol for a set of corporations, as an ASGI app (`app`)."""

    def __init__(self, corps: list[SimCorp], *, token_ttl: int = 7200) -> None:
        self.token_ttl = token_ttl
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._state = _State()
        self._corps: dict[str, SimCorp] = {}
        self._members: dict[tuple[str, str], SimMember] = {}
        self._callbacks: dict[str, SimCallback] = {}
        self._http: httpx.Client | None = None  # the default sender, made when first needed
        # The directory page's forms carry this (a synchronizer token): another site can make a
        # browser POST to the simulator, but cannot read the page to learn it.
        self._form_token = secrets.token_urlsafe(32)
        for corp in copy.deepcopy(corps):  # our own copy: add_member must not touch the caller's
            if corp.corp_id in self._corps:
                raise ValueError(f"corp {corp.corp_id!r} given twice")
            members, corp.members = corp.members, []
            self._corps[corp.corp_id] = corp
            for member in members:
                self.add_member(corp.corp_id, member)
        api_routes = [
            ("/cgi-bin/gettoken", "gettoken", self._gettoken, "GET"),
            ("/cgi-bin/auth/getuserinfo", "getuserinfo", self._getuserinfo, "GET"),
            ("/cgi-bin/auth/getuserdetail", "getuserdetail", self._getuserdetail, "POST"),
            ("/cgi-bin/user/get", "user_get", self._user_get, "GET"),
            ("/cgi-bin/department/get", "department_get", self._department_get, "GET"),
            ("/cgi-bin/department/list", "department_list", self._department_list, "GET"),
            ("/cgi-bin/agent/get", "agent_get", self._agent_get, "GET"),
        ]
        self.app = Starlette(
            routes=[
                *(
                    Route(path, self._api(name, handler), methods=[method])
                    for path, name, handler, method in api_routes
                ),
                Route("/connect/oauth2/authorize", self._oauth_page, methods=["GET", "POST"]),
                Route("/wwlogin/sso/login", self._qr_page, methods=["GET", "POST"]),
                Route("/directory", self._directory_page, methods=["GET", "POST"]),
            ],
            middleware=[Middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)],
        )

    # --- test controls ---

    def fail_next(self, api: str, errcode: int, errmsg: str = "injected", times: int = 1) -> None:
        """The next `times` calls of `api` answer this WeCom error (HTTP 200)."""
        self._inject(api, _Failure(errcode=errcode, errmsg=errmsg), times)

    def fail_http(self, api: str, status: int, times: int = 1) -> None:
        """The next `times` calls of `api` answer this HTTP status with a non-JSON body."""
        self._inject(api, _Failure(http_status=status), times)

    def delay(self, api: str, seconds: float) -> None:
        """Every call of `api` waits this long before answering; 0 removes the delay."""
        _check_api(api)
        if seconds < 0:
            raise ValueError("a delay cannot be negative")
        with self._lock:
            if seconds:
                self._state.delays[api] = seconds
            else:
                self._state.delays.pop(api, None)

    def configure_app(self, corp_id: str, **changes: Any) -> None:
        """Change a corporation's app as its admin would in WeCom's console: `SimCorp`'s app
        fields (`closed`, `visible_users`, `visible_departments`, `visible_tags`,
        `redirect_domain`, `trusted_ips`, `app_name`)."""
        corp = self._corp(corp_id)
        unknown = set(changes) - APP_FIELDS
        if unknown:
            raise ValueError(f"unknown app fields {sorted(unknown)}; one of {sorted(APP_FIELDS)}")
        with self._lock:
            for name, value in changes.items():
                setattr(corp, name, copy.deepcopy(value))

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 42001 from now on."""
        with self._lock:
            for token, issued in self._state.tokens.items():
                self._state.tokens[token] = _Issued(issued.corp_id, expires_at=float("-inf"))

    def issue_code(self, corp_id: str, userid: str | None, *, with_ticket: bool = False) -> str:
        """A fresh OAuth code as if the person had picked `userid` on a sign-in page
        (None: someone outside the corporation), for tests that skip the pages."""
        corp = self._corp(corp_id)
        if userid is None:
            if with_ticket:
                raise ValueError("people outside the corporation get no user_ticket")
            return self._new_code(corp, None, with_ticket=False)
        member = self._member(corp.corp_id, userid)
        if member is None:
            raise KeyError(f"no member {userid!r} in corp {corp_id!r}")
        return self._new_code(corp, member.userid, with_ticket=with_ticket)

    def add_member(self, corp_id: str, member: SimMember) -> None:
        """Add a member to a corporation (its departments must exist; userids are unique
        regardless of case, as at WeCom)."""
        corp = self._corp(corp_id)
        unknown_departments = set(member.department) - set(corp.departments)
        if unknown_departments:
            raise ValueError(f"unknown departments {sorted(unknown_departments)} in {corp_id!r}")
        key = (corp_id, member.userid.lower())
        with self._lock:
            if key in self._members:
                raise ValueError(f"userid {member.userid!r} is taken in {corp_id!r}")
            self._members[key] = member
            corp.members.append(member)

    def remove_member(self, corp_id: str, userid: str) -> SimMember:
        """The member leaves the corporation: user/get answers 60111 for them from now on. No
        event is sent (`member_leaves` sends one); the member who left."""
        corp = self._corp(corp_id)
        with self._lock:
            member = self._members.pop((corp_id, userid.lower()))
            corp.members.remove(member)
        return member

    def update_member(self, corp_id: str, member_id: str, **changes: Any) -> SimMember:
        """Change the member `member_id` as an admin would in WeCom (`userid=` renames them, to
        a userid nobody else has); the member as they are now. No event is sent
        (`member_renamed` and `member_changed` send one)."""
        corp = self._corp(corp_id)
        with self._lock:
            old = self._members[(corp_id, member_id.lower())]
            new = dataclasses.replace(old, **changes)
            new_key = (corp_id, new.userid.lower())
            if new_key in self._members and self._members[new_key] is not old:
                raise ValueError(f"userid {new.userid!r} is taken in {corp_id!r}")
            del self._members[(corp_id, member_id.lower())]
            self._members[new_key] = new
            corp.members[corp.members.index(old)] = new
        return new

    # --- callbacks: the directory changes, and WeCom tells the server ---

    def configure_callback(
        self,
        corp_id: str,
        url: str,
        token: str,
        encoding_aes_key: str,
        *,
        sender: Sender | None = None,
    ) -> None:
        """Give a corporation callback settings, as its admin would in WeCom's console: events
        are signed with `token`, encrypted with `encoding_aes_key` and POSTed to `url` by
        `sender` (None: a plain `httpx.Client`). Configuring again replaces them."""
        self._corp(corp_id)
        try:
            CallbackCrypto(token, encoding_aes_key, corp_id)
        except CallbackError:
            raise ValueError(
                "the Token is 1 to 32 letters and digits, the EncodingAESKey 43"
            ) from None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the callback URL must be an absolute http(s) URL")
        with self._lock:
            self._callbacks[corp_id] = SimCallback(url, token, encoding_aes_key, sender)

    def callback(self, corp_id: str) -> SimCallback | None:
        """A corporation's callback settings; None when it has none."""
        self._corp(corp_id)
        with self._lock:
            return self._callbacks.get(corp_id)

    def member_leaves(self, corp_id: str, userid: str) -> Delivery:
        """The member leaves (`remove_member`), then WeCom sends `delete_user`. Without callback
        settings the member still leaves, and nothing is sent."""
        member = self.remove_member(corp_id, userid)
        return self._notify(corp_id, "delete_user", member.userid, {})

    def member_renamed(self, corp_id: str, userid: str, new_userid: str) -> Delivery:
        """The member's userid changes (WeCom allows one rename), then WeCom sends
        `update_user` with `NewUserID`."""
        old = self._member(corp_id, userid)
        if old is None:
            raise KeyError(f"no member {userid!r} in corp {corp_id!r}")
        new = self.update_member(corp_id, userid, userid=new_userid)
        return self._notify(corp_id, "update_user", old.userid, {"NewUserID": new.userid})

    def member_changed(self, corp_id: str, userid: str, /, **changes: Any) -> Delivery:
        """The member's details change (`SimMember` fields but the userid: a rename is
        `member_renamed`), then WeCom sends `update_user` with the changed fields."""
        if "userid" in changes:
            raise ValueError("a new userid is a rename: use member_renamed")
        unknown = set(changes) - set(EVENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown member fields {sorted(unknown)}")
        member = self.update_member(corp_id, userid, **changes)
        return self._notify(corp_id, "update_user", member.userid, _event_fields(member, changes))

    def _notify(
        self, corp_id: str, change_type: str, userid: str, fields: dict[str, str]
    ) -> Delivery:
        """Seal the event and POST it, as WeCom does, to the corporation's callback URL."""
        with self._lock:
            callback = self._callbacks.get(corp_id)
        if callback is None:
            return Delivery(corp_id, change_type, userid)
        now = int(time.time())  # wall-clock seconds: WeCom's CreateTime and timestamp
        timestamp, nonce = str(now), str(secrets.randbelow(10**10))
        event = change_event(corp_id, change_type, userid, now, fields)
        crypto = CallbackCrypto(callback.token, callback.encoding_aes_key, corp_id)
        envelope, signature = crypto.seal_message(event, timestamp, nonce)
        sender = callback.sender or self._default_sender()
        try:
            answer = sender.post(
                callback.url,
                content=envelope,
                params={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce},
                headers={"content-type": "text/xml"},
            )
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            return Delivery(corp_id, change_type, userid, url=callback.url, error=reason)
        return Delivery(
            corp_id,
            change_type,
            userid,
            url=callback.url,
            status_code=answer.status_code,
            answer=answer.text[:ANSWER_CHARS],
        )

    def _default_sender(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=SEND_TIMEOUT,
                    follow_redirects=False,
                    headers={"User-Agent": "WeCom simulator"},
                )
            return self._http

    def reset(self) -> None:
        """Forget tokens, codes, tickets, injected failures, delays and call counts."""
        with self._lock:
            self._state = _State()
            self.calls.clear()

    # --- lookups and issuing ---

    def _inject(self, api: str, failure: _Failure, times: int) -> None:
        _check_api(api)
        with self._lock:
            self._state.failures[api].extend([failure] * times)

    def _corp(self, corp_id: str) -> SimCorp:
        corp = self._corps.get(corp_id)
        if corp is None:
            raise KeyError(f"no corp {corp_id!r}")
        return corp

    def _member(self, corp_id: str, userid: str) -> SimMember | None:
        with self._lock:
            return self._members.get((corp_id, userid.lower()))

    def _new_code(self, corp: SimCorp, userid: str | None, *, with_ticket: bool) -> str:
        code = secrets.token_urlsafe(32)
        issued = _Issued(corp.corp_id, _now() + CODE_TTL, userid, with_ticket)
        self._issue(self._state.codes, code, issued)
        return code

    def _new_ticket(self, corp_id: str, userid: str) -> str:
        ticket = secrets.token_urlsafe(48)
        self._issue(self._state.tickets, ticket, _Issued(corp_id, _now() + TICKET_TTL, userid))
        return ticket

    def _issue(self, issued: dict[str, _Issued], key: str, value: _Issued) -> None:
        """Keep `value` under `key`, dropping what has expired (codes and tickets alike)."""
        now = _now()
        with self._lock:
            for stale in [k for k, old in issued.items() if old.expires_at <= now]:
                del issued[stale]
            issued[key] = value

    def _token_corp(self, request: Request) -> SimCorp:
        """The corporation whose access token the request carries (`_ApiError` if none)."""
        token = request.query_params.get("access_token", "")
        if not token:
            raise _ApiError(41001, "access_token missing")
        with self._lock:
            issued = self._state.tokens.get(token)
        if issued is None:
            raise _ApiError(40014, "invalid access_token")
        if issued.expires_at <= _now():
            raise _ApiError(42001, "access_token expired")
        corp = self._corps[issued.corp_id]
        _check_caller(corp, request)
        return corp

    # --- the server API ---

    def _api(
        self, name: str, handler: Callable[[Request], Awaitable[JsonObject]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap an API handler with call counting, injected delays and injected failures."""

        async def endpoint(request: Request) -> Response:
            with self._lock:
                self.calls[name] += 1
                queued = self._state.failures[name]
                failure = queued.popleft() if queued else None
                delay = self._state.delays.get(name, 0)
            if delay:
                await asyncio.sleep(delay)
            if failure is not None:
                return failure.response()
            try:
                return JSONResponse(await handler(request))
            except _ApiError as refused:
                return JSONResponse({"errcode": refused.errcode, "errmsg": refused.errmsg})

        return endpoint

    async def _gettoken(self, request: Request) -> JsonObject:
        corp_id = request.query_params.get("corpid", "")
        secret = request.query_params.get("corpsecret", "")
        if not corp_id:
            raise _ApiError(41002, "corpid missing")
        if not secret:
            raise _ApiError(41004, "corpsecret missing")
        corp = self._corps.get(corp_id)
        if corp is None:
            raise _ApiError(40013, "invalid corpid")
        if not secrets.compare_digest(secret.encode(), corp.secret.encode()):
            raise _ApiError(40001, "invalid credential")
        token = secrets.token_urlsafe(64)
        with self._lock:
            self._state.tokens[token] = _Issued(corp_id, _now() + self.token_ttl)
        return _ok(access_token=token, expires_in=self.token_ttl)

    async def _getuserinfo(self, request: Request) -> JsonObject:
        corp = self._token_corp(request)
        code = request.query_params.get("code", "")
        if not code:
            raise _ApiError(41008, "missing code")
        with self._lock:
            issued = self._state.codes.get(code)
            if issued is not None and issued.corp_id == corp.corp_id:
                del self._state.codes[code]  # single use, even when it turns out too old
            else:
                issued = None
        if issued is None or issued.expires_at <= _now():
            raise _ApiError(40029, "invalid code")
        if issued.userid is None:
            return _ok(openid=_openid(corp.corp_id))
        if issued.with_ticket:
            ticket = self._new_ticket(corp.corp_id, issued.userid)
            return _ok(userid=issued.userid, user_ticket=ticket)
        return _ok(userid=issued.userid)

    async def _getuserdetail(self, request: Request) -> JsonObject:
        corp = self._token_corp(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise _ApiError(47001, "data format error, Warning: wrong json format.") from None
        ticket = body.get("user_ticket") if isinstance(body, dict) else None
        if not isinstance(ticket, str):
            raise _ApiError(40029, "invalid user_ticket")
        with self._lock:
            issued = self._state.tickets.get(ticket)
        if issued is None or issued.corp_id != corp.corp_id or issued.expires_at <= _now():
            raise _ApiError(40029, "invalid user_ticket")
        member = self._member(corp.corp_id, issued.userid or "")
        if member is None:  # they left (or were renamed) since the ticket was issued
            raise _ApiError(60111, "userid not found")
        return _ok(
            userid=member.userid,
            gender=member.gender,
            avatar=member.avatar,
            qr_code=_qr_code(corp.corp_id, member.userid),
            **_contact_fields(member),
            biz_mail="",
            address="",
        )

    async def _user_get(self, request: Request) -> JsonObject:
        corp = self._token_corp(request)
        userid = request.query_params.get("userid", "")
        if not userid:
            raise _ApiError(41009, "missing userid")
        member = self._member(corp.corp_id, userid)
        if member is None:
            raise _ApiError(60111, "userid not found")
        answer = _ok(
            userid=member.userid,
            name=member.name,
            department=list(member.department),
            order=[0] * len(member.department),
            position=member.position,
            is_leader_in_dept=[0] * len(member.department),
            direct_leader=[],
            main_department=member.department[0] if member.department else 1,
            status=member.status,
            alias="",
            telephone="",
        )
        if corp.user_get_private_fields:
            answer.update(_contact_fields(member), avatar=member.avatar, gender=member.gender)
        return answer

    async def _agent_get(self, request: Request) -> JsonObject:
        """The app's settings (agent/get): its name, whether it is closed, its trusted domain
        and its visible range."""
        corp = self._token_corp(request)
        if request.query_params.get("agentid", "") != str(corp.agent_id):
            raise _ApiError(40056, "invalid agentid")
        with self._lock:
            users = [{"userid": userid} for userid in corp.visible_users]
            departments, tags = list(corp.visible_departments), list(corp.visible_tags)
            domain = corp.redirect_domain
        return _ok(
            agentid=corp.agent_id,
            name=corp.app_name,
            square_logo_url="",
            description="",
            allow_userinfos={"user": users},
            allow_partys={"partyid": departments},
            allow_tags={"tagid": tags},
            close=1 if corp.closed else 0,
            redirect_domain=request.headers.get("host", "") if domain is None else domain,
            report_location_flag=0,
            isreportenter=0,
            home_url="",
        )

    async def _department_get(self, request: Request) -> JsonObject:
        corp = self._token_corp(request)
        department_id = _department_id(request)
        if department_id is None:
            raise _ApiError(40058, "invalid parameter")
        if department_id not in corp.departments:
            raise _ApiError(60003, "department not found")
        return _ok(department=_department(corp, department_id))

    async def _department_list(self, request: Request) -> JsonObject:
        """All departments, or one and those below it (only the root has any)."""
        corp = self._token_corp(request)
        department_id: int | None
        if "id" not in request.query_params:
            department_id = 1
        else:
            department_id = _department_id(request)
            if department_id is None:
                raise _ApiError(40058, "invalid parameter")
        if department_id not in corp.departments:
            raise _ApiError(60003, "department not found")
        listed = sorted(corp.departments) if department_id == 1 else [department_id]
        return _ok(department=[_department(corp, each) for each in listed])

    # --- the sign-in pages ---

    async def _oauth_page(self, request: Request) -> Response:
        """The in-client OAuth page (connect/oauth2/authorize)."""
        return await self._sign_in(request, self._oauth_request)

    async def _qr_page(self, request: Request) -> Response:
        """The browser QR-code login page (wwlogin/sso/login); its codes never carry a ticket."""
        return await self._sign_in(request, self._qr_request)

    async def _sign_in(
        self, request: Request, validate: Callable[[Request], _LoginRequest]
    ) -> Response:
        """GET: who signs in? POST `pick`: send them back with a code (and the state)."""
        try:
            login = validate(request)
        except _PageError as refused:
            return _page(request, refused.corp, error=refused.message, status_code=400)
        with self._lock:
            members = [member for member in login.corp.members if member.status == 1]
        if request.method == "GET":
            return _page(request, login.corp, login=login, members=members)
        form = await request.form(max_files=0, max_fields=10)
        pick = form.get("pick")
        if pick == PICK_DECLINE:
            return _redirect(login.redirect_uri, state=login.state)
        if pick == PICK_OUTSIDER:
            code = self._new_code(login.corp, None, with_ticket=False)
            return _redirect(login.redirect_uri, code=code, state=login.state)
        picked = pick.lower() if isinstance(pick, str) else None
        member = next((member for member in members if member.userid.lower() == picked), None)
        if member is None:
            refusal = "Pick one of the listed people."
            return _page(
                request, login.corp, login=login, members=members, error=refusal, status_code=400
            )
        code = self._new_code(login.corp, member.userid, with_ticket=login.with_ticket)
        return _redirect(login.redirect_uri, code=code, state=login.state)

    def _oauth_request(self, request: Request) -> _LoginRequest:
        query = request.query_params
        corp = self._page_corp(query.get("appid", ""))
        if query.get("response_type") != "code":
            raise _PageError("response_type must be code.", corp)
        scope = query.get("scope", "")
        if scope not in (SCOPE_BASE, SCOPE_PRIVATEINFO):
            raise _PageError(f"scope must be {SCOPE_BASE} or {SCOPE_PRIVATEINFO}.", corp)
        if "agentid" in query or scope == SCOPE_PRIVATEINFO:
            _check_agent(corp, query.get("agentid", ""))
        return _LoginRequest(
            corp=corp,
            redirect_uri=_checked_redirect_uri(corp, query.get("redirect_uri", "")),
            state=_checked_state(corp, query.get("state", "")),
            with_ticket=scope == SCOPE_PRIVATEINFO,
            is_qr=False,
        )

    def _qr_request(self, request: Request) -> _LoginRequest:
        query = request.query_params
        corp = self._page_corp(query.get("appid", ""))
        if query.get("login_type") != "CorpApp":
            raise _PageError("login_type must be CorpApp.", corp)
        _check_agent(corp, query.get("agentid", ""))
        return _LoginRequest(
            corp=corp,
            redirect_uri=_checked_redirect_uri(corp, query.get("redirect_uri", "")),
            state=_checked_state(corp, query.get("state", "")),
            with_ticket=False,
            is_qr=True,
        )

    # --- the directory page ---

    async def _directory_page(self, request: Request) -> Response:
        """GET: every corporation, its callback settings and its members. POST (`corp_id`,
        `userid`, the page's `form_token`): that member leaves the corporation
        (`member_leaves`), and the page says what the server answered."""
        if request.method == "GET":
            return self._directory(request)
        form = await request.form(max_files=0, max_fields=10)
        token = form.get("form_token")
        if not isinstance(token, str) or not secrets.compare_digest(
            token.encode(), self._form_token.encode()
        ):
            stale = "This form is not from this simulator's page: reload the page and try again."
            return self._directory(request, error=stale, status_code=403)
        corp_id, userid = form.get("corp_id"), form.get("userid")
        if not isinstance(corp_id, str) or corp_id not in self._corps:
            return self._directory(request, error="No such corporation.", status_code=400)
        if not isinstance(userid, str) or self._member(corp_id, userid) is None:
            return self._directory(
                request, error="No such member (left already?).", status_code=400
            )
        try:  # the POST to the server may reach this very process: not on the event loop
            delivery = await run_in_threadpool(self.member_leaves, corp_id, userid)
        except KeyError:  # left in between
            return self._directory(
                request, error="No such member (left already?).", status_code=400
            )
        return self._directory(request, delivery=delivery)

    def _directory(
        self,
        request: Request,
        *,
        delivery: Delivery | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        with self._lock:
            corps = [
                (corp, list(corp.members), self._callbacks.get(corp.corp_id))
                for corp in self._corps.values()
            ]
        return _templates.TemplateResponse(
            request,
            _DIRECTORY_TEMPLATE,
            {
                "corps": corps,
                "delivery": delivery,
                "error": error,
                "form_token": self._form_token,
            },
            status_code=status_code,
            headers={"cache-control": "no-store"},
        )

    def _page_corp(self, appid: str) -> SimCorp:
        corp = self._corps.get(appid)
        if corp is None:
            raise _PageError(f"Unknown appid (corp id) {appid!r}.")
        return corp


def _caller_ip(request: Request) -> str:
    """The address WeCom sees a call come from: the peer's, or `SIM_CALLER_IP` when the peer has
    no address (a test client)."""
    host = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return SIM_CALLER_IP


def _check_caller(corp: SimCorp, request: Request) -> None:
    """60020, as WeCom words it, for a caller outside the app's trusted IPs (when it has a
    list)."""
    trusted = corp.trusted_ips
    if trusted is None:
        return
    address = _caller_ip(request)
    if address not in trusted:
        hint = secrets.token_hex(8)
        raise _ApiError(
            60020,
            f"not allow to access from your ip, hint: [{int(time.time())}_{hint}], "
            f"from ip: {address}, more info at "
            "https://open.work.weixin.qq.com/devtool/query?e=60020",
        )


def _check_api(api: str) -> None:
    if api not in APIS:
        raise ValueError(f"unknown API {api!r}; one of {sorted(APIS)}")


def _check_agent(corp: SimCorp, agentid: str) -> None:
    if agentid != str(corp.agent_id):
        raise _PageError(f"agentid {agentid!r} is not this corporation's app.", corp)


def _checked_redirect_uri(corp: SimCorp, redirect_uri: str) -> str:
    """An absolute http(s) URI without a fragment (a `#` breaks WeCom's redirect)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or "#" in redirect_uri:
        raise _PageError("redirect_uri must be an absolute http(s) URL without a fragment.", corp)
    return redirect_uri


def _checked_state(corp: SimCorp, state: str) -> str:
    if not _STATE_PATTERN.fullmatch(state):
        raise _PageError("state must be at most 128 characters of A-Z a-z 0-9 _ -.", corp)
    return state


def _redirect(redirect_uri: str, **params: str) -> Response:
    """302 to redirect_uri with params appended to whatever query it already has."""
    parts = urlsplit(redirect_uri)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


def _page(
    request: Request,
    corp: SimCorp | None,
    *,
    login: _LoginRequest | None = None,
    members: list[SimMember] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return _templates.TemplateResponse(
        request,
        _TEMPLATE,
        {
            "corp": corp,
            "login": login,
            "members": members or [],
            "error": error,
            "pick_outsider": PICK_OUTSIDER,
            "pick_decline": PICK_DECLINE,
        },
        status_code=status_code,
        headers={"cache-control": "no-store"},
    )


def change_event(
    corp_id: str, change_type: str, userid: str, create_time: int, fields: dict[str, str]
) -> str:
    """A contact-change event's plaintext XML as WeCom sends it (wecom-api.md §6): the common
    header, the ChangeType and UserID, then `fields` (by element name), CDATA where WeCom
    uses it."""
    elements = {
        "ToUserName": corp_id,
        "FromUserName": "sys",
        "CreateTime": str(create_time),
        "MsgType": "event",
        "Event": "change_contact",
        "ChangeType": change_type,
        "UserID": userid,
        **fields,
    }
    return "<xml>" + "".join(_element(name, text) for name, text in elements.items()) + "</xml>"


def _element(name: str, text: str) -> str:
    if name in _PLAIN_ELEMENTS:
        return f"<{name}>{escape(text)}</{name}>"
    cdata = "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return f"<{name}>{cdata}</{name}>"


def _event_fields(member: SimMember, changed: dict[str, Any]) -> dict[str, str]:
    """The update_user fields for the member's `changed` attributes, as they are now."""
    fields: dict[str, str] = {}
    for attribute in changed:
        value = getattr(member, attribute)
        if attribute == "department":
            fields["Department"] = ",".join(str(each) for each in value)
            fields["MainDepartment"] = str(value[0]) if value else "1"
        else:
            fields[EVENT_FIELDS[attribute]] = "" if value is None else str(value)
    return fields


def _openid(corp_id: str) -> str:
    """The openid of the one simulated outsider: stable per corporation, as WeCom's are."""
    return "o" + hashlib.sha256(f"{corp_id}:outsider".encode()).hexdigest()[:32]


def _qr_code(corp_id: str, userid: str) -> str:
    vcode = hashlib.sha256(f"{corp_id}:{userid}".encode()).hexdigest()[:20]
    return f"https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=sim{vcode}"


def _contact_fields(member: SimMember) -> JsonObject:
    """mobile and email, only for members who have them."""
    fields: JsonObject = {}
    if member.mobile is not None:
        fields["mobile"] = member.mobile
    if member.email is not None:
        fields["email"] = member.email
    return fields


def _department_id(request: Request) -> int | None:
    raw = request.query_params.get("id", "")
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _department(corp: SimCorp, department_id: int) -> JsonObject:
    """WeCom's department object; a larger order sorts first, so the root comes first."""
    return {
        "id": department_id,
        "name": corp.departments[department_id],
        "parentid": 0 if department_id == 1 else 1,
        "order": 100_000_000 - department_id,
    }


def demo_corps() -> list[SimCorp]:
    """The demo world: two subsidiaries, and 张三 a member of both under different userids."""
    subsidiary_a = SimCorp(
        corp_id="wwsubsidiarya0001",
        name="子公司A",
        agent_id=1000002,
        secret="demo-secret-subsidiary-a",
        departments={1: "子公司A", 2: "销售部", 3: "售后服务部", 4: "财务部"},
        members=[
            SimMember(
                "zhangsan_A",
                "张三",
                [2],
                "销售经理",
                mobile="13800138000",
                email="zhangsan@subsidiary-a.example",
                gender="1",
            ),
            SimMember("lisi", "李四", [2], "销售代表", mobile="13900139000", gender="1"),
            SimMember("wangfang", "王芳", [3], "售后工程师", gender="2"),
            SimMember("zhaoliu", "赵六", [4], "会计", mobile="13700137000", gender="1", status=2),
        ],
    )
    subsidiary_b = SimCorp(
        corp_id="wwsubsidiaryb0002",
        name="子公司B",
        agent_id=1000003,
        secret="demo-secret-subsidiary-b",
        departments={1: "子公司B", 2: "售后服务部", 3: "市场部"},
        members=[
            SimMember("zs_b", "张三", [2], "售后顾问", mobile="13800138000", gender="1"),
            SimMember(
                "chenqi",
                "陈七",
                [3],
                "市场专员",
                mobile="13600136000",
                email="chenqi@subsidiary-b.example",
                gender="2",
            ),
            SimMember("zhouba", "周八", [3], "市场总监", gender="1"),
            SimMember("wujiu", "吴九", [2], "客服", mobile="13500135000", gender="2", status=2),
        ],
    )
    return [subsidiary_a, subsidiary_b]
