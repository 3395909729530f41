"""The demo relying-party apps: against a live identity server over real HTTP (uvicorn on both
sides, httpx as the browser), and against a scripted provider for what a live server does not
readily give (a context claim, tokens that must fail verification)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urljoin

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.datastructures import Secret
from starlette.testclient import TestClient
from support.constants import PHONE, TEST_SECRET
from support.protocol import query_of
from support.servers import free_ports, serving
from support.units import in_unit

from iam.app import create_app
from iam.db.models import User
from iam.devtools.demo_apps import NO_CONTEXT, DemoAppConfig, create_demo_app
from iam.services import clients, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

NAME = "张三"


@dataclass(frozen=True)
class Demo:
    issuer: str
    sms: ConsoleSms
    user: User
    learning: DemoAppConfig  # policy none
    crm: DemoAppConfig  # policy required


@pytest.fixture
def demo(database_url: str, store, reused_signing_key: None) -> Iterator[Demo]:
    """The identity server and both demo apps, each under its own uvicorn. (The signing key is
    asked for here, not by a module mark: the scripted tests below need no database.)"""
    server_port, learning_port, crm_port = free_ports(3)
    issuer = f"http://127.0.0.1:{server_port}"
    user = in_unit(store, users.create_user, NAME, PHONE)
    configs = []
    for name, title, policy, port in (
        ("learning", "学习平台 Learning platform", "none", learning_port),
        ("crm", "CRM 客户管理", "required", crm_port),
    ):
        base_url = f"http://127.0.0.1:{port}"
        registered = in_unit(
            store,
            clients.create_client,
            title,
            [base_url + "/callback"],
            post_logout_redirect_uris=[base_url + "/"],
            context_policy=policy,
        )
        assert registered.client_secret is not None
        configs.append(
            DemoAppConfig(
                name=name,
                title=title,
                issuer=issuer,
                client_id=registered.client.client_id,
                client_secret=registered.client_secret,
                base_url=base_url,
            )
        )
    sms = ConsoleSms()
    settings = Settings(secret_key=Secret(TEST_SECRET), issuer=issuer, database_url=database_url)
    apps = {
        server_port: create_app(settings, store=store, sms=sms),
        learning_port: create_demo_app(configs[0]),
        crm_port: create_demo_app(configs[1]),
    }
    with serving(apps):
        yield Demo(issuer, sms, user, *configs)


# --- the browser ---


def walk(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    """Follow redirects as a browser does, across hosts: the first answer that is not one."""
    while response.is_redirect:
        response = browser.get(urljoin(str(response.url), response.headers["location"]))
    return response


def sign_in(browser: httpx.Client, demo: Demo, app: DemoAppConfig) -> httpx.Response:
    """Click "Sign in" at the app, sign in at the server with phone + SMS code: where it ends."""
    page = walk(browser, browser.get(app.base_url + "/login"))
    assert str(page.url).startswith(demo.issuer + "/login?flow="), page.url
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    flow = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf, "phone": PHONE, "flow": flow}
    assert browser.post(demo.issuer + "/login/otp", data=form).status_code == 303  # to the code
    answer = browser.post(
        demo.issuer + "/login", data={**form, "code": demo.sms.messages()[0].code}
    )
    assert answer.status_code == 303, answer.text
    return walk(browser, answer)


def text_of(page: str, element_id: str) -> str | None:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    return html.unescape(match.group(1)).strip() if match else None


def table(page: str, element_id: str) -> dict[str, str]:
    body = re.search(rf'<table id="{element_id}">(.*?)</table>', page, re.S)
    assert body, f"no table {element_id}"
    rows = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", body.group(1))
    return {html.unescape(name): html.unescape(value) for name, value in rows}


# --- against the live server ---


def test_the_learning_platform_sees_the_person_and_no_context(demo: Demo) -> None:
    app = demo.learning
    with httpx.Client() as browser:
        page = sign_in(browser, demo, app)

    assert (str(page.url), page.status_code) == (app.base_url + "/", 200)
    assert text_of(page.text, "error") is None
    assert text_of(page.text, "who") == NAME
    assert text_of(page.text, "sub") == demo.user.id
    assert text_of(page.text, "context") == NO_CONTEXT
    id_claims = table(page.text, "claims-id-token")
    assert (id_claims["sub"], id_claims["name"], id_claims["iss"]) == (
        demo.user.id,
        NAME,
        demo.issuer,
    )
    assert app.client_id in id_claims["aud"]
    assert id_claims["amr"] == '["sms"]'
    userinfo = table(page.text, "claims-userinfo")
    assert (userinfo["sub"], userinfo["phone_number"]) == (demo.user.id, PHONE)
    access = table(page.text, "claims-access-token")
    assert (access["sub"], access["client_id"]) == (demo.user.id, app.client_id)
    assert "openid" in access["scope"].split()
    for subsidiary_detail in ("wecom_context", "corpid", "corp_name", "position", "department"):
        assert subsidiary_detail not in page.text


def test_the_crm_does_not_sign_in_a_person_without_a_wecom_identity(demo: Demo) -> None:
    """Policy `required` and no active WeCom link: the server explains on a page of its own, or
    returns an error that the app shows; never a token without the context."""
    with httpx.Client() as browser:
        page = sign_in(browser, demo, demo.crm)

    if str(page.url).startswith(demo.issuer):
        assert page.status_code < 500 and page.headers["content-type"].startswith("text/html")
        return
    assert str(page.url) == demo.crm.base_url + "/"
    assert text_of(page.text, "error")
    assert text_of(page.text, "who") is None
    assert 'id="sign-in"' in page.text


def test_one_sso_session_two_apps_and_only_the_crm_sees_the_subsidiary(demo: Demo, store) -> None:
    """The demo's story: the person has one WeCom identity; the CRM acts as it, the learning
    platform (same session, no second login) still sees only the person."""
    in_unit(
        store,
        users.link_wecom,
        demo.user.id,
        "CORP_A",
        "zhangsan_A",
        {
            "corpid": "CORP_A",
            "corp_name": "子公司A",
            "userid": "zhangsan_A",
            "department": ["销售部"],
            "position": "销售经理",
        },
    )
    with httpx.Client() as browser:
        crm = sign_in(browser, demo, demo.crm)
        learning = walk(browser, browser.get(demo.learning.base_url + "/login"))

    assert str(crm.url) == demo.crm.base_url + "/"
    assert text_of(crm.text, "context") == "Acting as: 子公司A · 销售经理 (zhangsan_A)"
    assert text_of(crm.text, "sub") == demo.user.id
    for table_id in ("claims-id-token", "claims-userinfo", "claims-access-token"):
        assert '"userid": "zhangsan_A"' in table(crm.text, table_id)["wecom_context"]
    assert str(learning.url) == demo.learning.base_url + "/"
    assert text_of(learning.text, "sub") == demo.user.id
    assert text_of(learning.text, "context") == NO_CONTEXT
    assert "wecom_context" not in learning.text and "CORP_A" not in learning.text


def test_callback_errors_are_shown_on_the_page(demo: Demo) -> None:
    app = demo.learning
    with httpx.Client() as browser:
        forged = browser.get(app.base_url + "/callback", params={"code": "x", "state": "forged"})
        assert forged.status_code == 303
        page = walk(browser, forged)
        assert "state is missing, unknown or already used" in text_of(page.text, "error")
        assert 'id="sign-in"' in page.text

        started = browser.get(app.base_url + "/login", params={"prompt": "select_account"})
        assert started.status_code == 303
        assert started.headers["location"].startswith(demo.issuer + "/authorize?")
        request = query_of(started.headers["location"])
        assert request["prompt"] == "select_account"
        assert (request["client_id"], request["redirect_uri"]) == (
            app.client_id,
            app.base_url + "/callback",
        )
        assert request["code_challenge_method"] == "S256"
        assert request["nonce"] and request["code_challenge"]
        cookie = started.headers["set-cookie"].lower()
        assert cookie.startswith("learning_session=")
        assert all(flag in cookie for flag in ("httponly", "path=/", "samesite=lax"))

        denied = {
            "error": "access_denied",
            "error_description": "The person declined.",
            "state": request["state"],
        }
        page = walk(browser, browser.get(app.base_url + "/callback", params=denied))
        assert text_of(page.text, "error") == (
            "The identity server answered access_denied: The person declined."
        )
        replayed = walk(browser, browser.get(app.base_url + "/callback", params=denied))
        assert "already used" in text_of(replayed.text, "error")  # a state is single use
        assert text_of(browser.get(app.base_url + "/").text, "error") is None  # shown once


def test_sign_out_ends_the_app_session_then_the_sso_session(demo: Demo) -> None:
    app = demo.learning
    with httpx.Client() as browser:
        assert text_of(sign_in(browser, demo, app).text, "who") == NAME

        out = browser.get(app.base_url + "/logout")
        assert out.status_code == 303
        assert out.headers["location"].startswith(demo.issuer + "/logout?")
        request = query_of(out.headers["location"])
        hint = jwt.decode(request["id_token_hint"], options={"verify_signature": False})
        assert hint["sub"] == demo.user.id
        assert request["post_logout_redirect_uri"] == app.base_url + "/"
        assert request["client_id"] == app.client_id
        home = browser.get(app.base_url + "/")
        assert text_of(home.text, "who") is None and 'id="sign-in"' in home.text

        back = browser.get(out.headers["location"])
        assert (back.status_code, back.headers["location"]) == (303, app.base_url + "/")
        again = walk(browser, browser.get(app.base_url + "/login"))
        assert str(again.url).startswith(demo.issuer + "/login?flow=")  # asked to sign in anew


# --- against a scripted provider ---

OP = "https://op.example"
CLIENT_ID = "crm-client"
CLIENT_SECRET = "se cret/+="  # form-encoded inside Basic (RFC 6749 2.3.1)
KID = "k1"
CONTEXT = {
    "provider": "wecom",
    "corpid": "CORP_A",
    "corp_name": "子公司A",
    "userid": "zhangsan_A",
    "department": ["销售部"],
    "position": "销售经理",
}
CRM = DemoAppConfig(
    name="crm",
    title="CRM 客户管理",
    issuer=OP,
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    base_url="http://127.0.0.1:8002",
)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The provider's key, and another one (a forger's)."""
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))


