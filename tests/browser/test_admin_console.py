"""The admin console as an admin sees it (issue #16 items 10-12), in headless Chromium through
Playwright: home, the apps list, an app, the corporations list, a corporation (one whose
connection test failed: marked, kept off the login page) and the signing keys, at 1280 and
390 px, in English and Chinese. No page scrolls sideways; a copy button copies; an app is
deleted through its question, and a secret's rotation and a corporation's disabling ask first.

The identity server runs in dev mode (the WeCom simulator mounted, as in `iam demo`) under
uvicorn on loopback, on a fresh SQLite database. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from starlette.applications import Starlette
from support.chromium import (
    ARTIFACTS,
    launched,
    new_context,
    no_sideways_scroll,
    require_chromium,
    screenshot,
)
from support.console import ADMIN, PASSWORD, served_console, sign_in_to_console
from support.constants import TEST_SECRET
from support.units import in_unit

from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.devtools.wecom_simulator import demo_corps
from iam.secretbox import SecretBox
from iam.services import admins, clients, corps, signing_keys

require_chromium()

APP_NAME = "OA 办公自动化"
WIDTHS = (1280, 390)
CORP_A, CORP_B = (corp.corp_id for corp in demo_corps()[:2])


@dataclass(frozen=True)
class World:
    issuer: str
    store: Store
    client_id: str  # an app with workbench links and two secrets


@pytest.fixture(scope="module")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin-console-template") / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    in_unit(Store(engine), signing_keys.ensure_key, SecretBox(TEST_SECRET))
    engine.dispose()
    return path


def seed(store: Store) -> str:
    """The admin, both demo subsidiaries, and an app with a sign-in start URI (so each
    corporation lists its workbench link) whose secret was rotated once."""
    in_unit(store, admins.create_admin, ADMIN, PASSWORD)
    box = SecretBox(TEST_SECRET)
    for corp in demo_corps()[:2]:
        in_unit(store, corps.add_corp, box, corp.corp_id, corp.name, corp.agent_id, corp.secret)
    client_id = in_unit(
        store,
        clients.create_client,
        APP_NAME,
        ["https://oa.example.com/oidc/callback", "https://oa.example.com/oidc/callback-2"],
        initiate_login_uri="https://oa.example.com/oidc/initiate",
    ).client.client_id
    in_unit(store, clients.rotate_secret, client_id, box=box)
    return client_id


@pytest.fixture
def world(migrated_database: Path, tmp_path: Path) -> Iterator[World]:
    path = tmp_path / "iam.db"
    shutil.copy(migrated_database, path)

    def prepare(app: Starlette) -> None:
        # B's app is visible to nobody: its connection test fails and hides it.
        app.state.simulator.configure_app(CORP_B, visible_departments=[])

    with served_console(f"sqlite:///{path}", seed, prepare) as (issuer, store, client_id):
        yield World(issuer, store, client_id)


@pytest.fixture
def console(world: World, browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.issuer)
    yield context
    context.close()


def header_words_whole(page: Page) -> None:
    """Each link and label of the header sits on one line (no word broken across lines)."""
    for item in page.locator("header nav a, header .brand, header .who").all():
        box = item.bounding_box()
        line = float(item.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 24"))
        assert box is not None and box["height"] <= line * 1.5, (item.inner_text(), box)


def fail_corp_b_test(page: Page, world: World) -> None:
    page.goto(world.issuer + f"/admin/corps/{CORP_B}?lang=en")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_be_visible()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_console_page_fits_a_phone_and_a_desktop(
    world: World, console: BrowserContext, lang: str
) -> None:
    page = console.new_page()
    sign_in_to_console(page, world.issuer, "?lang=en")
    fail_corp_b_test(page, world)
    pages = {
        "home": "/admin/",
        "apps": "/admin/apps",
        "app": f"/admin/apps/{world.client_id}",
        "corps": "/admin/corps",
        "corp": f"/admin/corps/{CORP_A}",
        "corp-hidden": f"/admin/corps/{CORP_B}",
        "keys": "/admin/keys",
    }
    hidden = {
        "en": "Hidden from the login page: test failed",
        "zh-CN": "未在登录页显示：测试未通过",
    }
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in pages.items():
            page.goto(f"{world.issuer}{path}?lang={lang}")
            expect(page.locator("html")).to_have_attribute("lang", lang)
            no_sideways_scroll(page, width)
            header_words_whole(page)
            if name in ("corps", "corp-hidden"):
                expect(page.locator(".badge.danger").first).to_have_text(hidden[lang])
            screenshot(page, f"admin-console-{name}-{lang}-{width}.png")


def test_the_corporation_page_copies_what_wecom_needs(
    world: World, console: BrowserContext
) -> None:
    page = console.new_page()
    sign_in_to_console(page, world.issuer, "?lang=en")
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(f"{world.issuer}/admin/corps/{CORP_A}?lang=zh-CN")
    card = page.locator("section[aria-labelledby=wecom-title]")
    expect(card.locator("h2")).to_have_text("需在企业微信中填写的内容")
    expected = {
        "wecom-domain": world.issuer.split("//")[1],  # host and port, as the test checks
        "wecom-return": f"{world.issuer}/callback/wecom/{CORP_A}",
        "wecom-events": f"{world.issuer}/events/wecom/{CORP_A}",
        f"launch-{world.client_id}": f"{world.issuer}/launch/{world.client_id}/wecom/{CORP_A}",
    }
    for element, value in expected.items():
        expect(page.locator(f"#{element}")).to_have_text(value)
        button = page.locator(f"button[data-copy='{element}']")
        button.click()
        expect(button).to_have_text("已复制")
        assert page.evaluate("navigator.clipboard.readText()") == value
    card.scroll_into_view_if_needed()
    card.screenshot(path=str(ARTIFACTS / "admin-console-corp-wecom-card-zh-CN-390.png"))


def test_the_app_page_copies_its_endpoints(world: World, console: BrowserContext) -> None:
    page = console.new_page()
    sign_in_to_console(page, world.issuer, "?lang=en")
    page.goto(f"{world.issuer}/admin/apps/{world.client_id}?lang=en")
    card = page.locator("section[aria-labelledby=endpoints-title]")
    expect(card.locator("code.value")).to_have_text(
        [
            world.issuer,
            f"{world.issuer}/.well-known/openid-configuration",
            world.client_id,
            "https://oa.example.com/oidc/callback",
            "https://oa.example.com/oidc/callback-2",
        ]
    )
    button = page.locator("button[data-copy='discovery-url']")
    button.click()
    expect(button).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{world.issuer}/.well-known/openid-configuration"
    # the lifetimes read in units
    expect(page.locator("#access_token_ttl")).to_have_value("10")
    expect(page.locator("#access_token_ttl_unit")).to_have_value("minutes")
    expect(page.locator("#refresh_token_ttl")).to_have_value("30")
    expect(page.locator("#refresh_token_ttl_unit")).to_have_value("days")
    expect(page.locator("#access_token_ttl-hint")).to_have_text("1 minute to 1 day.")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_what_cannot_be_undone_asks_first(world: World, console: BrowserContext, lang: str) -> None:
    """Rotating a secret and disabling a corporation ask first (cancel changes nothing);
    deleting an app goes through its question to the list."""
    words = {
        "en": {
            "rotate": "Rotate secret",
            "cancel": "Cancel",
            "disable": "Disable",
            "delete": "Delete this app…",
            "delete_confirm": "Delete permanently",
            "deleted": "The app is deleted.",
        },
        "zh-CN": {
            "rotate": "轮换密钥",
            "cancel": "取消",
            "disable": "停用",
            "delete": "删除此应用…",
            "delete_confirm": "永久删除",
            "deleted": "应用已删除。",
        },
    }[lang]
    page = console.new_page()
    sign_in_to_console(page, world.issuer, "?lang=en")
    page.set_viewport_size({"width": 390, "height": 900})
    app = f"{world.issuer}/admin/apps/{world.client_id}"

    page.goto(f"{app}?lang={lang}")
    page.get_by_role("link", name=words["rotate"], exact=True).click()
    expect(page).to_have_url(re.compile(r"\?confirm=rotate$"))
    confirm = page.locator("#confirm")
    expect(confirm.locator("button.danger")).to_be_visible()
    no_sideways_scroll(page, 390)
    screenshot(page, f"admin-console-rotate-question-{lang}-390.png")
    confirm.get_by_role("link", name=words["cancel"]).click()
    expect(page).to_have_url(app)
    expect(page.locator("#confirm")).to_have_count(0)

    corp = f"{world.issuer}/admin/corps/{CORP_A}"
    page.goto(f"{corp}?lang={lang}")
    page.get_by_role("link", name=words["disable"], exact=True).click()
    expect(page.locator("#confirm button.danger")).to_be_visible()
    screenshot(page, f"admin-console-disable-question-{lang}-390.png")
    assert in_unit(world.store, corps.get_corp, CORP_A).enabled  # asking changed nothing

    page.goto(f"{app}?lang={lang}")
    page.get_by_role("link", name=words["delete"]).click()
    expect(page).to_have_url(f"{app}/delete")
    screenshot(page, f"admin-console-delete-question-{lang}-390.png")
    page.locator("#confirm").get_by_role("button", name=words["delete_confirm"]).click()
    expect(page).to_have_url(f"{world.issuer}/admin/apps?done=deleted")
    expect(page.locator(".notice")).to_have_text(words["deleted"])
    assert in_unit(world.store, clients.list_clients) == []
    screenshot(page, f"admin-console-deleted-{lang}-390.png")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium


#: The app form's access token signature (issue #17): its label, the default's and ES256's
#: option, the save button, in each language.
SIGNATURE = {
    "en": (
        "Access token signature",
        "RS256 (default, widest support)",
        "ES256 (faster; the app's resource servers must support it)",
        "Save changes",
    ),
    "zh-CN": (
        "访问令牌签名算法",
        "RS256（默认，支持最广）",
        "ES256（更快；应用的资源服务器须支持）",
        "保存修改",
    ),
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_app_form_offers_the_access_token_signature(
    world: World, console: BrowserContext, lang: str
) -> None:
    label, default, es256, save = SIGNATURE[lang]
    page = console.new_page()
    sign_in_to_console(page, world.issuer, "?lang=en")
    choice = page.locator("#access_token_signing_alg")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{world.issuer}/admin/apps/{world.client_id}?lang={lang}")
        expect(page.locator("label[for=access_token_signing_alg]")).to_have_text(label)
        expect(choice.locator("option:checked")).to_have_text(default)
        expect(choice.locator("option")).to_have_text([default, es256])
        no_sideways_scroll(page, width)
        choice.scroll_into_view_if_needed()
        top = page.locator("label[for=access_token_signing_alg]").bounding_box()
        hint = page.locator("#access_token_signing_alg-hint").bounding_box()
        assert top is not None and hint is not None
        page.screenshot(
            path=str(ARTIFACTS / f"admin-app-access-token-alg-{lang}-{width}.png"),
            clip={
                "x": 0,
                "y": max(top["y"] - 160, 0),
                "width": width,
                "height": hint["y"] + hint["height"] - top["y"] + 320,
            },
        )
    choice.select_option("ES256")
    page.get_by_role("button", name=save).click()
    expect(page).to_have_url(re.compile(r"\?done=saved$"))
    expect(choice.locator("option:checked")).to_have_text(es256)
    client = in_unit(world.store, clients.get_client, world.client_id)
    assert client.access_token_signing_alg == "ES256"
