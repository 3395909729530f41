"""The admin console in a real browser (headless Chromium through Playwright): an admin signs
in, registers an app with context policy `required` and copies its secret, once, into a relying
party; a person then signs in to that new app by phone and SMS code, picks one of their WeCom
identities, and the app shows it. And a forged console form (no CSRF token) changes nothing.

The identity server (dev mode, SMS codes kept by the console backend) and the relying party
(`iam.devtools.demo_apps`, configured with what the console showed) each run under uvicorn on
loopback, on a fresh SQLite database per test. The address guard (the console refuses other
networks) cannot be seen from a browser on loopback; tests/admin/test_auth.py covers it.

Screenshots are saved under `test-artifacts/` at the repository root.
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
from support.chromium import ARTIFACTS, launched, new_context, require_chromium, screenshot
from support.constants import TEST_SECRET
from support.servers import free_ports, serving
from support.units import in_unit
from support.wecom import set_callback

from iam.app import SIMULATOR_PATH, create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.devtools.demo_apps import DemoAppConfig, create_demo_app
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.secretbox import SecretBox
from iam.services import admins, clients, corps, directory, signing_keys, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

require_chromium()

ADMIN, PASSWORD = "ops-admin", "a long console passphrase"
PERSON = "李雷 Li Lei"
PHONE_TYPED, PHONE = "13900139000", "+8613900139000"
APP_NAME = "Expenses 报销"


# --- the servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with a signing key, copied for each test."""
    path = tmp_path_factory.mktemp("admin-browser-template") / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    in_unit(Store(engine), signing_keys.ensure_key, SecretBox(TEST_SECRET))
    engine.dispose()
    return path


@dataclass(frozen=True)
class World:
    issuer: str
    store: Store
    sms: ConsoleSms
    user_id: str  # 李雷, linked to a member of each demo subsidiary
    rp_port: int  # free, for the relying party the test registers
    simulator: WeComSimulator  # the WeCom the server calls (mounted, as in the demo)

    @property
    def rp_base(self) -> str:
        return f"http://127.0.0.1:{self.rp_port}"

    def code(self) -> str:
        """The last SMS code sent to the person."""
        sent = [message for message in self.sms.messages() if message.phone == PHONE]
        assert sent, "no SMS code was sent"
        return sent[0].code

    def app_names(self) -> list[str]:
        return sorted(client.name for client in in_unit(self.store, clients.list_clients))


def seed(store: Store) -> str:
    """The console's admin, both demo subsidiaries, and a person with a member in each."""
    in_unit(store, admins.create_admin, ADMIN, PASSWORD)
    box = SecretBox(TEST_SECRET)
    user = in_unit(store, users.create_user, PERSON, PHONE, "lilei@example.com")
    for corp, userid, position in zip(demo_corps(), ("lilei_a", "lilei_b"), ("会计", "出纳")):
        in_unit(store, corps.add_corp, box, corp.corp_id, corp.name, corp.agent_id, corp.secret)
        in_unit(
            store,
            users.link_wecom,
            user.id,
            corp.corp_id,
            userid,
            {
                "provider": "wecom",
                "corpid": corp.corp_id,
                "corp_name": corp.name,
                "userid": userid,
                "department": ["财务部"],
                "position": position,
            },
        )
    return user.id


@pytest.fixture
def world(migrated_database: Path, tmp_path: Path) -> Iterator[World]:
    """The identity server in dev mode on a fresh database, under uvicorn."""
    path = tmp_path / "iam.db"
    shutil.copy(migrated_database, path)
    database_url = f"sqlite:///{path}"
    engine = create_db_engine(database_url)
    store = Store(engine)
    user_id = seed(store)
    port, rp_port = free_ports(2)
    issuer = f"http://127.0.0.1:{port}"
    settings = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=issuer,
        database_url=database_url,
        dev_mode=True,
        wecom_api_base=issuer + SIMULATOR_PATH,  # as `iam demo`: the mounted simulator
    )
    sms = ConsoleSms()
    app = create_app(settings, store=store, sms=sms)
    try:
        with serving({port: app}):
            yield World(issuer, store, sms, user_id, rp_port, app.state.simulator)
    finally:
        engine.dispose()


# --- the browser -----------------------------------------------------------------------------


@pytest.fixture
def console(world: World, browser: Browser) -> Iterator[BrowserContext]:
    """The admin's browser profile, closed before the servers stop."""
    context = new_context(browser)
    yield context
    context.close()


