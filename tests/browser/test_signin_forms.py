"""The phone and code steps in a real browser (headless Chromium through Playwright): every POST
answers 303, so a reload or Back never posts again nor sends a second SMS; the code step keeps
the number in sight, counts down to the next code, and says what a refusal means; a number is
taken as people in China type it; Back after signing in goes home.

The live server and browser helpers are those of `test_story.py` (copied: each browser module
stands alone). Screenshots at 1280 and 390 px, English and Chinese, go to `test-artifacts/`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from starlette.datastructures import Secret
from starlette.types import ASGIApp
from support.chromium import launched, new_context, no_sideways_scroll, require_chromium, screenshot
from support.clocks import RateClock
from support.constants import TEST_SECRET
from support.servers import free_base_port, serving

from iam.app import create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.devtools.demo import seed_demo, seed_relying_parties
from iam.devtools.demo_apps import DemoAppConfig, create_demo_app
from iam.secretbox import SecretBox
from iam.services.sms import ConsoleSms
from iam.settings import Settings

require_chromium()

PHONE_TYPED = "0086 138-0013-8000"  # as people in China type it
PHONE = "+8613800138000"  # the demo person's, as stored
SHOWN = "+86 138****8000"  # as the code step shows it
STRANGER = "139 0013 9000"
#: Small limits, so that a test reaches them in a few steps: 3 code checks per number and
#: browser, 1 code sent per address (each test has a server of its own).
LIMITS = "otp_verify.key=3/600,otp_send.ip=1/600"

TEXT = {
    "en-US": {
        "send": "Send code",
        "sign_in": "Sign in",
        "other_phone": "Use another number",
        "sent": f"If {SHOWN} belongs to an account",
        "wrong": "The code is wrong. 4 tries left.",
        "countdown": re.compile(r"^Send a new code in (\d+) s$"),
        "too_many": re.compile(r"^Too many tries\. Try again in ([1-9]|10) min\.$"),
        "not_sent": "No code was sent",
    },
    "zh-CN": {
        "send": "获取验证码",
        "sign_in": "登录",
        "other_phone": "换一个号码",
        "sent": f"如果 {SHOWN} 已注册",
        "wrong": "验证码错误，还可以尝试 4 次。",
        "countdown": re.compile(r"^(\d+) 秒后可重新获取$"),
        "too_many": re.compile(r"^尝试次数过多，请 ([1-9]|10) 分钟后再试。$"),
        "not_sent": "未发送验证码",
    },
}


@dataclass(frozen=True)
class World:
    issuer: str
    sms: ConsoleSms
    crm: DemoAppConfig  # context policy required: the selector asks (two identities)


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signin-template") / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    seed_demo(Store(engine), SecretBox(TEST_SECRET), "http://127.0.0.1:1")
    engine.dispose()
    return path


@pytest.fixture
def world(migrated_database: Path, tmp_path: Path, rate_clock: RateClock) -> Iterator[World]:
    """The identity server (dev mode) and the demo CRM on a fresh copy of the database. Its
    rate limits count on `rate_clock`: their windows follow the wall clock, and one that ended
    between two steps (at a multiple of 600 s) let a send through that the test expects
    refused (seen once in `make test`)."""
    path = tmp_path / "iam.db"
    shutil.copy(migrated_database, path)
    database_url = f"sqlite:///{path}"
    engine = create_db_engine(database_url)
    store = Store(engine)
    port = free_base_port()
    issuer = f"http://127.0.0.1:{port}"
    seed_demo(store, SecretBox(TEST_SECRET), issuer)
    parties = {party.config.name: party for party in seed_relying_parties(store, issuer, port)}
    simulator = f"{issuer}/_sim/wecom"
    settings = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=issuer,
        database_url=database_url,
        dev_mode=True,
        wecom_api_base=simulator,
        wecom_oauth_url=f"{simulator}/connect/oauth2/authorize",
        wecom_qr_url=f"{simulator}/wwlogin/sso/login",
        rate_limits=LIMITS,
    )
    sms = ConsoleSms()
    crm = parties["crm"]
    apps: dict[int, ASGIApp] = {
        port: create_app(settings, store=store, sms=sms),
        crm.port: create_demo_app(crm.config),
    }
    try:
        with serving(apps):
            yield World(issuer, sms, crm.config)
    finally:
        engine.dispose()


@pytest.fixture
def context(world: World, browser: Browser) -> Iterator[BrowserContext]:
    fresh = new_context(browser)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- steps ---


def start_sign_in(page: Page, world: World) -> None:
    """At the CRM's home page, click "Sign in": the server's phone step."""
    page.goto(world.crm.base_url + "/")
    page.click("#sign-in")
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/login?flow=")))
    expect(page.locator("#phone")).to_be_visible()


def ask_for_code(page: Page, text: dict, phone: str = PHONE_TYPED) -> None:
    page.fill("#phone", phone)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name=text["send"]).click()
    assert posted.value.status == 303


def submit_code(page: Page, code: str) -> None:
    page.fill("#code", code)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.locator("form[action='/login'] button[type=submit]").click()
    assert posted.value.status == 303


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def countdown(page: Page, text: dict) -> int:
    """The seconds the disabled resend button shows."""
    resend = page.locator("#resend")
    expect(resend).to_be_disabled()
    match = text["countdown"].match(resend.inner_text().strip())
    assert match, resend.inner_text()
    return int(match.group(1))


# --- the tests ---


def test_sign_in_by_sms_with_a_wrong_code_a_reload_and_back(world: World, page: Page) -> None:
    text = TEXT["en-US"]
    start_sign_in(page, world)
    ask_for_code(page, text)  # typed as 0086 138-0013-8000
    expect(page).to_have_url(re.compile(r"/login\?flow=[^&]+&step=code$"))
    assert PHONE not in page.url and "138" not in page.url
    expect(page.locator("#code-sent")).to_contain_text(text["sent"])
    assert [message.phone for message in world.sms.messages()] == [PHONE]

    # The countdown: shown by the server, counted down in the page.
    first = countdown(page, text)
    assert 55 <= first <= 61, first
    page.wait_for_timeout(2200)
    assert countdown(page, text) < first

    # A wrong code: the same step, saying so, the number still in sight.
    code = world.sms.messages()[0].code
    submit_code(page, wrong(code))
    expect(page).to_have_url(re.compile(r"&step=code&problem=wrong_code$"))
    expect(page.get_by_role("alert")).to_have_text(text["wrong"])
    expect(page.locator("#code-sent")).to_contain_text(SHOWN)

    # A reload is a GET of the same page: no resubmission, no second SMS.
    reloaded = page.reload()
    assert reloaded is not None and reloaded.request.method == "GET"
    assert reloaded.status == 200
    expect(page.get_by_role("alert")).to_have_text(text["wrong"])
    assert len(world.sms.messages()) == 1

    # The right code: on to the CRM (its selector first).
    submit_code(page, code)
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/select-identity?flow=")))
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.locator("button[name=link_id]").filter(has_text="子公司A").click()
    assert posted.value.status == 303
    expect(page).to_have_url(world.crm.base_url + "/")
    expect(page.locator("#sub")).not_to_be_empty()

    # Back, again and again: the finished request's pages go home, never "expired".
    for _ in range(3):
        page.go_back()
        expect(page).to_have_url(world.issuer + "/")
        assert "expired" not in page.locator("body").inner_text()
        expect(page.locator("#phone")).to_have_count(0)
    assert len(world.sms.messages()) == 1


def test_a_second_tab_on_the_login_page_goes_on_once_signed_in(
    world: World, context: BrowserContext, page: Page
) -> None:
    text = TEXT["en-US"]
    start_sign_in(page, world)
    waiting = context.new_page()  # the second tab, left on its own login page
    start_sign_in(waiting, world)
    ask_for_code(page, text)
    submit_code(page, world.sms.messages()[0].code)
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/select-identity?flow=")))
    waiting.reload()  # goes on to its own request: the selector, not a login form
    expect(waiting).to_have_url(re.compile(re.escape(world.issuer + "/select-identity?flow=")))
    assert len(world.sms.messages()) == 1


@pytest.mark.parametrize(
    ("locale", "width"),
    [("en-US", 1280), ("en-US", 390), ("zh-CN", 1280), ("zh-CN", 390)],
    ids=["en-1280", "en-390", "zh-1280", "zh-390"],
)
def test_the_steps_say_what_happened(
    world: World, browser: Browser, locale: str, width: int
) -> None:
    """The phone step, a wrong code, too many tries, a refused send: each page says what
    happened, in minutes, with the number and the WeCom buttons in sight."""
    text = TEXT[locale]
    tag = f"{locale[:2]}-{width}"
    context = new_context(browser, locale, width)
    try:
        page = context.new_page()
        start_sign_in(page, world)
        expect(page.locator("section.upstream a.button")).to_have_count(2)  # WeCom buttons
        no_sideways_scroll(page)
        screenshot(page, f"signin-phone-{tag}.png")

        ask_for_code(page, text)
        code = world.sms.messages()[0].code
        submit_code(page, wrong(code))
        expect(page.get_by_role("alert")).to_have_text(text["wrong"])
        expect(page.locator("#code-sent")).to_contain_text(text["sent"])
        assert countdown(page, text) > 0
        no_sideways_scroll(page)
        screenshot(page, f"signin-code-wrong-{tag}.png")

        for _ in range(3):  # past the 3 checks the number has: refused, even the right code
            submit_code(page, wrong(code))
        expect(page).to_have_url(re.compile(r"problem=too_many_tries&wait=\d+$"))
        expect(page.get_by_role("alert")).to_have_text(text["too_many"])
        expect(page.locator("#code-sent")).to_contain_text(SHOWN)
        no_sideways_scroll(page)
        screenshot(page, f"signin-too-many-{tag}.png")

        page.get_by_role("link", name=text["other_phone"]).click()
        ask_for_code(page, text, STRANGER)  # the address has spent its one code
        expect(page.get_by_role("alert")).to_contain_text(text["not_sent"])
        expect(page.locator("#phone")).to_be_visible()
        expect(page.locator("section.upstream a.button")).to_have_count(2)
        no_sideways_scroll(page)
        screenshot(page, f"signin-not-sent-{tag}.png")
        assert len(world.sms.messages()) == 1
    finally:
        context.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
