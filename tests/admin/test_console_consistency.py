"""The console, page by page, holds to the same rules (issue #16): every page reads in the
page's language (no raw message key, no English exception text on a Chinese page), every action
that cannot be undone asks first with a red button, and a GET on a form's URL finds its page
instead of "Method Not Allowed" (the JSON API keeps its 405)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from support.admin import AdminWorld
from support.constants import CORP_A, CORP_B, RP_REDIRECT, TEST_SECRET
from support.units import in_unit
from support.wecom import connect_corp

from iam.app import create_app
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.secretbox import SecretBox
from iam.services import clients, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = [
    pytest.mark.usefixtures("reused_signing_key"),
    # What is checked is the pages' text: one database is enough.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

CATALOGUE = Path(__file__).resolve().parents[2] / "iam" / "messages" / "en.json"
#: Every message key (a page showing one shows a key it failed to translate).
KEYS = set(json.loads(CATALOGUE.read_text()))
#: A dotted name (`admin.app.name`, `error.x`, but also `app.example.com`).
DOTTED = re.compile(r"\b[a-z_]\w*(?:\.[a-z_]\w*)+")
#: Where a dotted name is a host or a file, not a key.
NOT_KEYS = ("com", "cn", "org", "net", "md", "json", "js", "css", "csv", "html")


def raw_keys(text: str) -> list[str]:
    """The message keys in `text`: any of the catalogue's, and anything like `admin.x` or
    `error.x` (a key the catalogue lacks)."""
    return [
        name
        for name in DOTTED.findall(text)
        if name in KEYS
        or (name.split(".")[0] in ("admin", "error") and name.split(".")[-1] not in NOT_KEYS)
    ]


#: What an exception or a service's English says (never on a Chinese page).
ENGLISH_ERROR = re.compile(
    r"Traceback|Exception|Error\b|\b[Mm]ust (?:be|not)\b|\b[Cc]annot\b|\b[Cc]ould not\b|"
    r"\b[Nn]ot found\b|\b[Ii]nvalid\b|\bNone\b|\bwhole number\b|\bseconds\b"
)
#: Attributes people see or hear (placeholders, labels read out, tooltips, button values).
SEEN_ATTRIBUTES = re.compile(r'\s(?:placeholder|aria-label|title|alt|data-copied)="([^"]*)"')


def visible_text(page: str) -> str:
    """What a person reads or hears on the page: its text (no script, style or markup) and
    the attributes shown or read out."""
    body = page.split("<body", 1)[-1]
    attributes = " ".join(SEEN_ATTRIBUTES.findall(body))
    # (and no <code>: identifiers shown as such, e.g. the audit trail's event names beside
    # their translation)
    body = re.sub(r"<(script|style|code)\b.*?</\1>", " ", body, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", body)
    return html.unescape(f"{text} {attributes}")


def test_visible_text_finds_what_a_person_would_read() -> None:
    page = (
        '<body><p title="admin.corp.x">a <b>b</b></p><script>admin.hidden()</script>'
        '<input placeholder="Error: bad"></body>'
    )
    text = visible_text(page)
    assert raw_keys(text) == ["admin.corp.x"]
    assert raw_keys("https://app.example.com/ admin.example.com docs/wecom-setup.md") == []
    assert ENGLISH_ERROR.search(text) and "hidden" not in text


@pytest.fixture
def app(wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator):
    """The console reaching WeCom through the simulator, with its pages' records: two
    corporations (B's last test failed: hidden), an app with two secrets and workbench links,
    and a person linked to A."""
    for corp_id in (CORP_A, CORP_B):
        simulator.configure_app(corp_id, redirect_domain="testserver")
    connect_corp(store, simulator, CORP_A)
    connect_corp(store, simulator, CORP_B)
    return create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))


@pytest.fixture
def records(app, store: Store, simulator: WeComSimulator, admin_world: AdminWorld) -> dict:
    client_id = in_unit(
        store,
        clients.create_client,
        "OA 办公",
        [RP_REDIRECT],
        initiate_login_uri="https://oa.example.com/start",
    ).client.client_id
    in_unit(store, clients.rotate_secret, client_id, box=SecretBox(TEST_SECRET))
    user = in_unit(store, users.create_user, "王芳", "+8613800138000", "wf@example.com")
    in_unit(store, users.link_wecom, user.id, CORP_A, "wangfang", {"name": "王芳"})
    simulator.configure_app(CORP_B, visible_departments=[])
    path = f"/admin/corps/{CORP_B}"
    failed = admin_world.console.post(f"{path}/test", data={"csrf_token": admin_world.csrf(path)})
    assert failed.status_code == 200
    return {"client_id": client_id, "user_id": user.id, "corp_id": CORP_A}


def console_pages(records: dict) -> list[str]:
    """Every console page, and each page's questions."""
    app = f"/admin/apps/{records['client_id']}"
    user = f"/admin/users/{records['user_id']}"
    return [
        "/admin/",
        "/admin/apps",
        app,
        f"{app}?confirm=rotate",
        f"{app}?confirm=retire",
        f"{app}/delete",
        "/admin/apps/c_000000000000000000000000",  # the message page: no such app
        "/admin/corps",
        f"/admin/corps/{CORP_A}",
        f"/admin/corps/{CORP_A}?confirm=disable",
        f"/admin/corps/{CORP_B}",  # hidden by its failed test
        "/admin/users",
        "/admin/users/new",
        user,
        f"{user}/disable",
        "/admin/keys",
    ]


#: The audit trail names its events by their translated names (issue #16 item 9).
AUDIT_PAGE = "/admin/audit"


@pytest.fixture
def chinese(admin_world: AdminWorld) -> Iterator[TestClient]:
    admin_world.console.get("/admin/?lang=zh-CN")  # the language cookie
    yield admin_world.console
    admin_world.console.get("/admin/?lang=en")


def problems_on(page: httpx.Response, lang: str) -> list[str]:
    text = visible_text(page.text)
    found = [f"raw key {key}" for key in raw_keys(text)]
    if lang == "zh-CN":
        found += [f"English: …{m.string[max(0, m.start() - 40) : m.end() + 20]}…"
                  for m in ENGLISH_ERROR.finditer(text)]  # fmt: skip
    return found


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_console_page_reads_in_its_language(
    admin_world: AdminWorld, records: dict, lang: str
) -> None:
    problems = {}
    for path in console_pages(records):
        sep = "&" if "?" in path else "?"
        page = admin_world.console.get(f"{path}{sep}lang={lang}")
        assert page.status_code in (200, 404), (path, page.status_code)
        assert f'<html lang="{lang}">' in page.text, path
        if found := problems_on(page, lang):
            problems[path] = found
    assert problems == {}, json.dumps(problems, ensure_ascii=False, indent=1)


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("path", [AUDIT_PAGE])
def test_the_audit_trail_reads_in_its_language(
    admin_world: AdminWorld, records: dict, lang: str, path: str
) -> None:
    page = admin_world.console.get(f"{path}?lang={lang}")
    assert page.status_code == 200
    assert problems_on(page, lang) == []


def test_refused_forms_and_failed_tests_read_in_chinese(
    admin_world: AdminWorld, records: dict, chinese: TestClient
) -> None:
    """The pages the console answers to a refused form or a failed test, in Chinese."""
    csrf = admin_world.csrf("/admin/apps")
    bad_app = {
        "csrf_token": csrf,
        "name": "",
        "redirect_uris": "http://crm.example.com/cb#x",
        "scopes": ["openid", "iam:admin"],
        "context_policy": "always",
        "context_claim": "email",
        "access_token_ttl": "99",
        "access_token_ttl_unit": "days",
        "id_token_ttl": "x",
        "refresh_token_ttl": "-1",
        "jwks": "{",
    }
    answers = {
        "register": chinese.post("/admin/apps", data=bad_app),
        "edit": chinese.post(f"/admin/apps/{records['client_id']}", data=bad_app),
        "connect": chinese.post(
            "/admin/corps",
            data={"csrf_token": csrf, "corp_id": "bad id", "name": "", "agent_id": "x"},
        ),
        "corp edit": chinese.post(
            f"/admin/corps/{CORP_A}", data={"csrf_token": csrf, "name": "", "agent_id": "-1"}
        ),
        "callback": chinese.post(
            f"/admin/corps/{CORP_A}/callback",
            data={"csrf_token": csrf, "callback_token": "含有空格 x"},
        ),
        "test": chinese.post(f"/admin/corps/{CORP_B}/test", data={"csrf_token": csrf}),
        "no csrf": chinese.post("/admin/apps", data={"name": "x"}),
    }
    problems = {}
    for name, answer in answers.items():
        assert 'lang="zh-CN"' in answer.text, name
        assert answer.status_code in (200, 403, 409, 422), (name, answer.status_code)
        if found := problems_on(answer, "zh-CN"):
            problems[name] = found
    assert problems == {}, json.dumps(problems, ensure_ascii=False, indent=1)


@pytest.mark.parametrize(
    "question",
    [
        "/admin/apps/{client_id}?confirm=rotate",
        "/admin/apps/{client_id}?confirm=retire",
        "/admin/apps/{client_id}/delete",
        "/admin/corps/{corp_id}?confirm=disable",
    ],
)
def test_what_cannot_be_undone_asks_first_with_a_red_button(
    admin_world: AdminWorld, records: dict, question: str
) -> None:
    page = admin_world.console.get(question.format(**records)).text
    confirm = re.search(r'<section class="card confirm" id="confirm".*?</section>', page, re.S)
    assert confirm, page
    buttons = re.findall(r"<button[^>]*>", confirm.group(0))
    assert buttons == ['<button type="submit" class="danger">'], buttons
    assert '<a class="button secondary" href="' in confirm.group(0)  # and a way back
    # the page's own button for it is red too, and is a link to the question
    start = admin_world.console.get(
        question.format(**records).split("?")[0].removesuffix("/delete")
    )
    target = question.format(**records)
    assert re.search(rf'<a class="button danger" href="{re.escape(target)}"', start.text)


def test_the_signing_key_rotation_is_red_too(admin_world: AdminWorld, records: dict) -> None:
    """The keys page asks with a box to tick, and its button is red."""
    page = admin_world.console.get("/admin/keys").text
    assert 'name="confirm"' in page and 'action="/admin/keys/rotate"' in page
    assert re.search(r'<button type="submit" class="danger">[^<]+</button>', page)


def console_form_paths(app) -> list[str]:
    """The path of every console URL that takes a POST (not the JSON API's)."""
    [mount] = [r for r in app.router.routes if isinstance(r, Mount) and r.path == "/admin"]
    return sorted(
        {
            route.path
            for route in mount.routes
            if isinstance(route, Route)
            and "POST" in (route.methods or ())
            and not route.path.startswith("/api/")
        }
    )


def test_a_get_on_a_console_form_url_finds_a_page(
    app, admin_world: AdminWorld, records: dict
) -> None:
    paths = console_form_paths(app)
    assert {"/apps/{client_id}/rotate", "/corps/{corp_id}/disable", "/logout"} <= set(paths)
    values = {**records, "link_id": "0", "sid": "0"}
    for template in paths:
        path = "/admin" + template.format(**values)
        answer = admin_world.console.get(path)
        assert answer.status_code in (200, 303, 404), (path, answer.status_code)
        if answer.status_code == 303:
            landing = admin_world.console.get(answer.headers["location"], follow_redirects=True)
            assert landing.status_code == 200, (path, answer.headers["location"])
    for path, page in [
        (f"/admin/apps/{records['client_id']}/rotate", f"/admin/apps/{records['client_id']}"),
        (f"/admin/corps/{CORP_A}/disable", f"/admin/corps/{CORP_A}"),
        ("/admin/keys/rotate", "/admin/keys"),
        ("/admin/logout", "/admin/"),
    ]:
        answer = admin_world.console.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, page), path
    assert admin_world.console.get("/admin/keys").status_code == 200  # still signed in


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/api/apps/{client_id}/secret"),
        ("GET", "/admin/api/keys/rotate"),
        ("GET", "/admin/api/corps/{corp_id}/test"),
    ],
)
def test_the_api_keeps_its_405(
    admin_world: AdminWorld, records: dict, method: str, path: str
) -> None:
    answer = admin_world.console.request(method, path.format(**records), headers=admin_world.bearer)
    assert answer.status_code == 405, answer.text