@dataclass
class ScriptedProvider:
    """An identity server behind `httpx.MockTransport`: it checks the token request (Basic
    credentials, PKCE) and signs whatever claims the test sets."""

    key: rsa.RSAPrivateKey
    signing_key: rsa.RSAPrivateKey
    id_claims: dict[str, Any] = field(default_factory=dict)
    access_typ: str = "at+jwt"
    token_error: dict[str, str] | None = None
    challenge: str = ""
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {
            "/.well-known/openid-configuration": self.discovery,
            "/jwks.json": self.jwks,
            "/token": self.token,
            "/userinfo": self.userinfo,
        }
        return routes[request.url.path](request)

    def discovery(self, request: httpx.Request) -> httpx.Response:
        endpoints = ("authorization", "token", "userinfo", "end_session")
        metadata = {f"{name}_endpoint": f"{OP}/{name}" for name in endpoints}
        return httpx.Response(200, json={**metadata, "issuer": OP, "jwks_uri": f"{OP}/jwks.json"})

    def jwks(self, request: httpx.Request) -> httpx.Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return httpx.Response(200, json={"keys": [{**jwk, "kid": KID, "use": "sig"}]})

    def token(self, request: httpx.Request) -> httpx.Response:
        scheme, credentials = request.headers["authorization"].split()
        client_id, secret = base64.b64decode(credentials).decode().split(":")
        assert (scheme, unquote(client_id), unquote(secret)) == ("Basic", CLIENT_ID, CLIENT_SECRET)
        form = dict(parse_qsl(request.content.decode()))
        verifier = form["code_verifier"].encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        assert digest.decode() == self.challenge
        assert (form["code"], form["redirect_uri"]) == ("the-code", CRM.base_url + "/callback")
        if self.token_error is not None:
            return httpx.Response(400, json=self.token_error)
        now = int(time.time())
        common = {"iss": OP, "sub": "u-1", "iat": now, "exp": now + 300, "wecom_context": CONTEXT}
        id_token = jwt.encode(
            {**common, "aud": CLIENT_ID, "name": NAME, **self.id_claims},
            self.signing_key,
            "RS256",
            headers={"kid": KID},
        )
        access_token = jwt.encode(
            {**common, "aud": "crm-api", "client_id": CLIENT_ID, "scope": "openid profile"},
            self.signing_key,
            "RS256",
            headers={"kid": KID, "typ": self.access_typ},
        )
        return httpx.Response(
            200, json={"access_token": access_token, "id_token": id_token, "token_type": "Bearer"}
        )

    def userinfo(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer ")
        return httpx.Response(200, json={"sub": "u-1", "name": NAME, "wecom_context": CONTEXT})


@pytest.fixture
def provider(rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> ScriptedProvider:
    return ScriptedProvider(key=rsa_keys[0], signing_key=rsa_keys[0])


@pytest.fixture
def crm(provider: ScriptedProvider) -> Iterator[TestClient]:
    with (
        httpx.Client(transport=httpx.MockTransport(provider.handle)) as http,
        TestClient(
            create_demo_app(CRM, http), base_url=CRM.base_url, follow_redirects=False
        ) as browser,
    ):
        yield browser


def scripted_sign_in(crm: TestClient, provider: ScriptedProvider) -> str:
    """/login, then come back to /callback as if the provider had issued `the-code`: the page."""
    request = query_of(crm.get("/login").headers["location"])
    provider.challenge = request["code_challenge"]
    provider.id_claims.setdefault("nonce", request["nonce"])
    answer = crm.get("/callback", params={"code": "the-code", "state": request["state"]})
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    return crm.get("/").text


def test_the_crm_shows_the_subsidiary_context_it_receives(
    crm: TestClient, provider: ScriptedProvider
) -> None:
    first = crm.get("/")
    assert 'id="sign-in"' in first.text
    assert "style-src 'self'" in first.headers["content-security-policy"]
    assert crm.get("/app.css").headers["content-type"].startswith("text/css")
    assert '<script src="/app.js" defer></script>' in first.text  # a file: no inline script
    assert "script-src 'self'" in first.headers["content-security-policy"]
    script = crm.get("/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert '"#wechat_redirect"' in script.text and "history.replaceState" in script.text
    assert provider.requests == []  # discovery is read on first use, not before

    page = scripted_sign_in(crm, provider)

    assert text_of(page, "context") == "Acting as: 子公司A · 销售经理 (zhangsan_A)"
    assert (text_of(page, "who"), text_of(page, "sub")) == (NAME, "u-1")
    assert 'class="band band-crm"' in page
    for table_id in ("claims-id-token", "claims-userinfo", "claims-access-token"):
        assert '"corp_name": "子公司A"' in table(page, table_id)["wecom_context"]
    assert table(page, "claims-access-token")["aud"] == "crm-api"
    paths = [request.url.path for request in provider.requests]
    assert paths.count("/.well-known/openid-configuration") == 1


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p, forger: p.id_claims.update(nonce="another"), "nonce is not the one"),
        (lambda p, forger: p.id_claims.update(iss="https://evil.example"), "Invalid issuer"),
        (lambda p, forger: p.id_claims.update(aud="another-app"), "Audience doesn't match"),
        (lambda p, forger: setattr(p, "signing_key", forger), "Signature verification failed"),
        (lambda p, forger: setattr(p, "access_typ", "JWT"), "typ is 'jwt', not at+jwt"),
        (
            lambda p, forger: setattr(p, "token_error", {"error": "invalid_grant"}),
            "The token endpoint refused the code: invalid_grant",
        ),
    ],
    ids=["nonce", "issuer", "audience", "signature", "access-token-typ", "token-refused"],
)
def test_a_sign_in_that_fails_a_check_is_refused_with_the_reason(
    crm: TestClient,
    provider: ScriptedProvider,
    rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    tamper: Callable[[ScriptedProvider, rsa.RSAPrivateKey], None],
    message: str,
) -> None:
    tamper(provider, rsa_keys[1])

    page = scripted_sign_in(crm, provider)

    assert message in text_of(page, "error")
    assert text_of(page, "who") is None and 'id="sign-in"' in page


