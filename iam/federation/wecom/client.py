"""The WeCom server API (qyapi.weixin.qq.com), as much of it as login needs. Failures become
`ConnectorError`s whose `reason` says what to tell the person. Secrets, tokens, codes and tickets
never appear in messages or logs."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import quote, quote_plus

import httpx

from iam import metrics
from iam.federation.connector import UpstreamRefusedError, UpstreamUnavailableError
from iam.federation.wecom.tokens import TokenCache

log = logging.getLogger("iam.wecom")

#: Connect within 3 s and get each read within 5 s: a login should fail rather than hang.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
#: errcodes meaning "this access token is invalid (40014) or expired (42001)", and 40001
#: ("invalid credential"), which data APIs also send for a stale token (wecom-api.md 1). WeCom
#: may invalidate a token early, so the token is dropped and the call is made once more.
RETRY_ON_TOKEN_ERRORS = frozenset({40014, 42001, 40001})
#: errcode -> message-catalogue key for the person; any other errcode is "wecom.error".
REASONS: Mapping[int, str] = {
    40029: "wecom.invalid_code",
    **dict.fromkeys((40013, 40001, 40091, 40056, 41002, 41004), "wecom.misconfigured"),
    **dict.fromkeys((45009, 45033, -1), "wecom.busy"),
    60020: "wecom.ip_not_trusted",
    50001: "wecom.redirect_untrusted",
    **dict.fromkeys((60011, 50002, 48002), "wecom.no_privilege"),
    **dict.fromkeys((60111, 40003), "wecom.unknown_member"),
}
#: The longest part of a WeCom errmsg kept in messages. Real errmsgs carry a long hint and URL.
ERRMSG_LIMIT = 200
#: How long a department's name is believed without asking WeCom again (a department event
#: received by this process forgets it sooner).
DEPARTMENT_TTL = 3600.0
#: How long a refused gettoken (wrong corp id or secret, app closed, ...) is remembered per app,
#: in seconds. Within it `access_token` raises the same refusal again without asking WeCom: a
#: wrong secret would otherwise make every login a gettoken call, and WeCom blocks a corporation
#: for an hour after about 2,000 failed calls (wecom-api.md 1). The connection test bypasses it.
REFUSED_TOKEN_TTL = 45.0
#: errcode -1, "system busy": WeCom says to try again, so every call is made once more after
#: `BUSY_RETRY_PAUSE` seconds (short: a person is waiting for the login).
SYSTEM_BUSY = -1
BUSY_RETRY_PAUSE = 0.2
#: "Asked too often" (45009) and "too many at once" (45033). WeCom then refuses the whole
#: corporation for a minute (per-minute limits) or an hour (wecom-api.md 8); calling it meanwhile
#: only keeps the block alive, so the corporation is left alone for `FREQUENCY_BLOCK` seconds.
#: The errmsg does not reliably say which limit was hit, so this is the per-minute block.
FREQUENCY_LIMITED = frozenset({45009, 45033})
FREQUENCY_BLOCK = 60.0
#: Keys of the legacy `user/getuserinfo` answer, and the names the current API uses for them.
_LEGACY_KEYS = {"UserId": "userid", "OpenId": "openid", "DeviceId": "deviceid"}


def new_http_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An HTTP client for WeCom. It does not follow redirects, because an API call that
    answers with a redirect is broken, not something to follow."""
    return httpx.Client(
        timeout=DEFAULT_TIMEOUT,
        follow_redirects=False,
        headers={"User-Agent": "iam"},
        transport=transport,
    )


@dataclass(frozen=True)
class WeComApp:
    """One self-built app of one corporation. Access tokens are issued per app."""

    corp_id: str
    agent_id: int
    secret: str = field(repr=False)  # never logged, never in an exception message


def token_key(app: WeComApp) -> str:
    """The app's key in the token cache. It includes a hash of the secret, so that after the
    secret changes, the token issued for the old secret is not used again."""
    digest = hashlib.sha256(app.secret.encode()).hexdigest()[:16]
    return f"{app.corp_id}:{app.agent_id}:{digest}"


