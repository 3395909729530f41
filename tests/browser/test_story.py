"""The demo's story in a real browser (headless Chromium through Playwright), and the selector's
refusals: the identity server in dev mode (SMS outbox, WeCom simulator) and both demo apps, each
under its own uvicorn on loopback, on a fresh SQLite database for every test.

Screenshots of the selector and the apps are saved under `test-artifacts/` at the repository root.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import (
    APIResponse,
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
)
from sqlalchemy import select
from starlette.datastructures import Secret
from starlette.types import ASGIApp
from support.chromium import launched, new_context, require_chromium, screenshot
from support.constants import TEST_SECRET
from support.servers import free_base_port, serving
from support.units import in_unit

from iam.app import create_app
from iam.db import migrate
from iam.db.models import SsoSession
from iam.db.store import Store, create_db_engine
from iam.devtools.demo import seed_demo, seed_relying_parties
from iam.devtools.demo_apps import NO_CONTEXT, DemoAppConfig, create_demo_app
from iam.secretbox import SecretBox
from iam.services import users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

require_chromium()

PHONE_TYPED = "13800138000"  # as a person types it
PHONE = "+8613800138000"  # the demo person's, as stored and shown in the outbox
CORP_A, CORP_B = "wwsubsidiarya0001", "wwsubsidiaryb0002"
CRM_QUESTION = "Which identity do you want to use for CRM 客户管理?"
CRM_QUESTION_ZH = "您要以哪个身份使用 CRM 客户管理？"
ACTING_A = "Acting as: 子公司A · 销售经理 (zhangsan_A)"
ACTING_B = "Acting as: 子公司B · 售后顾问 (zs_b)"


# --- the world: the server and the two demo apps, on a fresh database per test ---


@dataclass(frozen=True)
class World:
    issuer: str
    store: Store
    sms: ConsoleSms
    user_id: str  # the demo person (张三), linked to 子公司A/zhangsan_A and 子公司B/zs_b
    learning: DemoAppConfig  # context policy none
    crm: DemoAppConfig  # context policy required

    def link_id(self, corp_id: str) -> str:
        links = in_unit(self.store, users.user_detail, self.user_id).links
        return next(link.id for link in links if link.provider_user_id.startswith(corp_id + "/"))

    def session_contexts(self) -> dict[str, str | None]:
        """Every live SSO session of the demo person: sid -> the chosen link (None: none)."""
        with self.store() as db:
            found = db.scalars(select(SsoSession).where(SsoSession.user_id == self.user_id))
            return {sso.id: sso.context_link_id for sso in found}


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file holding the demo's signing key, copied for each test (making the
    RSA key and migrating cost more than a copy)."""
    path = tmp_path_factory.mktemp("browser-template") / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    seed_demo(Store(engine), SecretBox(TEST_SECRET), "http://127.0.0.1:1")
    engine.dispose()
    return path


@pytest.fixture
def world(migrated_database: Path, tmp_path: Path) -> Iterator[World]:
    """The identity server (dev mode: outbox and WeCom simulator) and both demo apps, seeded
    as `iam demo` seeds them, each under uvicorn; a fresh database, so OTP limits start over."""
    path = tmp_path / "iam.db"
    shutil.copy(migrated_database, path)
    database_url = f"sqlite:///{path}"
    engine = create_db_engine(database_url)
    store = Store(engine)
    port = free_base_port()
    issuer = f"http://127.0.0.1:{port}"
    demo = seed_demo(store, SecretBox(TEST_SECRET), issuer)
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
    )
    sms = ConsoleSms()
    apps: dict[int, ASGIApp] = {port: create_app(settings, store=store, sms=sms)}
    apps.update({party.port: create_demo_app(party.config) for party in parties.values()})
    try:
        with serving(apps):
            yield World(
                issuer, store, sms, demo.user_id, parties["learning"].config, parties["crm"].config
            )
    finally:
        engine.dispose()


# --- the browser ---


