"""iam/web.py over HTTP: the language link stays on this site, and the browser cookie is made
only by the server and never set on an answer a cache may keep."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from starlette.datastructures import Secret
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, RP_REDIRECT, TEST_SECRET
from support.world import World

from iam.app import create_app
from iam.db.store import Store
from iam.services.sms import ConsoleSms
from iam.settings import Settings
from iam.web import BROWSER_COOKIE, SECURE_BROWSER_COOKIE, BrowserIds, Web

pytestmark = pytest.mark.usefixtures("reused_signing_key")


def lang_link(page_html: str) -> str:
    match = re.search(r'<a href="([^"]*)" hreflang=', page_html)
    assert match, page_html
    return html.unescape(match.group(1))


def browser_cookies(response) -> list[str]:
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith((BROWSER_COOKIE + "=", SECURE_BROWSER_COOKIE + "="))
    ]


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


# --- the language link ---


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example.com/login",
        "///evil.example.com/login",
        "/\\evil.example.com",
        "/\\/evil.example.com",
        "/%09/evil.example.com",
        "/%0A/evil.example.com",
    ],
)
def test_the_language_link_of_a_404_page_stays_on_this_site(client: TestClient, path: str) -> None:
    """Browsers read `//host` (and `/\\host`, and `/<tab>/host`) as another site."""
    page = client.get(ISSUER + path)
    assert page.status_code in (400, 404)  # 400: a control character (`iam.edge`)
    link = lang_link(page.text)
    assert link.startswith("/") and not link.startswith("//"), link
    assert "\\" not in link and not re.search(r"[\x00-\x20\x7f]", link), link
    resolved = urlsplit(link)
    assert (resolved.scheme, resolved.netloc) == ("", "")
    assert "lang=" in resolved.query


def test_the_language_link_keeps_an_ordinary_path_and_query(client: TestClient) -> None:
    page = client.get("/login", params={"flow": "abc"})
    link = lang_link(page.text)
    assert urlsplit(link).path == "/login"
    assert "flow=abc" in link and "lang=" in link


# --- the browser cookie ---


def test_the_browser_cookie_is_signed_by_the_server(client: TestClient) -> None:
    (made,) = browser_cookies(client.get("/login"))
    value = cookie_value(made)
    assert BrowserIds(TEST_SECRET).verify(value) is not None
    assert BrowserIds("another-secret-key-0123456789abcdef0123").verify(value) is None


@pytest.mark.parametrize(
    "forged",
    [
        "A" * 43,  # the old format: any 43 characters were taken
        "A" * 43 + ".AAAAAAAAAAAAAAAAAAAAAA",
        "",
        "x.y",
    ],
)
def test_a_forged_browser_cookie_is_replaced(client: TestClient, forged: str) -> None:
    client.cookies.set(SECURE_BROWSER_COOKIE, forged)
    (made,) = browser_cookies(client.get("/login"))
    assert cookie_value(made) != forged
    assert BrowserIds(TEST_SECRET).verify(cookie_value(made)) is not None


def test_a_forged_cookie_does_not_make_a_csrf_token_an_attacker_knows(
    app, client: TestClient
) -> None:
    """Two browsers handed the same planted value get different CSRF tokens."""
    planted = "A" * 43
    tokens = []
    for _ in range(2):
        with TestClient(app, base_url=ISSUER) as browser:
            browser.cookies.set(SECURE_BROWSER_COOKIE, planted)
            page = browser.get("/login")
            tokens.append(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    assert tokens[0] != tokens[1]


def test_a_valid_browser_cookie_is_kept(front: Front) -> None:
    (made,) = browser_cookies(front.client.get("/login"))
    csrf = front.csrf()
    again = front.client.get("/login")
    assert browser_cookies(again) == []
    assert front.csrf() == csrf
    assert cookie_value(made)


def test_under_https_the_cookie_is_host_prefixed(client: TestClient) -> None:
    (made,) = browser_cookies(client.get("/login"))
    name, _, flags = made.partition(";")
    assert name.startswith(SECURE_BROWSER_COOKIE + "=")
    lowered = flags.lower()
    assert "secure" in lowered and "path=/" in lowered and "domain" not in lowered
    assert "httponly" in lowered and "samesite=lax" in lowered


def test_under_http_the_cookie_has_the_plain_name(
    database_url: str, store: Store, sms: ConsoleSms
) -> None:
    settings = Settings(
        secret_key=Secret(TEST_SECRET), issuer="http://127.0.0.1:8000", database_url=database_url
    )
    with TestClient(create_app(settings, store=store, sms=sms)) as browser:
        (made,) = browser_cookies(browser.get("/login"))
    assert made.startswith(BROWSER_COOKIE + "=") and "secure" not in made.lower()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/static/iam.css"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/jwks.json"),
        ("GET", "/healthz"),
        ("POST", "/token"),
        ("GET", "/userinfo"),
        ("POST", "/revoke"),
        ("POST", "/introspect"),
    ],
)
def test_no_browser_cookie_on_cacheable_or_api_answers(
    client: TestClient, method: str, path: str
) -> None:
    answer = client.request(method, path)
    assert answer.status_code < 500
    assert browser_cookies(answer) == [], (path, answer.headers.get("cache-control"))


def test_pages_that_set_the_cookie_are_not_cacheable(client: TestClient) -> None:
    for path in ("/login", "/no/such/page"):
        client.cookies.clear()
        answer = client.get(path)
        assert browser_cookies(answer), path
        assert "no-store" in answer.headers["cache-control"], path


def test_a_redirect_that_binds_a_sign_in_to_a_new_browser_sets_the_cookie_uncached(
    front: Front, world: World
) -> None:
    """/authorize binds its pending request to the browser before any page: its redirect must
    carry the new cookie, and so must not be kept by a cache."""
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.authorize(**params)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?flow=")
    assert browser_cookies(answer)
    assert answer.headers["cache-control"] == "no-store"
    assert front.client.get(answer.headers["location"]).status_code == 200


def test_a_csrf_token_with_non_ascii_characters_is_refused_not_an_error(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login/otp", data={"csrf_token": "é" * 64, "phone": "13800138000"})
    assert answer.status_code == 403


def test_local_time_shows_a_stored_utc_time_in_the_configured_zone() -> None:
    shanghai = Web(TEST_SECRET, secure_cookies=False)  # the default zone
    stored = datetime(2026, 12, 6, 16, 30)  # naive: UTC, as the database keeps it
    assert shanghai.local_time(stored) == "2026-12-07 00:30"
    assert shanghai.local_time(stored.replace(tzinfo=UTC), "%H:%M") == "00:30"
    assert shanghai.local_time(None) == ""
    assert Web(TEST_SECRET, secure_cookies=False, timezone="UTC").local_time(stored) == (
        "2026-12-06 16:30"
    )
    template = shanghai.templates.env.from_string("{{ when | local_time }} {{ timezone_name }}")
    assert template.render(when=stored) == "2026-12-07 00:30 Asia/Shanghai"
    assert shanghai.timezone_offset() == "UTC+8"
    assert Web(TEST_SECRET, secure_cookies=False, timezone="Asia/Kolkata").timezone_offset() == (
        "UTC+5:30"
    )
    assert Web(TEST_SECRET, secure_cookies=False, timezone="UTC").timezone_offset() == "UTC"