def sign_in_to_console(page: Page, world: World) -> None:
    page.goto(world.issuer + "/admin/login")
    expect(page.locator("h1")).to_have_text("Admin sign-in")
    page.fill("#username", ADMIN)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Admin sign-in").click()
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/admin") + r"/?$"))
    expect(page.locator("header .who")).to_have_text(ADMIN)


# --- the tests -------------------------------------------------------------------------------


def test_an_app_registered_in_the_console_takes_a_sign_in_with_a_context(
    world: World, browser: Browser, console: BrowserContext
) -> None:
    # 1. The admin signs in and opens Apps: nothing registered yet.
    page = console.new_page()
    sign_in_to_console(page, world)
    page.locator("header nav").get_by_role("link", name="Apps").click()
    expect(page).to_have_url(world.issuer + "/admin/apps")
    expect(page.locator("h1")).to_have_text("Apps")

    # 2. Registers the relying party: its callback, policy `required`, the phone scope too.
    page.fill("#name", APP_NAME)
    page.fill("#redirect_uris", f"{world.rp_base}/callback")
    page.fill("#post_logout_redirect_uris", f"{world.rp_base}/")
    for scope in ("openid", "profile", "phone"):
        page.check(f"#scope-{scope}")
    page.select_option("#context_policy", "required")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Register").click()
    assert posted.value.status == 303  # post/redirect/get: a reload registers nothing

    # 3. The app's page shows the secret, this once; the client id stays on the page.
    expect(page.locator("h1")).to_have_text(APP_NAME)
    secret = page.locator(".secret").inner_text().strip()
    client_id = page.locator("p.sub code").inner_text().strip()
    assert len(secret) >= 32 and client_id, (secret, client_id)
    registered = in_unit(world.store, clients.get_client, client_id)
    assert registered.context_policy == "required"
    assert registered.redirect_uris == [f"{world.rp_base}/callback"]
    assert registered.check_client_secret(secret)
    assert world.app_names().count(APP_NAME) == 1
    page.goto(f"{world.issuer}/admin/apps/{client_id}")  # shown once: not on a later visit
    expect(page.locator("h1")).to_have_text(APP_NAME)
    expect(page.locator(".secret")).to_have_count(0)

    page.locator("header nav").get_by_role("link", name="Apps").click()
    row = page.locator("table.list tbody tr").filter(has_text=APP_NAME)
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text(client_id)
    expect(row.locator("td").nth(3)).to_have_text("required")
    screenshot(page, "admin-apps.png")

    # 4. The relying party, configured with what the console showed.
    rp = DemoAppConfig(
        name="expenses",
        title=APP_NAME,
        issuer=world.issuer,
        client_id=client_id,
        client_secret=secret,
        base_url=world.rp_base,
    )
    with serving({world.rp_port: create_demo_app(rp)}):
        # 5. A person, in a browser of their own, signs in to it by phone and SMS code...
        person = new_context(browser)
        try:
            tab = person.new_page()
            tab.goto(world.rp_base + "/")
            tab.click("#sign-in")
            expect(tab).to_have_url(re.compile(re.escape(world.issuer + "/login?flow=")))
            tab.fill("#phone", PHONE_TYPED)
            tab.get_by_role("button", name="Send code").click()
            expect(tab.locator("#code")).to_be_visible()
            tab.fill("#code", world.code())
            tab.locator("form[action='/login'] button[type=submit]").click()

            # 6. ...is asked which identity the new app gets (two, and the app requires one)...
            expect(tab).to_have_url(re.compile(re.escape(world.issuer + "/select-identity?")))
            expect(tab.locator("h1")).to_contain_text(APP_NAME)
            choices = tab.locator("button[name=link_id]")
            expect(choices).to_have_count(2)
            choices.filter(has_text="子公司B").click()

            # 7. ...and the app shows the person, acting as that identity.
            expect(tab).to_have_url(world.rp_base + "/")
            expect(tab.locator("#error")).to_have_count(0)
            expect(tab.locator("#sub")).to_have_text(world.user_id)
            expect(tab.locator("#context")).to_have_text(re.compile(r"^Acting as:"))
            expect(tab.locator("#context")).to_have_text("Acting as: 子公司B · 出纳 (lilei_b)")
            expect(tab.locator("#claims-id-token")).to_contain_text("wecom_context")
            screenshot(tab, "admin-new-app-signed-in.png")
        finally:
            person.close()