@pytest.fixture
def context(world: World, browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test, closed before the servers stop."""
    fresh = new_context(browser)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@contextmanager
def pages_shown(page: Page) -> Iterator[list[str]]:
    """The URLs of the pages the tab shows meanwhile (committed navigations: no redirects)."""
    shown: list[str] = []

    def record(frame) -> None:
        if frame == page.main_frame:
            shown.append(frame.url)

    page.on("framenavigated", record)
    try:
        yield shown
    finally:
        page.remove_listener("framenavigated", record)


# --- steps a person takes ---


def start_sign_in(page: Page, world: World, app: DemoAppConfig) -> None:
    """At the app's home page, click "Sign in": the server's login page."""
    page.goto(app.base_url + "/")
    page.click("#sign-in")
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/login?flow=")))


def ask_for_code(page: Page, button: str = "Send code") -> None:
    page.fill("#phone", PHONE_TYPED)
    page.get_by_role("button", name=button).click()
    expect(page.locator("#code")).to_be_visible()


def submit_code(page: Page, code: str) -> None:
    page.fill("#code", code)
    page.locator("form[action='/login'] button[type=submit]").click()


def sign_in_by_phone(
    page: Page, world: World, app: DemoAppConfig, send_code: str = "Send code"
) -> None:
    """Start at the app and sign in with phone + SMS code (read from the console backend)."""
    start_sign_in(page, world, app)
    ask_for_code(page, send_code)
    submit_code(page, world.sms.messages()[0].code)


def at_selector(page: Page, world: World) -> str:
    """The selector is shown: its flow id."""
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/select-identity?flow=")))
    flow = page.locator("form.choices input[name=flow]").input_value()
    assert flow
    return flow


def choice(page: Page, corp_name: str) -> Locator:
    """The selector's button for the identity in `corp_name`."""
    return page.locator("button[name=link_id]").filter(has_text=corp_name)


def sign_in_by_wecom(page: Page, world: World, app: DemoAppConfig, corp: str, who: str) -> None:
    """Start at the app, pick "WeCom · corp" on the login page, be `who` at WeCom."""
    start_sign_in(page, world, app)
    page.get_by_role("link", name=f"WeCom · {corp}").click()
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/_sim/wecom/")))
    page.get_by_role("button", name=re.compile(re.escape(f"· {who}"))).click()


def crm_shows(page: Page, world: World, context_line: str) -> None:
    expect(page).to_have_url(world.crm.base_url + "/")
    expect(page.locator("#error")).to_have_count(0)
    expect(page.locator("#context")).to_have_text(context_line)
    expect(page.locator("#sub")).to_have_text(world.user_id)


def post_selector(context: BrowserContext, world: World, form: dict[str, str]) -> APIResponse:
    """POST /select-identity with this browser's cookies, redirects not followed."""
    return context.request.post(
        world.issuer + "/select-identity", form=form, max_redirects=0, fail_on_status_code=False
    )


# --- the story ---


def test_the_whole_story(world: World, context: BrowserContext, page: Page) -> None:
    """What `iam demo` prints, played by a person: phone login and a choice for the CRM; the
    learning platform sees no subsidiary; a WeCom login from B makes the CRM take B unasked."""
    crm, learning = world.crm, world.learning

    # 1. The CRM sends the person to the server's login page: phone, then the code from the
    # outbox (in a second tab, as a person would read it).
    start_sign_in(page, world, crm)
    expect(page.locator("h1")).to_have_text("Sign in")
    ask_for_code(page)
    outbox = context.new_page()
    outbox.goto(world.issuer + "/dev/outbox")
    row = outbox.locator("tbody tr").filter(has_text=PHONE).first
    code = row.locator("td code").inner_text().strip()
    assert re.fullmatch(r"\d{6}", code), code
    outbox.close()
    submit_code(page, code)

    # 2. Two identities and no context: the selector asks.
    at_selector(page, world)
    expect(page.locator("h1")).to_have_text(CRM_QUESTION)
    labels = page.locator("button[name=link_id] .label")
    expect(labels).to_have_text(["子公司A – 销售经理", "子公司B – 售后顾问"])
    expect(page.get_by_role("button", name="Cancel and go back to CRM 客户管理")).to_be_visible()
    screenshot(page, "selector.png")

    # 3. The choice: the CRM acts as 子公司A.
    choice(page, "子公司A").click()
    crm_shows(page, world, ACTING_A)
    crm_sub = page.locator("#sub").inner_text()
    expect(page.locator("#claims-id-token")).to_contain_text("zhangsan_A")
    screenshot(page, "crm-a.png")

    # 4. The learning platform: single sign-on without a page at the server, and no subsidiary.
    learning_tab = context.new_page()
    learning_tab.goto(learning.base_url + "/")
    with pages_shown(learning_tab) as shown:
        learning_tab.click("#sign-in")
        expect(learning_tab).to_have_url(learning.base_url + "/")
        expect(learning_tab.locator("#context")).to_have_text(NO_CONTEXT)
    assert shown and not [url for url in shown if url.startswith(world.issuer)], shown
    expect(learning_tab.locator("#error")).to_have_count(0)
    expect(learning_tab.locator("#sub")).to_have_text(crm_sub)  # the same person
    text = learning_tab.locator("body").inner_text()
    for detail in ("wecom_context", "wwsubsidiary", "销售经理"):
        assert detail not in text, detail
    screenshot(learning_tab, "learning.png")
    learning_tab.close()

    # 5. Sign out of the CRM, and of the SSO session (confirming at the server if asked).
    page.click("#sign-out")
    confirm = page.get_by_role("button", name="Sign out", exact=True)
    expect(page.locator("#sign-in").or_(confirm)).to_be_visible()
    if confirm.is_visible():
        confirm.click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page).to_have_url(crm.base_url + "/")
    expect(page.locator("#sign-in")).to_be_visible()
    assert world.session_contexts() == {}

    # 6. In again through 子公司B's WeCom: the CRM takes B, no selector in between.
    with pages_shown(page) as shown:
        sign_in_by_wecom(page, world, crm, "子公司B", "zs_b")
        crm_shows(page, world, ACTING_B)
    assert any(url.startswith(world.issuer + "/login?flow=") for url in shown), shown
    assert any(url.startswith(world.issuer + "/_sim/wecom/") for url in shown), shown
    assert not [url for url in shown if "/select-identity" in url], shown
    assert page.locator("#sub").inner_text() == crm_sub
    screenshot(page, "crm-b.png")


