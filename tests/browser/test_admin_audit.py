"""The admin console's audit trail in a real browser (headless Chromium through Playwright): an
admin signs in and rotates the signing key, an app is registered (events of the trail); the
admin finds a person's events by typing part of their name, and downloads them as CSV (UTF-8
with a BOM, names and ids, times with their offset). Then the trail is looked at in English
and Chinese at 1280 and 390 px: the wide table scrolls inside its box, never the page.

The identity server runs in dev mode under uvicorn on loopback, on a fresh SQLite database per
test. Screenshots go to `test-artifacts/`."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from support.chromium import (
    ARTIFACTS,
    launched,
    new_context,
    require_chromium,
)
from support.console import ADMIN, PASSWORD, served_console, sign_in_to_console
from support.constants import TEST_SECRET
from support.units import in_unit

from iam.db.store import Store
from iam.devtools.wecom_simulator import demo_corps
from iam.secretbox import SecretBox
from iam.services import admins, audit, clients, corps, users

require_chromium()

PERSON, PHONE = "李雷 Li Lei", "+8613900139000"
OTHER = "韩梅梅 Han Meimei"
APP_NAME = "Expenses 报销"


@dataclass(frozen=True)
class World:
    issuer: str
    store: Store
    person_id: str


def seed(store: Store) -> str:
    """The admin, a subsidiary, and two people with a few sign-in events each (one refused)."""
    in_unit(store, admins.create_admin, ADMIN, PASSWORD)
    box = SecretBox(TEST_SECRET)
    corp = demo_corps()[0]
    in_unit(store, corps.add_corp, box, corp.corp_id, corp.name, corp.agent_id, corp.secret)
    person = in_unit(store, users.create_user, PERSON, PHONE, "lilei@example.com")
    other = in_unit(store, users.create_user, OTHER, "+8613100131000")
    with store() as db:
        for who in (person, other):
            audit.record(db.connection(), "otp.sent", user_id=who.id, ip="198.51.100.7")
            audit.record(
                db.connection(),
                "login.succeeded",
                user_id=who.id,
                ip="198.51.100.7",
                method="sms",
                corp_id=corp.corp_id,
            )
        audit.record(
            db.connection(),
            "otp.rejected",
            outcome="failure",
            ip="203.0.113.9",
            phone="+86139****9000",
            reason="wrong code",
            tries_left=4,
        )
        db.commit()
    return person.id


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with served_console(f"sqlite:///{tmp_path / 'iam.db'}", seed) as (issuer, store, person_id):
        yield World(issuer, store, person_id)


@pytest.fixture
def console(world: World, browser: Browser) -> Iterator[BrowserContext]:
    context = new_context(browser, accept_downloads=True)
    yield context
    context.close()


def look_at(page: Page, name: str) -> None:
    """A full-page screenshot at 1280 and 390 px; at 390 nothing is wider than the screen
    (the table scrolls inside its own box)."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        wide = page.evaluate("document.documentElement.scrollWidth")
        widest = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > innerWidth + 1
                    && !e.closest('.audit-scroll, .table-wrap'))
            .map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 5)"""
        )
        assert wide <= width, (name, width, wide, widest)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def test_an_admin_finds_a_persons_events_and_downloads_them(
    world: World, console: BrowserContext
) -> None:
    page = console.new_page()
    sign_in_to_console(page, world.issuer)
    expect(page.locator("header .zone")).to_have_text("Times: Asia/Shanghai (UTC+8)")

    # An app registered (by the service the console's form calls: the form's own browser
    # test is tests/browser/test_admin.py), and the signing key rotated in the console: both
    # are events of the trail, the app by its name; the keys page shows times in the zone.
    registered = in_unit(
        world.store,
        clients.create_client,
        APP_NAME,
        ["https://expenses.example.com/callback"],
        actor=f"admin:{ADMIN}",
    ).client
    page.locator("header nav").get_by_role("link", name="Signing keys").click()
    expect(page.locator("p.sub")).to_contain_text("Times are in Asia/Shanghai.")
    page.check("input[name=confirm]")
    page.get_by_role("button", name="Rotate the signing keys").click()
    expect(page.locator("p.notice")).to_contain_text("Rotated")
    look_at(page, "admin-keys-en")

    page.locator("header nav").get_by_role("link", name="Audit trail").click()
    rows = page.locator("table.audit tbody tr")
    newest = rows.first
    expect(newest).to_contain_text("Signing key rotated")
    expect(newest.locator(".outcome")).to_have_text("Success")
    app_row = rows.filter(has_text="App registered")
    expect(app_row.get_by_role("link", name=APP_NAME)).to_have_attribute(
        "href", f"/admin/apps/{registered.client_id}"
    )
    signed_in = rows.filter(has_text="Admin signed in")
    expect(signed_in).to_have_count(1)
    refused = rows.filter(has_text="SMS code refused")
    expect(refused.locator(".outcome")).to_have_text("Failure")
    expect(refused.locator("dl.detail")).to_contain_text("Tries left")
    look_at(page, "admin-audit-en")

    # A person found by part of their name: only their events, their name linked.
    page.fill("#person", "李雷")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"person=%E6%9D%8E%E9%9B%B7"))
    expect(rows).to_have_count(3)  # created, a code sent, signed in
    person_links = rows.get_by_role("link", name=PERSON)
    expect(person_links).to_have_count(3)
    assert person_links.first.get_attribute("href") == f"/admin/users/{world.person_id}"
    expect(page.locator("table.audit")).not_to_contain_text(OTHER)
    expect(rows.filter(has_text="Signed in").get_by_role("link", name="子公司A")).to_have_count(1)

    # ...and downloaded: the same events, Excel-ready.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    assert re.fullmatch(r"audit-\d{8}-\d{4}\.csv", download.value.suggested_filename)
    raw = Path(download.value.path()).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    header, *lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert header[:6] == ["Time", "Event", "Event name", "Outcome", "Person", "User id"]
    assert [line[2] for line in lines] == ["login.succeeded", "otp.sent", "user.created"]
    assert all(line[4:6] == [PERSON, world.person_id] for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00", line[0]) for line in lines)
    assert lines[0][8:10] == ["子公司A", demo_corps()[0].corp_id]

    # The trail in Chinese.
    page.goto(world.issuer + "/admin/audit?lang=zh-CN")
    expect(page.locator("header .zone")).to_have_text("时间：Asia/Shanghai (UTC+8)")
    expect(rows.first).to_contain_text("轮换签名密钥")
    expect(rows.filter(has_text="短信验证码被拒绝").locator(".outcome")).to_have_text("失败")
    expect(page.locator("table.audit")).not_to_contain_text("Success")
    look_at(page, "admin-audit-zh")
    page.fill("#person", "9000")  # the last digits of 李雷's number
    page.get_by_role("button", name="筛选").click()
    expect(rows).to_have_count(3)
    look_at(page, "admin-audit-person-zh")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium
