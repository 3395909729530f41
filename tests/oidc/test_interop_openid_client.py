"""Interoperability with an independent, OpenID Certified relying party library: `openid-client`
(Node, tests/interop/rp.mjs) drives the live server as an RP would. Discovery, the code flow with
PKCE S256, state and nonce, the token exchange (the ID token's signature checked against
jwks_uri, its iss, aud and nonce, and RFC 9207's `iss` authorization response parameter),
userinfo, refresh and revocation; with `client_secret_basic`, `client_secret_post`,
`client_secret_jwt` (the library's own HS256 assertion) and a public client (`none`).

The server runs under uvicorn on loopback over a fresh SQLite database; a person signs in by SMS
through httpx, and the script gets the browser's cookies to perform GET /authorize itself.
Needs `node` and `npm ci --prefix tests/interop` (`make test` and .ci/run do it): skipped with
the reason without them, failed when CI is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.datastructures import Secret
from support.constants import PHONE, PUBLIC_REDIRECT, RP_REDIRECT, TEST_SECRET
from support.units import in_unit

from iam.app import create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.secretbox import SecretBox
from iam.services import clients, users
from iam.services.clients import RegisteredClient
from iam.services.sms import ConsoleSms
from iam.settings import Settings

INTEROP = Path(__file__).resolve().parents[1] / "interop"
RP_SCRIPT = INTEROP / "rp.mjs"
NODE = shutil.which("node")
EMAIL = "zhangsan@example.com"

if NODE is None or not (INTEROP / "node_modules" / "openid-client").is_dir():
    _MISSING = (
        "node is missing"
        if NODE is None
        else f"{INTEROP / 'node_modules'} is missing: run `npm ci --prefix tests/interop`"
    )
    if os.environ.get("CI"):
        pytest.fail(_MISSING + "; CI must run the openid-client interop test", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)


@dataclass(frozen=True)
class Live:
    issuer: str
    user_id: str
    cookie: str  # the signed-in browser's Cookie header
    basic: RegisteredClient  # confidential, client_secret_basic
    post: RegisteredClient  # confidential, client_secret_post
    public: RegisteredClient  # public: none + PKCE
    hmac: RegisteredClient  # confidential, client_secret_jwt


def _sign_in(issuer: str, sms: ConsoleSms) -> str:
    """A person signs in by SMS in a browser (httpx): the browser's cookies, as a header."""
    with httpx.Client(base_url=issuer, follow_redirects=False) as browser:

        def csrf() -> str:
            page = browser.get("/login")
            assert page.status_code == 200, page.text
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert match, page.text
            return match.group(1)

        sent = browser.post("/login/otp", data={"csrf_token": csrf(), "phone": PHONE, "flow": ""})
        assert sent.status_code == 303, sent.text
        code = sms.messages()[0].code
        answer = browser.post(
            "/login",
            data={"csrf_token": csrf(), "phone": PHONE, "code": code, "flow": ""},
        )
        assert answer.status_code == 303, answer.text
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in browser.cookies.jar)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The server under uvicorn on a loopback port, a fresh SQLite database, three clients and a
    person signed in."""
    path = tmp_path_factory.mktemp("interop") / "iam.db"
    database_url = f"sqlite:///{path}"
    engine = create_db_engine(database_url)
    migrate.upgrade(engine)
    store = Store(engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # held by uvicorn from here: no other process can take it
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE, EMAIL)
    basic = in_unit(store, clients.create_client, "Certified RP (basic)", [RP_REDIRECT])
    post = in_unit(
        store,
        clients.create_client,
        "Certified RP (post)",
        [RP_REDIRECT],
        token_endpoint_auth_method="client_secret_post",
    )
    public = in_unit(
        store, clients.create_client, "Certified RP (public)", [PUBLIC_REDIRECT], public=True
    )
    hmac = in_unit(
        store,
        clients.create_client,
        "Certified RP (client_secret_jwt)",
        [RP_REDIRECT],
        token_endpoint_auth_method="client_secret_jwt",
        box=SecretBox(TEST_SECRET),
    )
    sms = ConsoleSms()
    settings = Settings(secret_key=Secret(TEST_SECRET), issuer=issuer, database_url=database_url)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, store=store, sms=sms), log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            assert thread.is_alive(), "the server stopped at start"
            time.sleep(0.02)
        yield Live(issuer, user.id, _sign_in(issuer, sms), basic, post, public, hmac)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


def run_rp(
    live: Live, registered: RegisteredClient, auth: str, redirect_uri: str, **more: str
) -> tuple[int, dict[str, Any]]:
    """Run tests/interop/rp.mjs: (exit code, its JSON summary)."""
    assert NODE is not None
    args = {
        "issuer": live.issuer,
        "client-id": registered.client.client_id,
        "auth": auth,
        "redirect-uri": redirect_uri,
        **({"client-secret": registered.client_secret} if registered.client_secret else {}),
        **more,
    }
    command = [NODE, str(RP_SCRIPT)]
    for name, value in args.items():
        command += [f"--{name}", value]
    done = subprocess.run(
        command,
        env={**os.environ, "RP_COOKIE": live.cookie},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        pytest.fail(
            f"rp.mjs printed no JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.returncode, summary


STEPS = [
    "discovery",
    "authorize",
    "authorization_code",
    "userinfo",
    "refresh_token",
    "userinfo_after_refresh",
    "revocation",
    "refresh_after_revocation",
]


@pytest.mark.parametrize("auth", ["basic", "post", "none", "jwt"])
def test_openid_client_completes_the_flow(live: Live, auth: str) -> None:
    registered, redirect_uri = {
        "basic": (live.basic, RP_REDIRECT),
        "post": (live.post, RP_REDIRECT),
        "none": (live.public, PUBLIC_REDIRECT),
        "jwt": (live.hmac, RP_REDIRECT),
    }[auth]
    code, summary = run_rp(live, registered, auth, redirect_uri)
    shown = json.dumps(summary, indent=2, ensure_ascii=False)
    assert code == 0 and summary["ok"], shown
    assert summary["steps"] == STEPS, shown
    assert summary["discovery"] == {
        "issuer": live.issuer,
        "authorization_response_iss_parameter_supported": True,
    }
    assert summary["callback"]["iss"] == live.issuer, shown  # RFC 9207, checked by the library
    claims = summary["claims"]
    client_id = registered.client.client_id
    assert claims["iss"] == live.issuer
    assert claims["aud"] in (client_id, [client_id])
    assert claims["sub"] == live.user_id
    assert claims["amr"] == ["sms"]
    userinfo = summary["userinfo"]
    assert userinfo["sub"] == live.user_id
    assert userinfo["email"] == EMAIL
    assert userinfo["phone_number"] == PHONE
    assert summary["refresh_token_issued"]
    assert summary["refreshed"]["access_token_changed"], shown
    assert summary["refreshed"]["refresh_token_rotated"], shown
    assert summary["refreshed"]["userinfo_sub"] == live.user_id
    assert summary["revoked_refresh_token_refused"], shown
    assert summary["revoked_refresh_token_error"] == "invalid_grant", shown


def test_openid_client_reports_a_wrong_secret(live: Live) -> None:
    """The harness fails when the library fails: a wrong secret stops it at the token request."""
    code, summary = run_rp(
        live, live.basic, "basic", RP_REDIRECT, **{"client-secret": "not-the-secret"}
    )
    shown = json.dumps(summary, indent=2, ensure_ascii=False)
    assert code == 1 and not summary["ok"], shown
    assert summary["steps"] == ["discovery", "authorize"], shown
    assert summary["error"]["error"] == "invalid_client", shown