# --- the selector ---


def test_select_account_shows_the_selector_even_with_a_context(world: World, page: Page) -> None:
    sign_in_by_wecom(page, world, world.crm, "子公司A", "zhangsan_A")
    crm_shows(page, world, ACTING_A)

    page.click("#switch")  # prompt=select_account
    at_selector(page, world)
    expect(choice(page, "子公司A")).to_have_class(re.compile(r"\bcurrent\b"))
    expect(choice(page, "子公司B")).not_to_have_class(re.compile(r"\bcurrent\b"))
    choice(page, "子公司B").click()

    crm_shows(page, world, ACTING_B)
    assert list(world.session_contexts().values()) == [world.link_id(CORP_B)]


def test_cancel_at_the_selector_returns_access_denied_to_the_app(world: World, page: Page) -> None:
    sign_in_by_phone(page, world, world.crm)
    at_selector(page, world)

    page.get_by_role("button", name="Cancel and go back to CRM 客户管理").click()

    expect(page).to_have_url(world.crm.base_url + "/")
    expect(page.locator("#error")).to_contain_text("access_denied")
    expect(page.locator("#who")).to_have_count(0)
    expect(page.locator("#sign-in")).to_be_visible()
    assert list(world.session_contexts().values()) == [None]


def test_forged_stale_and_cross_browser_selector_posts_change_nothing(
    world: World, browser: Browser, context: BrowserContext, page: Page
) -> None:
    other = in_unit(world.store, users.create_user, "李四", "+8613900139000")
    forged = in_unit(
        world.store,
        users.link_wecom,
        other.id,
        CORP_A,
        "lisi",
        {"corpid": CORP_A, "corp_name": "子公司A", "userid": "lisi", "position": "销售代表"},
    ).id
    sign_in_by_phone(page, world, world.crm)
    flow = at_selector(page, world)
    selector_url = page.url
    csrf = page.locator("form.choices input[name=csrf_token]").input_value()
    link_a, link_b = world.link_id(CORP_A), world.link_id(CORP_B)
    before = world.session_contexts()
    assert list(before.values()) == [None]

    # Another person's identity, submitted from the page (a doctored button): back to the
    # selector (303), which says so, and the session keeps no context.
    choice(page, "子公司A").evaluate("(button, id) => { button.value = id; }", forged)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        choice(page, "子公司A").click()
    assert posted.value.status == 303
    expect(page.get_by_role("alert")).to_contain_text("That identity is not one of yours")
    expect(page.locator("button[name=link_id]")).to_have_count(2)
    assert world.session_contexts() == before
    answer = post_selector(context, world, {"csrf_token": csrf, "flow": flow, "link_id": forged})
    assert answer.status == 303, answer.text()
    assert answer.headers["location"].endswith("&problem=forbidden")
    assert world.session_contexts() == before

    # No CSRF token, or a wrong one: refused before anything is read.
    for token in (None, "0" * 64, csrf[:-1]):
        form = {"flow": flow, "link_id": link_a} | ({"csrf_token": token} if token else {})
        answer = post_selector(context, world, form)
        assert 400 <= answer.status < 500, (token, answer.status)
        assert "did not come from this site" in answer.text()
        assert world.session_contexts() == before

    # Another browser, signed in as the same person (through WeCom, context A), posting this
    # browser's flow: it is not that browser's request.
    with ExitStack() as stack:
        intruder = new_context(browser)
        stack.callback(intruder.close)
        intruder_page = intruder.new_page()
        sign_in_by_wecom(intruder_page, world, world.crm, "子公司A", "zhangsan_A")
        crm_shows(intruder_page, world, ACTING_A)
        before = world.session_contexts()
        intruder_page.goto(world.issuer + "/logout")  # signed in: /login goes on home
        intruder_csrf = intruder_page.locator("input[name=csrf_token]").first.input_value()
        assert intruder_csrf != csrf  # the token is bound to the browser
        for token in (intruder_csrf, csrf):
            form = {"csrf_token": token, "flow": flow, "link_id": link_b}
            answer = post_selector(intruder, world, form)
            assert answer.status in (303, 403), (token, answer.status)
            assert world.session_contexts() == before
        answer = post_selector(intruder, world, {"csrf_token": intruder_csrf, "flow": flow})
        assert answer.status == 303, answer.status
        intruder_page.goto(world.issuer + answer.headers["location"])
        expect(intruder_page).to_have_url(world.issuer + "/")  # not its request: home

    # The refusals left the request alive: the selector, open in two tabs, takes the person's
    # own choice in the first.
    page.goto(selector_url)
    other_tab = context.new_page()
    other_tab.goto(selector_url)
    choice(page, "子公司A").click()
    crm_shows(page, world, ACTING_A)
    after = world.session_contexts()
    assert link_a in after.values() and link_b not in after.values()

    # The second tab's choice comes too late: that request is finished. No change, and the
    # tab goes home (the person is signed in) instead of showing an expired request.
    with other_tab.expect_response(lambda r: r.request.method == "POST") as posted:
        choice(other_tab, "子公司B").click()
    assert posted.value.status == 303
    expect(other_tab).to_have_url(world.issuer + "/")
    stale = post_selector(context, world, {"csrf_token": csrf, "flow": flow, "link_id": link_b})
    assert stale.status == 303, stale.status
    assert world.session_contexts() == after
    page.reload()
    crm_shows(page, world, ACTING_A)


