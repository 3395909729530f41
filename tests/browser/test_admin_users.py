"""The admin console's users pages in a real browser (headless Chromium through Playwright): an
admin pages through the list, adds a person (after a refused phone number), edits them, links
a WeCom member by hand (the mounted simulator vouches for them), ends one session of another
person and disables them after the confirmation page. Then each page is looked at in English
and Chinese at 1280 and 390 px: the list with its pages, a person, the new-person form with an
error, the disable confirmation; nothing is wider than the phone's screen.

The identity server runs in dev mode under uvicorn on loopback, on a fresh SQLite database per
test, with the WeCom simulator mounted (as `iam demo`). Screenshots go to `test-artifacts/`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import select
from support.chromium import (
    launched,
    new_context,
    no_sideways_scroll,
    require_chromium,
    screenshot,
)
from support.console import ADMIN, PASSWORD, served_console, sign_in_to_console
from support.constants import TEST_SECRET
from support.units import in_unit

from iam.db.models import SsoSession
from iam.db.store import Store
from iam.devtools.wecom_simulator import demo_corps
from iam.secretbox import SecretBox
from iam.services import admins, corps, sessions, users

require_chromium()

PERSON = "韩梅梅 Han Meimei"
FILLERS = 52  # with 韩梅梅: 53 people, two pages
WIDTHS = (1280, 390)


@dataclass(frozen=True)
class World:
    issuer: str
    store: Store
    person_id: str  # 韩梅梅, with one live session

    def live_sessions(self, user_id: str) -> list[str]:
        with self.store() as db:
            return list(db.scalars(select(SsoSession.id).where(SsoSession.user_id == user_id)))


def seed(store: Store) -> str:
    """The admin, both demo subsidiaries, a page and a bit of people, and 韩梅梅 signed in on
    one browser."""
    in_unit(store, admins.create_admin, ADMIN, PASSWORD)
    box = SecretBox(TEST_SECRET)
    for corp in demo_corps():
        in_unit(store, corps.add_corp, box, corp.corp_id, corp.name, corp.agent_id, corp.secret)
    person = in_unit(store, users.create_user, PERSON, "+8613100131000", "hanmeimei@example.com")
    for number in range(FILLERS):
        in_unit(store, users.create_user, f"员工 {number:02d}", f"+86135{number:08d}")
    in_unit(store, lambda db: sessions.start(db, person, ["sms"], ip="198.51.100.7"))
    return person.id


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The identity server in dev mode, with the simulator mounted, on a fresh database."""
    with served_console(f"sqlite:///{tmp_path / 'iam.db'}", seed) as (issuer, store, person_id):
        yield World(issuer, store, person_id)


@pytest.fixture
def console(world: World, browser: Browser) -> Iterator[BrowserContext]:
    """The admin's browser profile, closed before the server stops."""
    context = new_context(browser)
    yield context
    context.close()


