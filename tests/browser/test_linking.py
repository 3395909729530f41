"""Linking asks first, in a real browser: a WeCom member (王芳 of 子公司A) proves a phone that
belongs to someone else by name (王五): the binding step asks before linking; cancel links
nothing and returns to the app's sign-in, confirm links and goes on into the app. Binding a
phone nobody has makes an account, and the next page says so.

The world (the server in dev mode and both demo apps) and the browser are `test_story`'s.
Screenshots go to `test-artifacts/` (the question and the notice, 1280 and 390 px, en and
zh-CN).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import test_story
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from support.chromium import new_context, no_sideways_scroll, screenshot
from support.units import in_unit
from test_story import World, start_sign_in

from iam.db.models import IdentityLink, User
from iam.services import users

# The story's world and browser, as this module's fixtures too (pytest looks them up by name).
migrated_database = test_story.migrated_database
world = test_story.world
browser = test_story.browser

WANGWU_TYPED, WANGWU = "133 0013 2222", "+8613300132222"
NEW_TYPED, NEW_PHONE = "13300133333", "+8613300133333"
#: (locale, width, the question, its warning, the cancel button, the notice)
CASES = [
    (
        "en-US",
        1280,
        "Link 子公司A · 王芳 (wangfang) to 王五 (+86 133****2222)?",
        "The names differ",
        "Cancel, do not link",
        "A new account was created for +86 133****3333 with the name 王芳.",
    ),
    (
        "zh-CN",
        390,
        "将子公司A · 王芳（wangfang）绑定到王五（+86 133****2222）？",
        "姓名不一致",
        "取消，不绑定",
        "已为 +86 133****3333 新建账号，姓名为王芳。",
    ),
]
CASES += [(c[0], 390 if c[1] == 1280 else 1280, *c[2:]) for c in list(CASES)]


def wangfang_links(world: World) -> list[str]:
    """Whom WeCom's 王芳 is linked to (user names)."""
    with world.store() as db:
        found = db.execute(
            select(User.name)
            .join(IdentityLink, IdentityLink.user_id == User.id)
            .where(IdentityLink.provider_user_id == f"{test_story.CORP_A}/wangfang")
        )
        return list(found.scalars())


def bind_as_wangfang(page: Page, world: World, locale: str, typed: str) -> None:
    """From the CRM: WeCom · 子公司A, be 王芳 there, then prove `typed` at /bind."""
    start_sign_in(page, world, world.crm)
    label = "WeCom" if locale == "en-US" else "企业微信"
    page.get_by_role("link", name=f"{label} · 子公司A").click()
    page.get_by_role("button", name=re.compile(re.escape("· wangfang"))).click()
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/bind?binding=")))
    page.fill("#phone", typed)
    page.locator("form[action='/bind'] button[type=submit]").click()
    expect(page.locator("#code")).to_be_visible()
    query = parse_qs(urlsplit(page.url).query)
    assert set(query) == {"binding", "step"}, page.url  # the number is not in the address
    page.fill("#code", world.sms.messages()[0].code)  # the newest
    page.locator("form[action='/bind'] button[type=submit]").first.click()


@pytest.mark.parametrize(
    ("locale", "width", "question", "warning", "cancel", "notice"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
def test_linking_to_another_name_asks_first_and_a_new_account_says_so(
    world: World,
    browser: Browser,
    locale: str,
    width: int,
    question: str,
    warning: str,
    cancel: str,
    notice: str,
) -> None:
    in_unit(world.store, users.create_user, "王五", WANGWU)
    context = new_context(browser, locale=locale, viewport={"width": width, "height": 844})
    try:
        page = context.new_page()
        # 王芳 proves 王五's phone: the question, and nothing linked yet
        bind_as_wangfang(page, world, locale, WANGWU_TYPED)
        expect(page.locator("p.question")).to_have_text(question)
        expect(page.locator(".warning")).to_contain_text(warning)
        assert wangfang_links(world) == []
        no_sideways_scroll(page, width)
        screenshot(page, f"bind-confirm-{locale}-{width}.png")
        page.reload()  # a reload shows the question again and sends nothing
        expect(page.locator("p.question")).to_have_text(question)
        assert len(world.sms.messages()) == 1

        # cancel: nothing linked, back at the CRM's sign-in
        page.get_by_role("button", name=cancel).click()
        expect(page).to_have_url(re.compile(re.escape(world.issuer + "/login?flow=")))
        assert wangfang_links(world) == []

        # a number nobody has: an account is made, and the page says so
        bind_as_wangfang(page, world, locale, NEW_TYPED)
        expect(page.locator("#account-created")).to_have_text(notice)
        assert wangfang_links(world) == ["王芳"]
        no_sideways_scroll(page, width)
        screenshot(page, f"bind-created-{locale}-{width}.png")
        page.locator("a.button.primary").click()
        expect(page).to_have_url(world.crm.base_url + "/")
        expect(page.locator("#context")).to_contain_text("wangfang")
    finally:
        context.close()


def test_confirming_links_to_the_named_person_and_goes_on_into_the_app(
    world: World, browser: Browser
) -> None:
    in_unit(world.store, users.create_user, "王五", WANGWU)
    context = new_context(browser, viewport={"width": 1280, "height": 844})
    try:
        page = context.new_page()
        bind_as_wangfang(page, world, "en-US", WANGWU_TYPED)
        page.get_by_role("button", name="Link to 王五's account").click()
        expect(page).to_have_url(world.crm.base_url + "/")
        expect(page.locator("#context")).to_contain_text("wangfang")
        assert wangfang_links(world) == ["王五"]
        page.go_back()  # Back to the question: it is gone, nothing is linked twice
        page.go_back()
        assert wangfang_links(world) == ["王五"]
    finally:
        context.close()