def test_the_selector_works_from_the_keyboard(world: World, page: Page) -> None:
    sign_in_by_phone(page, world, world.crm)
    at_selector(page, world)
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("h1")).to_have_text(CRM_QUESTION)
    for corp in ("子公司A", "子公司B"):
        expect(page.get_by_role("button", name=re.compile(corp))).to_have_count(1)
        expect(choice(page, corp)).to_have_accessible_name(re.compile(corp))

    first = choice(page, "子公司A")
    focused = False
    for _ in range(6):
        page.keyboard.press("Tab")
        if first.evaluate("button => button === document.activeElement"):
            focused = True
            break
        assert not choice(page, "子公司B").evaluate("b => b === document.activeElement")
    assert focused, "Tab never reached the first choice"
    page.keyboard.press("Enter")

    crm_shows(page, world, ACTING_A)


def test_the_selector_in_chinese_and_on_a_phone(world: World, browser: Browser) -> None:
    """A browser that asks for Chinese (Accept-Language zh-CN) gets the pages in Chinese; on a
    phone-sized screen the choices fit without scrolling sideways."""
    chinese = new_context(browser, locale="zh-CN")
    try:
        page = chinese.new_page()
        sign_in_by_phone(page, world, world.crm, send_code="获取验证码")
        flow = at_selector(page, world)
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        expect(page.locator("h1")).to_have_text(CRM_QUESTION_ZH)
        expect(page.locator("button[name=link_id] .label")).to_have_text(
            ["子公司A – 销售经理", "子公司B – 售后顾问"]
        )
        expect(page.get_by_role("button", name="取消并返回 CRM 客户管理")).to_be_visible()
        english = page.get_by_role("link", name="English")
        expect(english).to_have_attribute(
            "href", re.compile(re.escape(f"flow={flow}&lang=en") + "$")
        )
        screenshot(page, "selector-zh.png")

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(page.locator("h1")).to_have_text(CRM_QUESTION_ZH)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"the selector scrolls sideways on a phone: {width}px wide"
        for corp in ("子公司A", "子公司B"):
            box = choice(page, corp).bounding_box()
            assert box is not None, corp
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (corp, box)
        screenshot(page, "selector-phone.png")

        choice(page, "子公司B").click()  # and it still works, in Chinese, on a phone
        crm_shows(page, world, ACTING_B)
    finally:
        chinese.close()


# --- the WeCom workbench ---

IN_WECOM_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Mobile/15E148 wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh"
)