class WeComApiError(UpstreamRefusedError):
    """WeCom answered with a non-zero errcode."""

    def __init__(self, api: str, code: int, errmsg: str, *, detail: str | None = None) -> None:
        super().__init__(
            detail or f"WeCom {api} answered errcode {code} ({errmsg})",
            code=code,
            reason=REASONS.get(code, "wecom.error"),
        )
        self.code: int = code
        self.api = api
        self.errmsg = errmsg


class WeComBlockedError(WeComApiError):
    """Not sent: WeCom limited this corporation's calls (45009 or 45033) a moment ago and the
    block has not run out. It is that errcode, so callers treat it as WeCom's own answer (the
    directory sync waits it out; a login says "busy")."""

    def __init__(self, api: str, corp_id: str, code: int, seconds_left: float) -> None:
        detail = (
            f"WeCom {api} not called: WeCom limited corporation {corp_id}'s calls "
            f"(errcode {code}) and the block runs {seconds_left:.0f} s more"
        )
        super().__init__(api, code, "not sent", detail=detail)
        self.corp_id = corp_id
        self.seconds_left = seconds_left


class WeComUnavailableError(UpstreamUnavailableError):
    """WeCom could not be asked: a timeout, a connection error, or an answer that is not WeCom
    JSON (an HTTP error status, a proxy's HTML page, JSON without errcode)."""

    def __init__(self, api: str, detail: str, *, reason: str = "wecom.unavailable") -> None:
        super().__init__(f"WeCom {api} {detail}", reason=reason)
        self.api = api