# --- sign-ins started elsewhere (a WeCom workbench link): the app's initiate_login_uri ---


def test_a_sign_in_started_at_initiate_completes_silently_in_the_sso_session(demo: Demo) -> None:
    """The server's `/launch/...` ends at the app's /initiate with `iss`: the app makes its own
    authorization request, which the SSO session answers without asking anything."""
    app = demo.learning
    with httpx.Client() as browser:
        sign_in(browser, demo, demo.crm)  # the SSO session, made at the other app
        started = browser.get(app.base_url + "/initiate", params={"iss": demo.issuer})
        assert started.status_code == 303
        assert started.headers["location"].startswith(demo.issuer + "/authorize?")
        page = walk(browser, started)

    assert (str(page.url), page.status_code) == (app.base_url + "/", 200)
    assert text_of(page.text, "error") is None
    assert text_of(page.text, "sub") == demo.user.id


def _finish(crm: TestClient, provider: ScriptedProvider, location: str) -> httpx.Response:
    """Answer the authorization request at `location` as the provider would: the callback."""
    request = query_of(location)
    provider.challenge = request["code_challenge"]
    provider.id_claims.setdefault("nonce", request["nonce"])
    return crm.get("/callback", params={"code": "the-code", "state": request["state"]})


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_initiate_starts_the_apps_ordinary_authorization_request(
    crm: TestClient, provider: ScriptedProvider, method: str
) -> None:
    ordinary = query_of(crm.get("/login").headers["location"])
    if method == "GET":
        started = crm.get("/initiate", params={"iss": OP})
    else:
        started = crm.post("/initiate", data={"iss": OP})

    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(f"{OP}/authorization?")  # the scripted discovery's endpoint
    request = query_of(location)
    assert set(request) == set(ordinary)
    for name in ("response_type", "client_id", "redirect_uri", "scope", "code_challenge_method"):
        assert request[name] == ordinary[name], name
    assert (request["client_id"], request["redirect_uri"]) == (
        CLIENT_ID,
        CRM.base_url + "/callback",
    )
    assert request["state"] != ordinary["state"] and request["nonce"] != ordinary["nonce"]
    answer = _finish(crm, provider, location)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    assert text_of(crm.get("/").text, "who") == NAME


