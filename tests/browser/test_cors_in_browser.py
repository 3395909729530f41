"""CORS in a real browser (headless Chromium through Playwright): a page served from another
loopback port calls the identity server with `fetch`. From an app's registered origin the
browser sends the preflight, gets through and reads the answers (an OAuth error, userinfo's
`WWW-Authenticate`); from an origin no app registered, the browser blocks the same calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from support.chromium import TIMEOUT_MS, launched, require_chromium
from support.constants import TEST_SECRET
from support.servers import free_ports, serving
from support.units import in_unit

from iam.app import create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.secretbox import SecretBox
from iam.services import clients, signing_keys
from iam.services.sms import ConsoleSms
from iam.settings import Settings

require_chromium()

#: What the page runs: one fetch, and what the page could read of its answer (or that the
#: browser refused to hand it over).
FETCH = """async ([url, init]) => {
    try {
        const answer = await fetch(url, init);
        return {
            status: answer.status,
            body: await answer.text(),
            challenge: answer.headers.get("www-authenticate"),
        };
    } catch (error) {
        return {blocked: String(error)};
    }
}"""


async def blank_page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>SPA</title><p>a single-page app</p>")


def page_app() -> Starlette:
    """A site that serves an empty page: its origin is where the page's fetches come from."""
    return Starlette(routes=[Route("/", blank_page)])


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The identity server, a registered app's site and a stranger's site, each on its port."""
    path = tmp_path / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    store = Store(engine)
    in_unit(store, signing_keys.ensure_key, SecretBox(TEST_SECRET))
    port, spa_port, stranger_port = free_ports(3)
    spa, stranger = f"http://127.0.0.1:{spa_port}", f"http://127.0.0.1:{stranger_port}"
    in_unit(store, clients.create_client, "SPA", [f"{spa}/callback"], public=True)
    settings = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{path}",
        dev_mode=True,
    )
    app = create_app(settings, store=store, sms=ConsoleSms())
    try:
        with serving({port: app, spa_port: page_app(), stranger_port: page_app()}):
            yield {"issuer": settings.issuer, "spa": spa, "stranger": stranger}
    finally:
        engine.dispose()


def page_on(browser: Browser, origin: str) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(origin + "/")
    return page


def fetched(page: Page, url: str, **init: Any) -> dict[str, Any]:
    result = page.evaluate(FETCH, [url, init])
    assert isinstance(result, dict)
    return result


def calls(issuer: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """A token request (a form: no preflight) and a userinfo request with a bearer token (a
    header that makes the browser ask first), and discovery."""
    return {
        "token": (
            f"{issuer}/token",
            {
                "method": "POST",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
                "body": "grant_type=authorization_code&code=nope&client_id=x",
            },
        ),
        "userinfo": (f"{issuer}/userinfo", {"headers": {"authorization": "Bearer not-a-token"}}),
        "discovery": (f"{issuer}/.well-known/openid-configuration", {}),
    }


def test_a_registered_origin_reads_the_answers(browser: Browser, servers: dict[str, str]) -> None:
    page = page_on(browser, servers["spa"])
    token_url, token_init = calls(servers["issuer"])["token"]
    token = fetched(page, token_url, **token_init)
    assert token.get("status") == 401 or token.get("status") == 400, token
    assert '"error"' in token["body"]

    userinfo_url, userinfo_init = calls(servers["issuer"])["userinfo"]
    userinfo = fetched(page, userinfo_url, **userinfo_init)  # after a preflight
    assert userinfo.get("status") == 401, userinfo
    assert userinfo["challenge"] and userinfo["challenge"].startswith("Bearer"), userinfo

    discovery_url, _ = calls(servers["issuer"])["discovery"]
    discovery = fetched(page, discovery_url)
    assert discovery.get("status") == 200 and servers["issuer"] in discovery["body"]


def test_another_origin_is_blocked_by_the_browser(
    browser: Browser, servers: dict[str, str]
) -> None:
    page = page_on(browser, servers["stranger"])
    for name, (url, init) in calls(servers["issuer"]).items():
        result = fetched(page, url, **init)
        assert "blocked" in result, (name, result)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