class WeComClient:
    """Calls WeCom for the apps it is given, with access tokens from `cache`. It is safe to use
    from many threads.

    It spares WeCom's quota (wecom-api.md 8) in this process: a refused gettoken is remembered
    per app for `REFUSED_TOKEN_TTL`, and a corporation that WeCom limited (45009, 45033) is not
    called for `FREQUENCY_BLOCK`. `clock` (monotonic seconds) and `sleep` are for tests."""

    def __init__(
        self,
        api_base: str,
        http: httpx.Client,
        cache: TokenCache,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._base = api_base.rstrip("/")
        self._http = http
        self._cache = cache
        self._clock = clock
        self._sleep = sleep
        self._departments: dict[tuple[str, int], tuple[str, float]] = {}
        self._departments_lock = threading.Lock()
        # token_key(app) -> (errcode, errmsg, until) of its last refused gettoken; and
        # corp_id -> (errcode, until) of WeCom's frequency block. Guarded by _guard_lock.
        self._refused: dict[str, tuple[int, str, float]] = {}
        self._blocked: dict[str, tuple[int, float]] = {}
        self._guard_lock = threading.Lock()

    def access_token(self, app: WeComApp) -> str:
        """The app's access token, from the cache or gettoken. Within `REFUSED_TOKEN_TTL` of a
        refused gettoken the same refusal is raised without asking WeCom again."""
        key = token_key(app)
        refused = self._remembered(self._refused, key)
        if refused is not None:
            code, errmsg, _ = refused
            raise WeComApiError("gettoken", code, errmsg)
        return self._cache.get_or_fetch(key, lambda: self._fetch_token(app))

    def fetch_token(self, app: WeComApp) -> int:
        """Call gettoken now, past the cache (an admin's connection test): the new token's
        lifetime in seconds, or the error. The token itself is dropped, and the cache is left
        alone: within its validity WeCom answers a repeat gettoken with the same token.

        It ignores a remembered refusal (the admin may just have fixed the secret) and a
        frequency block (one call, and the admin sees WeCom's own answer), and replaces them
        with this answer."""
        with self._guard_lock:
            self._refused.pop(token_key(app), None)
            self._blocked.pop(app.corp_id, None)
        return self._fetch_token(app)[1]

    def get_user_info(self, app: WeComApp, code: str) -> dict[str, Any]:
        """Who the OAuth `code` belongs to: `userid` (and `user_ticket`) for a member, `openid`
        for anyone else. The capitalised keys of the legacy API are given in lower case."""
        body = self._call(app, "auth/getuserinfo", "GET", params={"code": code}, hidden=(code,))
        for legacy, current in _LEGACY_KEYS.items():
            if legacy in body:
                value = body.pop(legacy)
                body.setdefault(current, value)
        return body

    def get_user_detail(self, app: WeComApp, user_ticket: str) -> dict[str, Any]:
        """The profile that the person agreed to share (mobile, email, ...)."""
        return self._call(
            app,
            "auth/getuserdetail",
            "POST",
            payload={"user_ticket": user_ticket},
            hidden=(user_ticket,),
        )

    def get_user(self, app: WeComApp, userid: str) -> dict[str, Any]:
        return self._call(app, "user/get", "GET", params={"userid": userid})

    def get_agent(self, app: WeComApp) -> dict[str, Any]:
        """The app's own settings as WeCom keeps them (agent/get): `name`, `close` (1: the app
        is disabled), `redirect_domain` (its trusted domain), its visible range
        (`allow_userinfos.user`, `allow_partys.partyid`, `allow_tags.tagid`), ... It is a data
        API: WeCom checks the caller's address against the app's trusted IPs (60020), which
        it may not do for gettoken (wecom-api.md 4)."""
        return self._call(app, "agent/get", "GET", params={"agentid": app.agent_id})

    def department_name(self, app: WeComApp, department_id: int) -> str:
        """A department's name, from this process's cache (`DEPARTMENT_TTL`) or department/get:
        every sign-in shows its member's departments, and names seldom change (a department
        event forgets them at once: `forget_departments`)."""
        key = (app.corp_id, department_id)
        with self._departments_lock:
            cached = self._departments.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        department = self.get_department(app, department_id)
        name = str(department.get("name") or department_id)
        with self._departments_lock:
            self._departments[key] = (name, time.monotonic() + DEPARTMENT_TTL)
        return name

    def forget_departments(self, corp_id: str) -> None:
        """A corporation's departments changed (a department event): read them again."""
        with self._departments_lock:
            for key in [key for key in self._departments if key[0] == corp_id]:
                del self._departments[key]

    def get_department(self, app: WeComApp, department_id: int) -> dict[str, Any]:
        body = self._call(app, "department/get", "GET", params={"id": department_id})
        department = body.get("department")
        if not isinstance(department, dict):
            raise WeComUnavailableError("department/get", "answered without a department")
        return department

    def _fetch_token(self, app: WeComApp) -> tuple[str, int]:
        """gettoken. A refusal is remembered for `REFUSED_TOKEN_TTL` (see `access_token`),
        except "busy" answers, which say nothing about the secret; a token forgets it."""
        params = {"corpid": app.corp_id, "corpsecret": app.secret}
        body = self._exchange(app.corp_id, "gettoken", "GET", params, None, hidden=(app.secret,))
        key = token_key(app)
        if body["errcode"] != 0:
            error = _refused("gettoken", body, hidden=(app.secret,))
            if error.code not in FREQUENCY_LIMITED and error.code != SYSTEM_BUSY:
                until = self._clock() + REFUSED_TOKEN_TTL
                with self._guard_lock:
                    self._refused[key] = (error.code, error.errmsg, until)
            raise error
        with self._guard_lock:
            self._refused.pop(key, None)
        token, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not _is_int(expires_in):
            raise WeComUnavailableError("gettoken", "answered without access_token and expires_in")
        return token, expires_in

    def _call(
        self,
        app: WeComApp,
        api: str,
        method: str,
        *,
        params: Mapping[str, str | int] | None = None,
        payload: Mapping[str, str] | None = None,
        hidden: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """The answer to one API call. A token that WeCom rejects is dropped and the call is
        made once more with a new token; a second rejection is an error."""

        def attempt() -> tuple[str, dict[str, Any]]:
            token = self.access_token(app)
            query = {"access_token": token, **(params or {})}
            body = self._exchange(app.corp_id, api, method, query, payload, hidden=(token, *hidden))
            return token, body

        token, body = attempt()
        if body["errcode"] in RETRY_ON_TOKEN_ERRORS:
            self._cache.drop(token_key(app), token)
            token, body = attempt()
        if body["errcode"] != 0:
            raise _refused(api, body, hidden=(token, *hidden))
        return body

    def _exchange(
        self,
        corp_id: str,
        api: str,
        method: str,
        params: Mapping[str, str | int],
        payload: Mapping[str, str] | None,
        *,
        hidden: tuple[str, ...],
    ) -> dict[str, Any]:
        """`_send` for one corporation, with WeCom's own advice on busy answers: not sent while
        WeCom limits the corporation (`WeComBlockedError`); a 45009 or 45033 starts such a
        block; a -1 ("system busy") is sent once more after `BUSY_RETRY_PAUSE`."""
        self._raise_if_blocked(corp_id, api)
        body = self._send(api, method, params, payload, hidden=hidden)
        if body["errcode"] == SYSTEM_BUSY:
            log.info("WeCom %s answered -1 (system busy): asking once more", api)
            self._sleep(BUSY_RETRY_PAUSE)
            body = self._send(api, method, params, payload, hidden=hidden)
        if body["errcode"] in FREQUENCY_LIMITED:
            until = self._clock() + FREQUENCY_BLOCK
            with self._guard_lock:
                self._blocked[corp_id] = (body["errcode"], until)
            log.warning(
                "WeCom limited corporation %s (errcode %d): no calls for it for %.0f s",
                corp_id,
                body["errcode"],
                FREQUENCY_BLOCK,
            )
        return body

    def _raise_if_blocked(self, corp_id: str, api: str) -> None:
        blocked = self._remembered(self._blocked, corp_id)
        if blocked is not None:
            code, until = blocked
            raise WeComBlockedError(api, corp_id, code, until - self._clock())

    def _remembered(self, memory: dict[str, Any], key: str) -> Any:
        """What `memory` holds for `key` while it lasts (its last item is when it ends); an
        entry that has ended is forgotten."""
        now = self._clock()
        with self._guard_lock:
            entry = memory.get(key)
            if entry is not None and now >= entry[-1]:
                del memory[key]
                entry = None
        return entry

    def _send(
        self,
        api: str,
        method: str,
        params: Mapping[str, str | int],
        payload: Mapping[str, str] | None,
        *,
        hidden: tuple[str, ...],
    ) -> dict[str, Any]:
        """One HTTP exchange, and its JSON answer even when errcode is not 0. Failures are
        logged here, each with the time it took."""
        started = time.perf_counter()

        def unavailable(detail: str, reason: str = "wecom.unavailable") -> WeComUnavailableError:
            elapsed = _elapsed_ms(started)
            log.warning("WeCom %s failed after %d ms: %s", api, elapsed, detail)
            return WeComUnavailableError(api, f"{detail} after {elapsed} ms", reason=reason)

        try:
            response = self._http.request(
                method, f"{self._base}/cgi-bin/{api}", params=params, json=payload
            )
        except httpx.TimeoutException as error:
            metrics.WECOM_CALLS.labels(api, "timeout").inc()
            raise unavailable(f"timed out ({type(error).__name__})", "wecom.timeout") from error
        except httpx.HTTPError as error:
            metrics.WECOM_CALLS.labels(api, "unreachable").inc()
            problem = _scrub(str(error), hidden)
            raise unavailable(
                f"could not be reached ({type(error).__name__}: {problem})"
            ) from error
        if response.status_code != 200:
            metrics.WECOM_CALLS.labels(api, "-").inc()
            raise unavailable(f"answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not _is_int(body.get("errcode")):
            metrics.WECOM_CALLS.labels(api, "-").inc()
            raise unavailable("answered without a JSON errcode")
        metrics.WECOM_CALLS.labels(api, str(body["errcode"])).inc()
        if body["errcode"] != 0:
            log.warning(
                "WeCom %s answered errcode %d after %d ms (%s)",
                api,
                body["errcode"],
                _elapsed_ms(started),
                _errmsg(body, hidden),
            )
        return body


def _refused(api: str, body: Mapping[str, Any], *, hidden: tuple[str, ...]) -> WeComApiError:
    return WeComApiError(api, body["errcode"], _errmsg(body, hidden))


def _errmsg(body: Mapping[str, Any], hidden: tuple[str, ...]) -> str:
    """The answer's errmsg, safe to log and short enough to read."""
    return _scrub(str(body.get("errmsg", "")), hidden)[:ERRMSG_LIMIT]


def _scrub(text: str, hidden: tuple[str, ...]) -> str:
    """`text` with every value in `hidden` replaced, as sent or URL-encoded, in case WeCom or
    httpx echoes a request."""
    for value in hidden:
        for form in dict.fromkeys((value, quote(value, safe=""), quote_plus(value))):
            if form:
                text = text.replace(form, "[hidden]")
    return text


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