@pytest.mark.parametrize(
    "params",
    [{"iss": "https://evil.example"}, {"iss": OP + "/"}, {"iss": ""}, {}],
    ids=["another-issuer", "trailing-slash", "empty", "missing"],
)
def test_initiate_refuses_a_sign_in_started_by_another_issuer(
    crm: TestClient, provider: ScriptedProvider, params: dict[str, str]
) -> None:
    answer = crm.get("/initiate", params={**params, "target_link_uri": CRM.base_url + "/"})

    assert answer.status_code == 400
    assert "location" not in answer.headers and "set-cookie" not in answer.headers
    error = text_of(answer.text, "error")
    assert error is not None and error.startswith("Refused: this sign-in was started by")
    assert f"not by {OP}, the identity server this app trusts" in error
    assert 'id="sign-in"' in answer.text  # the ordinary way in is still offered
    assert provider.requests == []  # nothing was asked of any server


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        (CRM.base_url + "/?tab=deals", CRM.base_url + "/?tab=deals"),
        (CRM.base_url + "/deals#wechat_redirect", CRM.base_url + "/deals"),
        ("HTTP://127.0.0.1:8002/x", "HTTP://127.0.0.1:8002/x"),
        ("https://evil.example/", "/"),
        ("http://127.0.0.1:8003/", "/"),
        ("//evil.example/", "/"),
        ("/deals", "/"),
        ("http://127.0.0.1:8002\\@evil.example/", "/"),
        ("http://[", "/"),
    ],
    ids=[
        "same-origin",
        "wechat-redirect-stripped",
        "case",
        "other-host",
        "other-port",
        "scheme-relative",
        "relative",
        "backslash",
        "unparsable",
    ],
)
def test_a_workbench_target_is_followed_only_on_the_apps_own_origin(
    crm: TestClient, provider: ScriptedProvider, target: str, lands: str
) -> None:
    started = crm.get("/initiate", params={"iss": OP, "target_link_uri": target})
    assert started.status_code == 303
    answer = _finish(crm, provider, started.headers["location"])
    assert (answer.status_code, answer.headers["location"]) == (303, lands)