def test_a_forged_console_form_is_refused(world: World, console: BrowserContext) -> None:
    """A form posted with the admin's cookies but without the page's CSRF token (what another
    site could make the browser send) registers nothing, and neither does a made-up token."""
    page = console.new_page()
    sign_in_to_console(page, world)
    page.goto(world.issuer + "/admin/apps")
    token = page.locator("form[action='/admin/apps'] input[name=csrf_token]").input_value()
    assert token
    before = world.app_names()
    form = {
        "name": "Forged",
        "redirect_uris": "https://evil.example/cb",
        "scopes": "openid",
        "context_policy": "none",
        "access_token_ttl": "300",
        "id_token_ttl": "300",
        "refresh_token_ttl": "0",
    }
    for csrf in ({}, {"csrf_token": "0" * len(token)}, {"csrf_token": token[:-1]}):
        answer = console.request.post(
            world.issuer + "/admin/apps",
            form={**form, **csrf},
            max_redirects=0,
            fail_on_status_code=False,
        )
        assert answer.status == 403, (csrf, answer.status)
        assert "did not come from this site" in answer.text()
    assert world.app_names() == before

    # The same form with the page's own token is taken: the refusals were the token's doing.
    answer = console.request.post(
        world.issuer + "/admin/apps",
        form={**form, "csrf_token": token},
        max_redirects=0,
        fail_on_status_code=False,
    )
    assert answer.status == 303, answer.text()
    assert world.app_names() == sorted([*before, "Forged"])


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_corp_form_says_what_a_trusted_mobile_may_bind(
    world: World, console: BrowserContext, lang: str
) -> None:
    """The trust-mobile hint names its limit (people known in another corporation still prove
    their number by SMS); it must read whole at desktop and phone widths."""
    page = console.new_page()
    sign_in_to_console(page, world)
    hint = {"en": "another corporation", "zh-CN": "其他企业"}[lang]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(world.issuer + f"/admin/corps?lang={lang}")
        expect(page.get_by_text(hint).first).to_be_visible()
        screenshot(page, f"admin-corps-{lang}-{width}.png")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_a_corporation_shows_its_callback_url_and_a_person_their_departed_link(
    world: World, console: BrowserContext, lang: str
) -> None:
    """Issue #13's pages: the corporation's callback section (set or not, the URL to paste into
    WeCom, never a stored value) and a person's link disabled because they left, with when and
    why; read whole at desktop and phone widths."""
    corp_a = demo_corps()[0].corp_id
    set_callback(world.store, corp_a, "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
    directory.follow_member(world.store, lambda corp_id, userid: None, corp_a, "lilei_a")
    page = console.new_page()
    sign_in_to_console(page, world)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(world.issuer + f"/admin/corps/{corp_a}?lang={lang}")
        expect(page.locator("#callback-url")).to_have_text(f"{world.issuer}/events/wecom/{corp_a}")
        assert "QDG6eK" not in page.content()
        screenshot(page, f"admin-corp-callback-{lang}-{width}.png")
        page.goto(world.issuer + f"/admin/users/{world.user_id}?lang={lang}")
        departed = {"en": "left the corporation", "zh-CN": "已离职"}[lang]
        expect(page.get_by_text(departed).first).to_be_visible()
        screenshot(page, f"admin-user-departed-link-{lang}-{width}.png")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_an_apps_page_gives_a_workbench_link_for_each_enabled_corporation(
    world: World, console: BrowserContext, lang: str
) -> None:
    """Issue #14: the app's sign-in start URI on its form, and its `/launch/...` link for each
    enabled corporation, readable and selectable as text, with a copy button; read whole at
    desktop and phone widths."""
    box = SecretBox(TEST_SECRET)
    in_unit(world.store, corps.add_corp, box, "wwsubsidiaryc0003", "子公司C", 1000002, "s" * 43)
    in_unit(world.store, corps.update_corp, box, "wwsubsidiaryc0003", actor="test", enabled=False)
    start = "https://expenses.example.com/oidc/initiate"
    client_id = in_unit(
        world.store,
        clients.create_client,
        APP_NAME,
        ["https://expenses.example.com/oidc/callback"],
        initiate_login_uri=start,
    ).client.client_id
    links = {
        corp.name: f"{world.issuer}/launch/{client_id}/wecom/{corp.corp_id}"
        for corp in demo_corps()
    }
    console.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.issuer)
    page = console.new_page()
    sign_in_to_console(page, world)
    title = {"en": "Workbench links", "zh-CN": "工作台链接"}[lang]
    copied = {"en": "Copied", "zh-CN": "已复制"}[lang]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(world.issuer + f"/admin/apps/{client_id}?lang={lang}")
        expect(page.locator("#initiate_login_uri")).to_have_value(start)
        section = page.locator("section[aria-labelledby=workbench-title]")
        expect(section.locator("h2")).to_have_text(title)
        expect(section.locator("code.link")).to_have_text(list(links.values()))
        expect(section).not_to_contain_text("子公司C")
        for code in section.locator("code.link").all():  # nothing runs off the page
            box_ = code.bounding_box()
            assert box_ is not None and box_["x"] + box_["width"] <= width, (width, box_)
        button = section.locator("button.copy").first
        expect(button).to_be_visible()
        button.click()
        expect(button).to_have_text(copied)
        assert page.evaluate("navigator.clipboard.readText()") == links["子公司A"]
        page.evaluate("window.scrollTo(0, 0)")
        section.scroll_into_view_if_needed()
        screenshot(page, f"admin-app-workbench-links-{lang}-{width}.png")
        section.screenshot(path=str(ARTIFACTS / f"admin-app-workbench-section-{lang}-{width}.png"))

    # Without a sign-in start URI the section says what the links need, and lists none.
    in_unit(world.store, clients.update_client, client_id, actor="test", initiate_login_uri="")
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(world.issuer + f"/admin/apps/{client_id}?lang={lang}")
    expect(page.locator("#workbench-needs-uri")).to_be_visible()
    expect(page.locator("code.link")).to_have_count(0)
    screenshot(page, f"admin-app-workbench-needs-uri-{lang}-390.png")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_a_failed_connection_test_says_every_problem_and_hides_the_corporation(
    world: World, console: BrowserContext, lang: str
) -> None:
    """Issue #14 §5: the test finds the app closed, trusting another domain and visible to
    nobody, says all three in words with what to do, and the corporation's page then says it
    is hidden from the login page, and why, with a button to show it anyway; then WeCom
    refuses the server's address (60020), and the page names the address WeCom saw. Read whole
    at desktop and phone widths."""
    corp_a = demo_corps()[0]
    world.simulator.configure_app(
        corp_a.corp_id, closed=True, visible_departments=[], redirect_domain="old.example.com"
    )
    page = console.new_page()
    sign_in_to_console(page, world)
    test_button = {"en": "Test connection", "zh-CN": "测试连接"}[lang]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(world.issuer + f"/admin/corps/{corp_a.corp_id}?lang={lang}")
        page.get_by_role("button", name=test_button).click()
        result = page.locator("#test-result li")
        expect(result).to_have_count(3)
        expect(result.nth(1)).to_contain_text("old.example.com")
        screenshot(page, f"admin-corp-test-failed-{lang}-{width}.png")
        page.goto(world.issuer + f"/admin/corps/{corp_a.corp_id}?lang={lang}")
        expect(page.locator("#hidden-card li")).to_have_count(3)
        show = {"en": "Show on the login page anyway", "zh-CN": "仍在登录页显示"}[lang]
        expect(page.get_by_role("button", name=show)).to_be_visible()
        screenshot(page, f"admin-corp-hidden-{lang}-{width}.png")
        page.goto(world.issuer + f"/admin/corps?lang={lang}")
        hidden = {"en": "Hidden from the login page", "zh-CN": "未在登录页显示"}[lang]
        expect(page.get_by_text(hidden).first).to_be_visible()
        screenshot(page, f"admin-corps-hidden-{lang}-{width}.png")
    world.simulator.configure_app(
        corp_a.corp_id,
        closed=False,
        visible_departments=[1],
        redirect_domain=None,
        trusted_ips=["198.51.100.7"],
    )
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(world.issuer + f"/admin/corps/{corp_a.corp_id}?lang={lang}")
        page.get_by_role("button", name=test_button).click()
        expect(page.locator("#test-result li")).to_contain_text("127.0.0.1")
        screenshot(page, f"admin-corp-test-60020-{lang}-{width}.png")
    world.simulator.configure_app(corp_a.corp_id, trusted_ips=None)
    page.goto(world.issuer + f"/admin/corps/{corp_a.corp_id}?lang={lang}")
    page.get_by_role("button", name=test_button).click()
    expect(page.locator("#test-result")).to_contain_text(world.issuer.split("//")[1])
    expect(page.locator("#login-page-state")).not_to_contain_text(hidden)
    screenshot(page, f"admin-corp-test-passed-{lang}-390.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