@pytest.mark.parametrize(
    ("locale", "width"), [("en-US", 1280), ("zh-CN", 390)], ids=["en-1280", "zh-390"]
)
def test_a_workbench_link_opens_the_crm_as_that_subsidiary_without_a_page(
    world: World, browser: Browser, locale: str, width: int
) -> None:
    """Seed 003: tap the CRM in 子公司B's workbench (WeCom's in-app browser); the person, who has
    identities in both subsidiaries, lands in the CRM acting as B: no login page, no selector,
    only WeCom's own silent OAuth in between. Then 子公司A's workbench link makes it A."""
    in_wecom = new_context(
        browser,
        locale=locale,
        user_agent=IN_WECOM_PHONE,
        viewport={"width": width, "height": 844},
    )
    try:
        page = in_wecom.new_page()
        for corp_id, who, acting in ((CORP_B, "zs_b", ACTING_B), (CORP_A, "zhangsan_A", ACTING_A)):
            link = f"{world.issuer}/launch/{world.crm.client_id}/wecom/{corp_id}"
            with pages_shown(page) as shown:
                page.goto(link)
                expect(page).to_have_url(re.compile(re.escape(world.issuer + "/_sim/wecom/")))
                assert "scope=snsapi_base" in page.url  # silent in the real WeCom
                page.get_by_role("button", name=re.compile(re.escape(f"· {who}"))).click()
                # (the browser keeps WeCom's `#wechat_redirect` through the redirects)
                app_home = re.escape(world.crm.base_url + "/") + "(#wechat_redirect)?$"
                expect(page).to_have_url(re.compile(app_home))
                expect(page.locator("#error")).to_have_count(0)
                expect(page.locator("#sub")).to_have_text(world.user_id)
                if locale == "en-US":
                    expect(page.locator("#context")).to_have_text(acting)
                else:
                    expect(page.locator("#context")).to_contain_text(who)
            ours = [url for url in shown if url.startswith(world.issuer)]
            assert all("/_sim/wecom/" in url for url in ours), shown  # no page of ours
            width_used = page.evaluate("document.scrollingElement.scrollWidth")
            assert width_used <= width, f"the CRM scrolls sideways: {width_used}px"
            screenshot(page, f"workbench-{corp_id[-4:]}-{locale}-{width}.png")
    finally:
        in_wecom.close()


def test_a_workbench_link_of_an_app_without_one_says_so(world: World, browser: Browser) -> None:
    for locale, width, words in (
        ("en-US", 1280, "initiate_login_uri"),
        ("zh-CN", 390, "尚不能从企业微信工作台直接打开"),
    ):
        context = new_context(browser, locale=locale, viewport={"width": width, "height": 844})
        try:
            page = context.new_page()
            answer = page.goto(f"{world.issuer}/launch/c_nosuchapp/wecom/{CORP_A}")
            assert answer is not None and answer.status == 404
            expect(page.locator(".error")).to_be_visible()
            screenshot(page, f"workbench-unknown-app-{locale}-{width}.png")
            page.goto(
                f"{world.issuer}/launch/{world.crm.client_id}/wecom/{CORP_A}"
                "?target_link_uri=https://evil.example/"
            )
            expect(page.locator(".error")).to_be_visible()
            screenshot(page, f"workbench-bad-target-{locale}-{width}.png")
            expect(page.locator(".error")).not_to_contain_text(words)  # (another refusal)
        finally:
            context.close()


def test_the_logout_page_says_what_it_ends(world: World, page: Page) -> None:
    """The confirmation and the done page name both the group sign-in and the apps that
    support back-channel logout: English on a desktop, Chinese on a phone."""
    sign_in_by_phone(page, world, world.learning)
    expect(page).to_have_url(world.learning.base_url + "/")
    page.set_viewport_size({"width": 1280, "height": 844})
    page.goto(world.issuer + "/logout?lang=en")
    expect(page.locator("main")).to_contain_text("apps that support it")
    screenshot(page, "logout-confirm-en-1280.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(world.issuer + "/logout?lang=zh-CN")
    expect(page.locator("main")).to_contain_text("支持统一退出的应用")
    screenshot(page, "logout-confirm-zh-CN-390.png")
    page.get_by_role("button", name="退出", exact=True).click()
    expect(page.locator("h1")).to_have_text("已退出")
    expect(page.locator("main")).to_contain_text("支持统一退出的应用")
    width_used = page.evaluate("document.scrollingElement.scrollWidth")
    assert width_used <= 390, f"the logout page scrolls sideways: {width_used}px"
    screenshot(page, "logout-done-zh-CN-390.png")
    assert world.session_contexts() == {}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