def test_an_admin_adds_edits_links_signs_out_and_disables(
    world: World, console: BrowserContext
) -> None:
    page = console.new_page()
    sign_in_to_console(page, world.issuer)
    page.get_by_role("link", name="Users").first.click()
    expect(page.locator("#user-count")).to_have_text("1–50 of 53")
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("#user-count")).to_have_text("51–53 of 53")
    page.fill("#q", "员工")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#user-count")).to_have_text("1–50 of 52")
    page.get_by_role("link", name="Next page").click()
    expect(page.locator("#user-count")).to_have_text("51–52 of 52")
    expect(page.locator("#q")).to_have_value("员工")  # the search stays across pages

    # A new person: a refused phone first, then the person.
    page.get_by_role("link", name="New user").click()
    page.fill("#name", "王五")
    page.fill("#phone", "1234")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator("#phone-error")).to_contain_text("Enter a mainland mobile number")
    expect(page.locator("#name")).to_have_value("王五")
    page.fill("#phone", "133 3333 3333")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_have_text("The user is added.")
    expect(page.locator("h1")).to_have_text("王五")

    # Edit: the name and an email.
    page.get_by_text("Edit name, phone, email").click()
    page.fill("#name", "王五 Wang Wu")
    page.fill("#email", "wangwu@example.com")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("The changes are saved.")
    expect(page.locator("h1")).to_have_text("王五 Wang Wu")

    # A WeCom member by hand: WeCom (the simulator) knows 王芳 in 子公司A.
    page.select_option("#corp_id", demo_corps()[0].corp_id)
    page.fill("#userid", "nobody_here")
    page.get_by_role("button", name="Check and link").click()
    expect(page.locator("#link-error")).to_contain_text("WeCom has no member nobody_here")
    page.fill("#userid", "wangfang")
    page.get_by_role("button", name="Check and link").click()
    expect(page.get_by_role("status")).to_have_text("The WeCom member is linked.")
    expect(page.get_by_text(f"{demo_corps()[0].corp_id}/wangfang")).to_be_visible()
    expect(page.get_by_role("cell", name="售后工程师")).to_be_visible()

    # 韩梅梅's one session, ended after asking; then disabled after asking.
    page.goto(world.issuer + f"/admin/users/{world.person_id}")
    page.get_by_role("link", name="End", exact=True).click()
    expect(page.locator("h1")).to_have_text("End this session")
    assert len(world.live_sessions(world.person_id)) == 1  # asking changes nothing
    page.get_by_role("button", name="End the session").click()
    expect(page.get_by_role("status")).to_have_text("The session is ended. Its tokens are revoked.")
    assert world.live_sessions(world.person_id) == []
    page.get_by_role("link", name="Disable").click()
    expect(page.locator("h1")).to_have_text("Disable this user")
    expect(page.locator("#user-status")).to_have_count(0)
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#user-status")).to_have_text("Active")
    page.get_by_role("link", name="Disable").click()
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#user-status")).to_have_text("Disabled")
    expect(page.get_by_role("button", name="Enable")).to_be_visible()


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_users_pages_read_whole_at_each_width(
    world: World, console: BrowserContext, lang: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list with its pages (the second, reached by its cursor link; a search whose total
    is past the count's cap; a forged page link), a person (with a link and a session), the
    new-person form with an error, the edit form with an error, the disable confirmation: at
    1280 and 390 px, in `lang`."""
    in_unit(
        world.store,
        users.link_wecom,
        world.person_id,
        demo_corps()[1].corp_id,
        "hanmeimei_b",
        {"corp_name": "子公司B", "department": ["市场部"], "position": "市场专员"},
    )
    page = console.new_page()
    sign_in_to_console(page, world.issuer)
    person = f"{world.issuer}/admin/users/{world.person_id}"
    shown = {
        "en": ("1–50 of 53", "Enter a mainland mobile number", "Disable this user"),
        "zh-CN": ("第 1–50 个，共 53 个", "请输入中国大陆手机号", "停用该用户"),
    }[lang]
    pages = {
        "en": ("51–53 of 53", "1–50 of more than 50", "That page link is not valid"),
        "zh-CN": ("第 51–53 个，共 53 个", "第 1–50 个，共超过 50 个", "该翻页链接无效"),
    }[lang]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{world.issuer}/admin/users?lang={lang}")
        expect(page.locator("#user-count")).to_have_text(shown[0])
        no_sideways_scroll(page)
        screenshot(page, f"admin-users-list-{lang}-{width}.png")
        page.locator("a[rel=next]").click()
        expect(page.locator("#user-count")).to_have_text(pages[0])
        expect(page.locator("a[rel=prev]")).to_be_visible()
        no_sideways_scroll(page)
        screenshot(page, f"admin-users-list-page2-{lang}-{width}.png")
        # A cap below the 53 matches but not below a page (in production 10,000 against 50):
        # "1–50 of more than 20" would read as if the page held more rows than there are.
        monkeypatch.setattr(users, "COUNT_CAP", 50)
        page.goto(f"{world.issuer}/admin/users?q=%E5%91%98%E5%B7%A5&lang={lang}")  # 员工
        expect(page.locator("#user-count")).to_have_text(pages[1])
        no_sideways_scroll(page)
        screenshot(page, f"admin-users-list-capped-{lang}-{width}.png")
        monkeypatch.undo()
        page.goto(f"{world.issuer}/admin/users?after=forged&lang={lang}")
        expect(page.get_by_role("alert")).to_contain_text(pages[2])
        no_sideways_scroll(page)
        screenshot(page, f"admin-users-list-forged-{lang}-{width}.png")

        page.goto(f"{person}?lang={lang}")
        expect(page.locator("h1")).to_have_text(PERSON)
        no_sideways_scroll(page)
        screenshot(page, f"admin-user-page-{lang}-{width}.png")
        page.locator("details.edit summary").click()
        page.fill("#email", "not-an-address")
        page.locator("form[action$='/edit'] button[type=submit]").click()
        expect(page.locator("#email-error")).to_be_visible()
        no_sideways_scroll(page)
        screenshot(page, f"admin-user-edit-error-{lang}-{width}.png")

        page.goto(f"{world.issuer}/admin/users/new?lang={lang}")
        page.fill("#name", "王五")
        page.fill("#phone", "1234")
        page.locator("form[action='/admin/users'] button[type=submit]").click()
        expect(page.locator("#phone-error")).to_contain_text(shown[1])
        no_sideways_scroll(page)
        screenshot(page, f"admin-user-new-error-{lang}-{width}.png")

        page.goto(f"{person}/disable?lang={lang}")
        expect(page.locator("h1")).to_have_text(shown[2])
        expect(page.locator("button.danger")).to_be_visible()
        no_sideways_scroll(page)
        screenshot(page, f"admin-user-disable-confirm-{lang}-{width}.png")
    assert not re.search(r"admin\.\w", page.content().replace("/admin.css", ""))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
