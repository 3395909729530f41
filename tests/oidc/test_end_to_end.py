"""A complete code + PKCE flow over real HTTP against a live server, driven by independent code:
Authlib's OAuth2 *client* as the relying party, httpx as the browser, PyJWT checking the tokens
against the published JWKS."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
import uvicorn
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from starlette.datastructures import Secret
from support.constants import PHONE, TEST_SECRET
from support.protocol import query_of
from support.units import in_unit

from iam.app import create_app
from iam.services import clients, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    issuer: str
    sms: ConsoleSms


@pytest.fixture
def live_server(database_url: str, store) -> Iterator[LiveServer]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    sms = ConsoleSms()
    settings = Settings(secret_key=Secret(TEST_SECRET), issuer=issuer, database_url=database_url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store, sms=sms),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield LiveServer(issuer, sms)
    server.should_exit = True
    thread.join(timeout=10)


def browser_sign_in(browser: httpx.Client, sms: ConsoleSms, authorize_url: str) -> str:
    """What a person does in the browser: open the URL, type the phone, type the SMS code.
    Returns where the server finally sends the browser (the client's redirect URI)."""
    answer = browser.get(authorize_url)
    assert answer.status_code == 303 and "/login?flow=" in answer.headers["location"]
    page = browser.get(answer.headers["location"])
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    flow = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    sent = browser.post(
        "/login/otp", data={"csrf_token": csrf, "phone": "13800138000", "flow": flow}
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/login?flow={flow}&step=code"
    code = sms.messages()[0].code
    answer = browser.post(
        "/login", data={"csrf_token": csrf, "phone": PHONE, "code": code, "flow": flow}
    )
    assert answer.status_code == 303
    answer = browser.get(answer.headers["location"])
    assert answer.status_code == 302
    return answer.headers["location"]


def verify(token: str, issuer: str, audience: str, **options: object) -> dict:
    """PyJWT, with the key picked by kid from our published JWKS."""
    signing_key = jwt.PyJWKClient(f"{issuer}/jwks.json").get_signing_key_from_jwt(token)
    return jwt.decode(
        token, signing_key.key, algorithms=["RS256"], audience=audience, issuer=issuer, **options
    )


def test_code_flow_with_pkce_by_an_independent_client(live_server: LiveServer, store) -> None:
    issuer = live_server.issuer
    user = in_unit(store, users.create_user, "Zhang San", PHONE, "zs@example.com")
    redirect_uri = "http://127.0.0.1:9/cb"
    registered = in_unit(store, clients.create_client, "Bench RP", [redirect_uri])
    metadata = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == issuer

    rp = OAuth2Client(
        client_id=registered.client.client_id,
        client_secret=registered.client_secret,
        scope="openid profile email phone",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    nonce = generate_token(16)
    url, state = rp.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    with httpx.Client(base_url=issuer) as browser:
        landing = browser_sign_in(browser, live_server.sms, url)
    assert landing.startswith(redirect_uri)
    assert query_of(landing)["state"] == state

    token = rp.fetch_token(
        metadata["token_endpoint"], authorization_response=landing, code_verifier=verifier
    )
    client_id = registered.client.client_id
    id_claims = verify(token["id_token"], issuer, client_id)
    assert id_claims["sub"] == user.id
    assert id_claims["nonce"] == nonce
    assert id_claims["amr"] == ["sms"]
    assert id_claims["name"] == "Zhang San"
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
    access_claims = verify(token["access_token"], issuer, client_id)
    assert access_claims["sub"] == user.id
    assert access_claims["client_id"] == client_id

    userinfo = rp.get(metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == user.id
    assert userinfo.json()["phone_number"] == PHONE

    refreshed = rp.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert verify(refreshed["id_token"], issuer, client_id)["sub"] == user.id
    rp.close()
