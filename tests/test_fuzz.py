"""Hostile input at every public endpoint and parameter, on SQLite and PostgreSQL: never a
server error, and never the payload sent back as it came (issue #11, finding 6).

One app and one browser per backend: a fresh PostgreSQL database per case would take minutes.
Each case is one request with one parameter (or header, cookie, path segment) replaced by a
payload while the others stay valid, so the payload reaches as deep as the request can go.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import quote

import pytest
from httpx2 import Response
from starlette.testclient import TestClient
from support.browser import Front, WeComFront
from support.constants import CORP_A, ISSUER, PHONE, RP_LOGOUT, RP_REDIRECT
from support.protocol import query_of
from support.units import in_unit
from support.wecom import connect_corp
from support.world import World

from iam.app import create_app
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.oidc.server import UNSUPPORTED_RESPONSE_TYPE
from iam.services import admins, clients
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

#: High enough that no rate limit stops a payload before the code that reads it.
LIMITS = "otp_send=100000/600,otp_verify=100000/600,admin_login=100000/600,token=100000/60"
MARK = "zq"
UNKNOWN_CORP = "wwnotconnected0009"


@dataclass(frozen=True)
class Payload:
    """A value as sent in a query string or urlencoded body (`wire`), and what it reads as
    (`needles`): none may come back in a JSON answer, nor in a page unless `page_safe` (a page
    may show a person what they typed, escaped, e.g. a phone number that is not one)."""

    name: str
    wire: str
    needles: tuple[str, ...]
    page_safe: bool = False
    raw_body: bytes | None = None  # sent unescaped in a body (a query is always escaped)


def _marked(name: str, wire: str, *decoded: str, page_safe: bool = False) -> Payload:
    needles = tuple(f"{MARK}{d}{MARK}" for d in decoded)
    return Payload(name, f"{MARK}{wire}{MARK}", needles, page_safe)


LONG = "a" * 10240
PAYLOADS = [
    _marked("nul", "%00", "\x00", "%00"),
    _marked("quote", "%22", '"'),
    replace(_marked("e-raw", "%C3%A9", "é", page_safe=True), raw_body=f"{MARK}é{MARK}".encode()),
    _marked("e-escaped", "%C3%A9", "é", page_safe=True),
    _marked("backslash", "%5C", "\\", page_safe=True),
    _marked("tab", "%09", "\t"),
    _marked("crlf", "%0D%0A", "\r\n"),
    _marked("lf", "%0A", "\n"),
    _marked("ff", "%FF", "\ufffd", "%FF", "\xff"),
    _marked("c3-28", "%C3%28", "\ufffd(", "%C3%28"),
    _marked("long", LONG, LONG, page_safe=True),
]
NUL = PAYLOADS[0]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


AUTHORIZATION_PAYLOADS = [
    "Basic /w==",
    "Basic !!!",
    "Basic " + _b64(b"a"),
    "Basic " + _b64(b"\xff:\xfe"),
    "Basic " + _b64(b"zq%00zq:secret"),
    "Basic " + _b64(b"zq\x00zq:secret"),
    "Basic " + _b64(b"zq\tzq:zq%FFzq"),
    "Basic " + _b64(LONG.encode() + b":" + LONG.encode()),
    "Bearer zq\x00zq",
    "Bearer " + LONG,
    "Bearer",
    "Basic",
]
#: Cookies whose quoted value reads as control characters (`\000` is an octal escape).
COOKIE_PAYLOADS = [
    'iam_session="zq\\000zq"',
    *(f'{name}="' + "\\000" * 43 + '"' for name in ("iam_browser", "__Host-iam_browser")),
    '__Host-iam_browser="' + "\\000" + "a" * 42 + '.x"',
    "iam_lang=zq\\000zq",
]


@dataclass
class Fuzzer:
    """Sends the cases and collects what went wrong, so one run reports every failure."""

    client: TestClient
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    def check(self, label: str, answer: Response, payload: Payload | None = None) -> None:
        self.sent += 1
        if answer.status_code >= 500:
            self.failures.append(f"{label}: {answer.status_code} {answer.text[:200]!r}")
            return
        is_json = answer.headers.get("content-type", "").startswith("application/json")
        if payload is None or (payload.page_safe and not is_json):
            return
        for needle in payload.needles:
            if needle in answer.text:
                self.failures.append(f"{label}: {answer.status_code}, echoes {needle[:20]!r}")
                return

    def query(
        self,
        method: str,
        path: str,
        base: dict[str, str],
        names: list[str],
        fresh: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """Each name in the query string, in turn, as each payload (`fresh`: values to renew
        for each case, such as a single-use state)."""
        for name in names:
            for payload in PAYLOADS:
                if payload.raw_body is not None:
                    continue  # a client escapes a query; the server sees what e-escaped sends
                params = {**base, **(fresh() if fresh else {}), name: None}
                query = _encoded(params) + f"&{quote(name)}={payload.wire}"
                answer = self.client.request(method, f"{path}?{query}")
                self.check(f"{method} {path} ?{name}={payload.name}", answer, payload)

    def form(self, path: str, base: dict[str, str], names: list[str], **kwargs: object) -> None:
        """Each name in a urlencoded body, in turn, as each payload (raw bytes too)."""
        for name in names:
            for payload in PAYLOADS:
                body = (_encoded({**base, name: None}) + f"&{quote(name)}=").encode()
                body += payload.raw_body if payload.raw_body is not None else payload.wire.encode()
                headers = {"content-type": "application/x-www-form-urlencoded"}
                answer = self.client.post(path, content=body, headers=headers, **kwargs)
                self.check(f"POST {path} {name}={payload.name}", answer, payload)

    def multipart(self, path: str, base: dict[str, str], names: list[str]) -> None:
        """Each name in a multipart body, in turn, with a NUL or a byte that is not UTF-8."""
        for name in names:
            for value in (b"zq\x00zq", b"zq\xffzq"):
                parts = [(k, v.encode()) for k, v in base.items() if k != name]
                parts.append((name, value))
                body = (
                    b"".join(
                        b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                        % (k.encode(), v)
                        for k, v in parts
                    )
                    + b"--b--\r\n"
                )
                headers = {"content-type": "multipart/form-data; boundary=b"}
                answer = self.client.post(path, content=body, headers=headers)
                self.check(f"POST {path} multipart {name}={value!r}", answer, NUL)

    def paths(self, template: str) -> None:
        """The `{}` path segment as each payload."""
        for payload in PAYLOADS:
            if payload.name == "long" or payload.raw_body is not None:
                continue  # a 10 KB path is the server's to refuse; a client escapes a path
            answer = self.client.get(template.format(payload.wire))
            self.check(f"GET {template} {{}}={payload.name}", answer, payload)

    def authorization(self, method: str, path: str, body: dict[str, str] | None = None) -> None:
        for value in AUTHORIZATION_PAYLOADS:
            answer = self.client.request(method, path, data=body, headers={"authorization": value})
            self.check(f"{method} {path} Authorization: {value[:20]!r}", answer, NUL)

    def cookies(self, app: object, method: str, path: str, data: dict[str, str] | None) -> None:
        for cookie in COOKIE_PAYLOADS:
            with TestClient(
                app, base_url=ISSUER, follow_redirects=False, raise_server_exceptions=False
            ) as browser:
                answer = browser.request(method, path, data=data, headers={"cookie": cookie})
            self.check(f"{method} {path} Cookie: {cookie[:24]!r}", answer, NUL)

    def assert_clean(self) -> None:
        assert not self.failures, f"{len(self.failures)} of {self.sent} cases:\n" + "\n".join(
            self.failures
        )


def _encoded(params: dict[str, str | None]) -> str:
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items() if v is not None
    )


# --- the world the cases run in -----------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """Valid values for every parameter: a signed-in browser with tokens, a pending request
    waiting at the identity selector, and a pending WeCom binding."""

    app: object
    front: WeComFront
    world: World
    csrf: str
    code: str
    verifier: str
    access_token: str
    refresh_token: str
    id_token: str
    flow: str
    binding: str

    def wecom_state(self) -> dict[str, str]:
        """A new single-use state of a WeCom login this browser started."""
        started = self.front.start(CORP_A)
        return {"state": query_of(started.headers["location"])["state"]}


@pytest.fixture
def scene(
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
    world: World,
) -> Iterator[Scene]:
    connect_corp(store, simulator, CORP_A)
    in_unit(store, admins.create_admin, "root", "a long admin passphrase")
    hr = in_unit(store, clients.create_client, "HR", [RP_REDIRECT], context_policy="required")
    settings = replace(wecom_settings, rate_limits=LIMITS)
    app = create_app(settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))
    with TestClient(
        app, base_url=ISSUER, follow_redirects=False, raise_server_exceptions=False
    ) as browser:
        front = WeComFront(browser, sms, simulator)
        rp_id = world.rp.client.client_id
        tokens = front.tokens(world)
        code, verifier, _ = front.get_code(rp_id, RP_REDIRECT)
        params, _ = front.code_params(hr.client.client_id, RP_REDIRECT)
        offer = front.authorize(**params)
        assert offer.status_code == 303, offer.text
        flow = query_of(offer.headers["location"])["flow"]
        binding_page = front.login_as("lisi")
        assert binding_page.headers["location"].startswith("/bind?"), binding_page.headers
        yield Scene(
            app=app,
            front=front,
            world=world,
            csrf=front.csrf(),
            code=code,
            verifier=verifier,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            id_token=tokens["id_token"],
            flow=flow,
            binding=query_of(binding_page.headers["location"])["binding"],
        )


def _authorize_params(scene: Scene) -> dict[str, str]:
    params, _ = scene.front.code_params(scene.world.rp.client.client_id, RP_REDIRECT)
    return {**params, "prompt": "none", "max_age": "600", "login_hint": PHONE}


AUTHORIZE_NAMES = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "ui_locales",
    "id_token_hint",
    "acr_values",
    "response_mode",
    "request",
    "request_uri",
    "claims",
    "lang",
]


def test_the_protocol_endpoints_never_fail_on_hostile_input(scene: Scene) -> None:
    fuzz = Fuzzer(scene.front.client)
    rp = scene.world.rp
    basic = (rp.client.client_id, rp.client_secret or "")
    public_id = scene.world.public_rp.client.client_id
    authorize = _authorize_params(scene)
    fuzz.query("GET", "/authorize", authorize, AUTHORIZE_NAMES)
    fuzz.form("/authorize", authorize, AUTHORIZE_NAMES)
    code_grant = {
        "grant_type": "authorization_code",
        "code": scene.code,
        "redirect_uri": RP_REDIRECT,
        "code_verifier": scene.verifier,
    }
    token_names = ["grant_type", "code", "redirect_uri", "code_verifier", "scope"]
    fuzz.form("/token", code_grant, token_names, auth=basic)
    fuzz.form("/token", {**code_grant, "client_id": public_id}, ["client_id", "code"])
    post_auth = {"client_id": rp.client.client_id, "client_secret": rp.client_secret or ""}
    fuzz.form("/token", {**code_grant, **post_auth}, ["client_id", "client_secret"])
    refresh = {"grant_type": "refresh_token", "refresh_token": scene.refresh_token}
    fuzz.form("/token", refresh, ["refresh_token", "scope"], auth=basic)
    credentials = {"grant_type": "client_credentials", "scope": "openid"}
    fuzz.form("/token", credentials, ["scope"], auth=basic)
    assertion = {
        **credentials,
        "client_id": rp.client.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "a.b.c",
    }
    fuzz.form("/token", assertion, ["client_id", "client_assertion_type", "client_assertion"])
    fuzz.multipart("/token", {**code_grant, **post_auth}, ["client_id", "code", "grant_type"])
    fuzz.authorization("POST", "/token", code_grant)
    for path in ("/revoke", "/introspect"):
        token = {"token": scene.refresh_token, "token_type_hint": "refresh_token"}
        fuzz.form(path, token, ["token", "token_type_hint"], auth=basic)
        fuzz.form(path, {**token, **post_auth}, ["client_id", "client_secret"])
        fuzz.form(path, {**token, "client_id": public_id}, ["client_id"])
        fuzz.authorization("POST", path, token)
    fuzz.query("GET", "/userinfo", {"access_token": scene.access_token}, ["access_token"])
    fuzz.form("/userinfo", {"access_token": scene.access_token}, ["access_token"])
    fuzz.authorization("GET", "/userinfo")
    fuzz.authorization("POST", "/userinfo", {"x": "1"})
    fuzz.authorization("GET", "/admin/api/apps")
    for path in ("/.well-known/openid-configuration", "/jwks.json", "/healthz", "/readyz"):
        fuzz.query("GET", path, {}, ["x", "lang"])
    fuzz.assert_clean()


def test_the_pages_never_fail_on_hostile_input(scene: Scene) -> None:
    fuzz = Fuzzer(scene.front.client)
    csrf = {"csrf_token": scene.csrf}
    rp_id = scene.world.rp.client.client_id
    logout = {
        "id_token_hint": scene.id_token,
        "post_logout_redirect_uri": RP_LOGOUT,
        "state": "s",
        "client_id": rp_id,
        "ui_locales": "en",
    }
    fuzz.query("GET", "/logout", logout, [*logout, "lang"])
    fuzz.form("/logout", {**csrf, **logout}, [*logout, "csrf_token"])
    fuzz.query("GET", "/login", {"flow": scene.flow}, ["flow", "step", "problem", "wait", "lang"])
    login = {**csrf, "phone": PHONE, "flow": scene.flow}
    fuzz.form("/login/otp", login, ["phone", "flow", "csrf_token"])
    fuzz.form("/login", {**login, "code": "123456"}, ["phone", "code", "flow"])
    fuzz.multipart("/login", {**login, "code": "123456"}, ["phone", "code", "flow"])
    fuzz.query("GET", "/bind", {"binding": scene.binding}, ["binding", "lang"])
    bind = {**csrf, "binding": scene.binding, "phone": "+8613900139000"}
    fuzz.form("/bind", bind, ["binding", "phone"])
    fuzz.form("/bind", {**bind, "code": "123456"}, ["binding", "phone", "code"])
    fuzz.form("/bind/confirm", {**csrf, "binding": scene.binding}, ["binding", "confirm"])
    fuzz.query("GET", "/select-identity", {"flow": scene.flow}, ["flow", "problem", "lang"])
    select = {**csrf, "flow": scene.flow, "link_id": "x"}
    fuzz.form("/select-identity", select, ["flow", "link_id", "cancel"])
    fuzz.paths("/flow/{}")
    fuzz.query("GET", f"/flow/{scene.flow}", {}, ["lang"])
    for corp in (CORP_A, UNKNOWN_CORP):
        fuzz.query("GET", f"/login/wecom/{corp}", {"flow": scene.flow}, ["flow", "link", "lang"])
        callback = f"/callback/wecom/{corp}"
        fuzz.query("GET", callback, {"code": "x"}, ["code", "appid"], scene.wecom_state)
        fuzz.query("GET", callback, {"code": "x"}, ["state"])
    fuzz.paths("/login/wecom/{}")
    fuzz.paths("/callback/wecom/{}?code=x&state=y")
    fuzz.query("GET", "/admin/login", {}, ["lang", "next"])
    admin = {**csrf, "username": "root", "password": "wrong"}
    fuzz.form("/admin/login", admin, ["username", "password", "csrf_token"])
    fuzz.query("GET", "/", {}, ["lang"])
    fuzz.cookies(scene.app, "GET", "/authorize?" + _encoded(_authorize_params(scene)), None)
    fuzz.cookies(scene.app, "GET", "/login", None)
    fuzz.cookies(scene.app, "GET", f"/flow/{scene.flow}", None)
    fuzz.cookies(scene.app, "GET", f"/login/wecom/{CORP_A}", None)
    fuzz.cookies(scene.app, "GET", "/select-identity?flow=" + scene.flow, None)
    fuzz.assert_clean()


# --- the findings, one by one -------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ['https://rp.example/cb"', "https://rp.example/cb\\", "https://rp.é/cb"]
)
def test_an_unregistered_redirect_uri_is_shown_at_the_server_whatever_it_holds(
    front: Front, world: World, uri: str
) -> None:
    """Authlib's description repeats the URI and cannot be built for these characters."""
    params, _ = front.code_params(world.rp.client.client_id, uri)
    answer = front.authorize(**params)
    assert answer.status_code == 400, answer.text
    assert "has not registered" in answer.text  # error.bad_redirect_uri


@pytest.mark.parametrize("response_type", ['co"de', "code\\", "códe"])
def test_a_response_type_no_error_could_describe_is_shown_at_the_server(
    front: Front, world: World, response_type: str
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.authorize(**{**params, "response_type": response_type})
    assert answer.status_code == 400, answer.text
    assert UNSUPPORTED_RESPONSE_TYPE in answer.text


def test_an_unsupported_response_type_goes_back_with_a_fixed_description(
    front: Front, world: World
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.authorize(**{**params, "response_type": "token id_token"})
    assert answer.status_code == 302, answer.text
    sent_back = query_of(answer.headers["location"])
    assert sent_back["error"] == "unsupported_response_type"
    assert sent_back["error_description"] == UNSUPPORTED_RESPONSE_TYPE
    assert sent_back["state"] == params["state"]
