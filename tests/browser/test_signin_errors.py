"""A WeCom sign-in that fails, in a real browser: the error page's way back returns to the same
sign-in for the same app, and finishing it there lands in the app; then the server's own home
page offers the apps the session signed into. Also the small things around them: the icon,
the simulator's long addresses on a phone, the demo apps dropping `#wechat_redirect`.

The world (the server in dev mode and both demo apps) and the browser are `test_story`'s.
Screenshots go to `test-artifacts/` (error and home pages, 1280 and 390 px, en and zh-CN).
"""

from __future__ import annotations

import re

import pytest
import test_story
from playwright.sync_api import Browser, BrowserContext, Page, expect
from support.chromium import new_context, no_sideways_scroll, screenshot
from test_story import ACTING_A, World, crm_shows, start_sign_in

# The story's world and browser, as this module's fixtures too (pytest looks them up by name).
migrated_database = test_story.migrated_database
world = test_story.world
browser = test_story.browser
context = test_story.context
page = test_story.page

CRM_NAME = "CRM 客户管理"
LEARNING_NAME = "学习平台 Learning platform"
#: (locale, viewport width, what the WeCom page is picked, words of the error, of the way back)
CASES = [
    ("en-US", 1280, "decline", "cancelled", f"Back to sign-in for {CRM_NAME}"),
    ("en-US", 390, "someone outside the corporation", "not", f"Back to sign-in for {CRM_NAME}"),
    ("zh-CN", 1280, "decline", "取消", f"返回「{CRM_NAME}」的登录"),
    ("zh-CN", 390, "someone outside the corporation", "不是", f"返回「{CRM_NAME}」的登录"),
]


def at_wecom_as(page: Page, world: World, corp: str, pick: str, *, wecom_label: str) -> None:
    """On the login page, take the WeCom button of `corp`, then pick `pick` at WeCom."""
    page.get_by_role("link", name=f"{wecom_label} · {corp}").click()
    expect(page).to_have_url(re.compile(re.escape(world.issuer + "/_sim/wecom/")))
    page.get_by_role("button", name=re.compile(re.escape(pick))).click()


@pytest.mark.parametrize(
    ("locale", "width", "pick", "says", "back"),
    CASES,
    ids=["declined-en-1280", "outsider-en-390", "declined-zh-1280", "outsider-zh-390"],
)
def test_an_error_page_leads_back_to_the_same_sign_in_and_on_into_the_app(
    world: World, browser: Browser, locale: str, width: int, pick: str, says: str, back: str
) -> None:
    context = new_context(browser, locale=locale, viewport={"width": width, "height": 844})
    try:
        page = context.new_page()
        wecom_label = "WeCom" if locale == "en-US" else "企业微信"
        start_sign_in(page, world, world.crm)
        login_url = page.url
        at_wecom_as(page, world, "子公司A", pick, wecom_label=wecom_label)

        # the error page: what happened, and the way back to the CRM's sign-in
        expect(page.locator(".error")).to_contain_text(says)
        way_back = page.locator("#back")
        expect(way_back).to_have_text(back)
        assert way_back.get_attribute("href") == login_url.removeprefix(world.issuer)
        no_sideways_scroll(page, width)
        screenshot(page, f"signin-error-{locale}-{width}.png")

        # back there, the sign-in serves the CRM; through WeCom it goes on into the CRM
        way_back.click()
        expect(page).to_have_url(login_url)
        expect(page.locator("main")).to_contain_text(CRM_NAME)
        at_wecom_as(page, world, "子公司A", "· zhangsan_A", wecom_label=wecom_label)
        if locale == "en-US":
            crm_shows(page, world, ACTING_A)
        else:
            expect(page).to_have_url(world.crm.base_url + "/")
            expect(page.locator("#context")).to_contain_text("zhangsan_A")
        learning_tab = context.new_page()  # and the learning platform, in the same session
        learning_tab.goto(world.learning.base_url + "/")
        learning_tab.click("#sign-in")
        expect(learning_tab).to_have_url(world.learning.base_url + "/")
        learning_tab.close()

        # the server's own home page offers the apps this session signed into
        page.goto(world.issuer + "/")
        apps = page.locator("nav.apps a")
        expect(apps).to_have_text([CRM_NAME, LEARNING_NAME])
        no_sideways_scroll(page, width)
        screenshot(page, f"home-apps-{locale}-{width}.png")
        apps.filter(has_text=CRM_NAME).click()  # the app's initiate_login_uri: no page between
        expect(page).to_have_url(world.crm.base_url + "/")
        expect(page.locator("#sub")).to_have_text(world.user_id)
    finally:
        context.close()


def test_the_home_page_of_a_signed_out_browser_lists_no_apps(world: World, page: Page) -> None:
    page.goto(world.issuer + "/?lang=en")
    expect(page.locator("h1")).to_have_text("Group sign-in")
    expect(page.locator("nav.apps")).to_have_count(0)


def test_the_icon_the_simulator_and_the_demo_apps_address(
    world: World, context: BrowserContext, page: Page
) -> None:
    icon = context.request.get(world.issuer + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"

    # the simulator's page on a phone: its long return address wraps
    page.set_viewport_size({"width": 390, "height": 844})
    start_sign_in(page, world, world.crm)
    page.get_by_role("link", name="WeCom · 子公司A").click()
    expect(page.locator(".url")).to_contain_text("/callback/wecom/")
    no_sideways_scroll(page, 390)
    screenshot(page, "wecom-simulator-390.png")

    # a demo app's page reached with WeCom's `#wechat_redirect` drops it from its address
    page.goto(world.crm.base_url + "/#wechat_redirect")
    expect(page).to_have_url(world.crm.base_url + "/")
    page.goto(world.learning.base_url + "/?tab=1#wechat_redirect")
    expect(page).to_have_url(world.learning.base_url + "/?tab=1")
