"""Scripted browsers over a TestClient: `Front` goes through the pages, forms and CSRF of the
flows; `WeComFront` also visits the WeCom simulator's pages."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from iam.devtools.wecom_simulator import WeComSimulator
from iam.services.clients import RegisteredClient
from iam.services.sms import ConsoleSms
from support.constants import CORP_A, ISSUER, PHONE, PUBLIC_REDIRECT, RP_REDIRECT, WECOM_BASE
from support.protocol import pkce_pair, query_of
from support.world import World


class Front:
    """The browser side of the flows, scripted over a TestClient: pages, forms, CSRF."""

    def __init__(self, client: TestClient, sms: ConsoleSms) -> None:
        self.client = client
        self.sms = sms

    def csrf(self, path: str = "/login") -> str:
        """This browser's CSRF token, from the form at `path` (the sign-out form when `path`
        sends a signed-in browser on)."""
        page = self.client.get(path)
        if page.is_redirect and path == "/login":
            page = self.client.get("/logout")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1)

    def send_code(self, phone: str = PHONE, flow: str = "") -> Response:
        return self.client.post(
            "/login/otp", data={"csrf_token": self.csrf(), "phone": phone, "flow": flow}
        )

    def last_code(self) -> str:
        return self.sms.messages()[0].code

    def login(self, phone: str = PHONE, flow: str = "") -> Response:
        """Ask for a code, read it from the outbox, submit it: the 303 after login."""
        sent = self.send_code(phone, flow)
        assert sent.status_code == 303, sent.text
        assert "step=code" in sent.headers["location"], sent.headers["location"]
        return self.client.post(
            "/login",
            data={
                "csrf_token": self.csrf(),
                "phone": phone,
                "code": self.last_code(),
                "flow": flow,
            },
        )

    def authorize(self, **params: str) -> Response:
        return self.client.get("/authorize", params=params)

    def code_params(self, client_id: str, redirect_uri: str, **extra: str) -> tuple[dict, str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email phone",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return params, verifier

    def follow_to_client(self, response: Response, phone: str = PHONE) -> Response:
        """Follow a /authorize answer through login (if asked) to the client's redirect."""
        if response.status_code == 303 and response.headers["location"].startswith("/login"):
            flow = query_of(response.headers["location"])["flow"]
            response = self.login(phone, flow)
            assert response.status_code == 303, response.text
            response = self.client.get(response.headers["location"])
        assert response.status_code == 302, response.text
        return response

    def get_code(self, client_id: str, redirect_uri: str, **extra: str) -> tuple[str, str, dict]:
        """(code, code_verifier, authorization params) for a full front-channel flow."""
        params, verifier = self.code_params(client_id, redirect_uri, **extra)
        answer = self.follow_to_client(self.authorize(**params))
        query = query_of(answer.headers["location"])
        assert query.get("state") == params["state"], query
        return query["code"], verifier, params

    def exchange(
        self, code: str, verifier: str, redirect_uri: str, client: RegisteredClient
    ) -> Response:
        """The token request for a code: Basic auth for a confidential client, `client_id` in
        the form for a public one."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if client.client_secret is None:
            data["client_id"] = client.client.client_id
            return self.client.post("/token", data=data)
        auth = (client.client.client_id, client.client_secret)
        return self.client.post("/token", data=data, auth=auth)

    def tokens(self, world: World, *, public: bool = False, **extra: str) -> dict:
        """A full code flow for the confidential RP (or the public one), exchanged for tokens."""
        rp, redirect_uri = (world.public_rp, PUBLIC_REDIRECT) if public else (world.rp, RP_REDIRECT)
        code, verifier, _ = self.get_code(rp.client.client_id, redirect_uri, **extra)
        answer = self.exchange(code, verifier, redirect_uri, rp)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def front(client: TestClient, sms: ConsoleSms) -> Front:
    return Front(client, sms)


class WeComFront(Front):
    """A browser that also visits the simulator's WeCom pages."""

    def __init__(self, client: TestClient, sms: ConsoleSms, simulator: WeComSimulator) -> None:
        super().__init__(client, sms)
        self.simulator = simulator
        self.wecom = TestClient(simulator.app, base_url=WECOM_BASE, follow_redirects=False)

    def start(self, corp_id: str = CORP_A, flow: str = "", **headers: str) -> Response:
        """Start a WeCom login; a `user-agent` given stays the browser's for the whole trip
        (the callback too, as in a real browser); without one, the test client's own."""
        self.client.headers["user-agent"] = headers.pop("user-agent", "testclient")
        params = {"flow": flow} if flow else {}
        return self.client.get(f"/login/wecom/{corp_id}", params=params, headers=headers)

    def pick(self, started: Response, pick: str) -> str:
        """At WeCom's page, be `pick` (a userid, `__outsider__`, `__decline__`): the callback."""
        assert started.status_code == 303, started.text
        location = started.headers["location"]
        assert location.startswith(WECOM_BASE), location
        page = self.wecom.get(location)
        assert page.status_code == 200, page.text
        answer = self.wecom.post(location, data={"pick": pick})
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    def consent(self, answer: Response, pick: str) -> Response:
        """The second, consented round (a new member of a corporation trusted for mobiles, in
        the WeCom client): `answer` sends the browser back to WeCom asking for
        `snsapi_privateinfo`; be `pick` there again. The callback's answer."""
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        assert location.startswith(WECOM_BASE), location
        assert query_of(location.split("#")[0])["scope"] == "snsapi_privateinfo", location
        return self.client.get(self.pick(answer, pick))

    def login_as(self, userid: str, corp_id: str = CORP_A, flow: str = "") -> Response:
        """The whole trip: start, pick at WeCom, come back; the callback's answer."""
        return self.client.get(self.pick(self.start(corp_id, flow), userid))

    def bind(self, answer: Response, phone: str = PHONE) -> Response:
        """At /bind (where `answer` redirects): prove `phone` by SMS code; the 303 onward after
        binding. A binding that made a new account shows its notice first: it is read, and the
        answer is its continue link (as a 303 with the session cookie)."""
        assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
        page = answer.headers["location"]
        token = query_of(page)["binding"]
        csrf = self.csrf(page)
        sent = self.client.post(
            "/bind", data={"csrf_token": csrf, "binding": token, "phone": phone}
        )
        assert sent.status_code == 303 and "step=code" in sent.headers["location"], sent.text
        bound = self.client.post(
            "/bind",
            data={"csrf_token": csrf, "binding": token, "phone": phone, "code": self.last_code()},
        )
        if bound.status_code != 303 or bound.headers["location"] != page:
            return bound
        notice = self.client.get(page)
        onward = re.search(
            r'id="account-created".*?<a class="button primary" href="([^"]+)"', notice.text, re.S
        )
        assert onward, notice.text
        headers = {"location": html.unescape(onward.group(1))}
        return Response(303, headers={**headers, "set-cookie": bound.headers["set-cookie"]})


@pytest.fixture
def wecom_front(wecom_app, sms: ConsoleSms, simulator: WeComSimulator) -> Iterator[WeComFront]:
    with TestClient(wecom_app, base_url=ISSUER, follow_redirects=False) as browser:
        yield WeComFront(browser, sms, simulator)


def tokens_of(front: Front, rp: RegisteredClient) -> dict[str, str]:
    """Authorize in the signed-in browser with no page on the way, and exchange the code."""
    params, verifier = front.code_params(rp.client.client_id, RP_REDIRECT)
    answer = front.authorize(**params)
    assert answer.status_code == 302, answer.headers.get("location")
    code = query_of(answer.headers["location"])["code"]
    exchanged = front.exchange(code, verifier, RP_REDIRECT, rp)
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, str] = exchanged.json()
    return tokens


def refresh(front: Front, rp: RegisteredClient, refresh_token: str) -> Response:
    """The refresh grant, as the app sends it."""
    return front.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(rp.client.client_id, rp.client_secret or ""),
    )
