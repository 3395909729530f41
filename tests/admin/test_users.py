"""Admin: users. The search page and `GET /admin/api/users`, a person's page and
`GET|PATCH /admin/api/users/{id}`, removing a link, ending sessions; with the console session
and with an admin bearer token. And the console's own actions: adding and editing a person,
linking a WeCom member by hand (asked of the simulator), ending one session, asking before
anything destructive."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import admin_console
from support.browser import Front
from support.clocks import Clock
from support.constants import CORP_A, CORP_B, PHONE
from support.units import in_unit
from support.wecom import connect_corp
from support.world import World

from admin.test_audit import Caller, callers, conforms
from iam.app import create_app
from iam.db.models import AuditEvent, IdentityLink, SsoSession, User
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.services import otp, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

META_A = {
    "corpid": CORP_A,
    "corp_name": "Subsidiary A",
    "userid": "ZhangSan_A",
    "department": ["Sales", "East region"],
    "position": "Sales manager",
}
META_B = {
    "corpid": CORP_B,
    "corp_name": "Subsidiary B",
    "userid": "zs_b",
    "department": ["After-sales"],
    "position": "After-sales consultant",
}
NOBODY = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def linked(world: World, store: Store) -> tuple[IdentityLink, IdentityLink]:
    """The world's person, linked in both subsidiaries."""
    return (
        in_unit(store, users.link_wecom, world.user.id, CORP_A, "ZhangSan_A", META_A),
        in_unit(store, users.link_wecom, world.user.id, CORP_B, "zs_b", META_B),
    )


@pytest.fixture
def app(wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator):
    """The app reaching WeCom through the simulator (admin_world signs in to this one); no
    corporation is connected until a test connects one."""
    return create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The OTP service's clock: a new code may be asked for once a minute."""
    return Clock().install(monkeypatch, otp)


def _sessions(store: Store, user_id: str) -> list[SsoSession]:
    with store() as db:
        return list(db.scalars(select(SsoSession).where(SsoSession.user_id == user_id)))


def _status(store: Store, user_id: str) -> str:
    with store() as db:
        user = db.get(User, user_id)
        assert user is not None
        return user.status


def _audit(store: Store, event: str) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [(row.user_id, row.actor, dict(row.detail)) for row in rows]


def _refresh(front: Front, world: World, refresh_token: str):
    return front.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(world.rp.client.client_id, world.rp.client_secret or ""),
    )


def _csrf(console: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', console.get(path).text)
    assert match, path
    return match.group(1)


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture(params=["console", "bearer"])
def caller(request: pytest.FixtureRequest, admin_world, app) -> Iterator[Caller]:
    """One way in per test: the console session, or the admin client's bearer token."""
    with callers(admin_world, app) as (console, bearer):
        yield console if request.param == "console" else bearer


def _found(caller: Caller, **params: Any) -> list[str]:
    answer = caller.get("/users", **params)
    assert answer.status_code == 200, answer.text
    conforms(caller.client, answer, "GET", "/users")
    return [user["name"] for user in answer.json()["users"]]


ZHANG = "张三 Zhang San"
WANG = "100% Wang"


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("zhang san", [ZHANG]),
        ("13800138000", [ZHANG]),  # as typed, stored +86...
        (PHONE, [ZHANG]),
        ("ZhangSan@Example.COM", [ZHANG]),
        ("ZHANGSAN_a", [ZHANG]),  # a WeCom userid, any case
        (f"{CORP_B}/ZS_B", [ZHANG]),
        ("%", [WANG]),  # literally, no wildcard
        ("nobody", []),
    ],
)
def test_the_api_finds_people_by_each_key(
    caller: Caller, store: Store, world: World, linked, query: str, names: list[str]
) -> None:
    assert world.user.name == ZHANG
    in_unit(store, users.create_user, WANG, "+8613700137000", "wang@example.net")
    assert _found(caller, q=query) == names


def test_the_api_pages(caller: Caller, store: Store, world: World, linked) -> None:
    in_unit(store, users.create_user, WANG, "+8613700137000", "wang@example.net")
    everyone = caller.get("/users", limit=1).json()
    assert [u["link_count"] for u in everyone["users"]] == [2]
    assert everyone["next_offset"] == 1
    rest = caller.get("/users", limit=1, offset=1).json()
    assert (len(rest["users"]), rest["next_offset"], rest["next_after"]) == (1, None, None)
    by_cursor = caller.get("/users", limit=1, after=everyone["next_after"]).json()
    assert by_cursor["users"] == rest["users"]
    assert (by_cursor["next_after"], by_cursor["next_offset"]) == (None, None)


def test_the_api_pages_by_cursor_each_person_once_while_people_are_added(
    caller: Caller, store: Store, world: World
) -> None:
    for number in range(5):
        in_unit(store, users.create_user, f"Api person {number}", f"+86137{number:08d}")
    seen: list[str] = []
    page = caller.get("/users", limit=2).json()
    for added in range(10):
        seen += [user["name"] for user in page["users"]]
        if page["next_after"] is None:
            break
        assert page["next_offset"] is None or page["next_offset"] == len(seen)
        if added < 2:
            in_unit(store, users.create_user, f"Added {added}", f"+86136{added:08d}")
        answer = caller.get("/users", limit=2, after=page["next_after"])
        conforms(caller.client, answer, "GET", "/users")
        page = answer.json()
        assert page["next_offset"] is None  # paging by cursor
    expected = [ZHANG, *(f"Api person {n}" for n in range(5)), "Added 0", "Added 1"]
    assert seen == expected


@pytest.mark.parametrize(
    "params",
    [
        {"after": "garbage!"},
        {"after": "AAAA"},
        {"after": "1" * 17 + "_abc"},
        {"after": "1_" + "a" * 37},
        {"after": ""},
    ],
)
def test_the_api_refuses_a_forged_cursor(caller: Caller, params: dict[str, str]) -> None:
    answer = caller.get("/users", **params)
    assert (answer.status_code, answer.json().get("field")) == (422, "after")
    conforms(caller.client, answer, "GET", "/users")


def test_the_api_skips_an_offset_after_a_cursor(caller: Caller, store: Store, world: World) -> None:
    for number in range(3):
        in_unit(store, users.create_user, f"Skip {number}", f"+86137{number:08d}")
    after = caller.get("/users", limit=1).json()["next_after"]
    answer = caller.get("/users", limit=1, after=after, offset=1).json()
    assert [user["name"] for user in answer["users"]] == ["Skip 1"]
    assert answer["next_offset"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "5e1"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "100001"}, "offset"),
        ({"q": "x" * 201}, "q"),
        ({"query": "zhang"}, "query"),
    ],
)
def test_the_api_refuses_a_bad_search(caller: Caller, params: dict[str, str], field: str) -> None:
    answer = caller.get("/users", **params)
    assert (answer.status_code, answer.json().get("field")) == (422, field)
    conforms(caller.client, answer, "GET", "/users")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "deleted"}, "status"),
        ({"status": True}, "status"),
        ({"status": None}, "status"),
        ({}, "status"),
        ({"status": "active", "name": "x"}, "name"),
    ],
)
def test_the_api_refuses_a_bad_patch(
    caller: Caller, app, world: World, body: dict[str, Any], field: str
) -> None:
    answer = caller.call("PATCH", f"/users/{world.user.id}", json=body)
    assert (answer.status_code, answer.json().get("field")) == (422, field)
    conforms(caller.client, answer, "PATCH", "/users/{user_id}")
    assert _status(app.state.store, world.user.id) == "active"


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"data": {"status": "active"}}, 415),  # a form, not JSON
        ({"content": b"{status", "headers": {"content-type": "application/json"}}, 400),
    ],
)
def test_the_api_refuses_a_patch_that_is_no_json_object(
    caller: Caller, app, world: World, options: dict[str, Any], status: int
) -> None:
    answer = caller.call("PATCH", f"/users/{world.user.id}", **options)
    assert answer.status_code == status
    assert _status(app.state.store, world.user.id) == "active"


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/users/{nobody}", "/users/{user_id}"),
        ("PATCH", "/users/{nobody}", "/users/{user_id}"),
        ("DELETE", "/users/{nobody}/sessions", "/users/{user_id}/sessions"),
        ("DELETE", "/users/{nobody}/links/{link}", "/users/{user_id}/links/{link_id}"),
        ("DELETE", "/users/{user}/links/{nobody}", "/users/{user_id}/links/{link_id}"),
    ],
)
def test_the_api_does_not_find_unknown_ids(
    caller: Caller, app, world: World, linked, method: str, path: str, template: str
) -> None:
    path = path.format(nobody=NOBODY, link=linked[0].id, user=world.user.id)
    options = {"json": {"status": "disabled"}} if method == "PATCH" else {}
    answer = caller.call(method, path, **options)
    assert answer.status_code == 404, answer.text
    conforms(caller.client, answer, method, template)
    assert _status(app.state.store, world.user.id) == "active"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/{user}%2Fx"),
        ("PATCH", "/users/a%2Fb"),
        ("DELETE", "/users/{user}/links/a%2Fb"),
    ],
)
def test_an_id_with_a_slash_names_nobody(
    caller: Caller, world: World, method: str, path: str
) -> None:
    answer = caller.call(method, path.format(user=world.user.id), json={"status": "active"})
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


@pytest.mark.parametrize("below", ["sessions", f"links/{NOBODY}"])
def test_a_wrong_method_below_a_user_is_a_405(caller: Caller, world: World, below: str) -> None:
    answer = caller.call("GET", f"/users/{world.user.id}/{below}")
    assert (answer.status_code, answer.headers["allow"]) == (405, "DELETE")


def test_disabling_signs_out_kills_refresh_and_refuses_login(
    caller: Caller, front: Front, world: World, store: Store, clock: Clock
) -> None:
    tokens = front.tokens(world)  # signs in: a session, a refresh token
    assert _sessions(store, world.user.id)
    clock.advance(seconds=61)
    assert front.send_code().status_code == 303  # asked for while still active: the code step
    code = front.last_code()

    answer = caller.call("PATCH", f"/users/{world.user.id}", json={"status": "disabled"})

    assert answer.status_code == 200, answer.text
    conforms(caller.client, answer, "PATCH", "/users/{user_id}")
    assert (answer.json()["status"], answer.json()["sessions"]) == ("disabled", [])
    assert _sessions(store, world.user.id) == []
    refreshed = _refresh(front, world, tokens["refresh_token"])
    assert (refreshed.status_code, refreshed.json()["error"]) == (400, "invalid_grant")
    refused = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": code}
    )
    assert (refused.status_code, refused.headers["location"]) == (
        303,
        "/login?step=code&problem=code_dead",  # back to the code step, refused
    )
    assert "iam_session=" not in refused.headers.get("set-cookie", "")
    assert _sessions(store, world.user.id) == []

    again = caller.call("PATCH", f"/users/{world.user.id}", json={"status": "active"})
    assert (again.status_code, again.json()["status"]) == (200, "active")
    assert [actor for _, actor, _ in _audit(store, "user.disabled")] == [caller.actor]
    assert [actor for _, actor, _ in _audit(store, "user.enabled")] == [caller.actor]


def test_the_api_shows_a_person_removes_a_link_and_ends_sessions(
    caller: Caller, front: Front, world, linked, store: Store, clock: Clock
) -> None:
    link, kept = linked
    assert front.login().status_code == 303
    front.client.cookies.clear()  # a second browser: two sessions
    clock.advance(seconds=61)
    assert front.login().status_code == 303

    answer = caller.get(f"/users/{world.user.id}")
    assert answer.status_code == 200, answer.text
    conforms(caller.client, answer, "GET", "/users/{user_id}")
    body = answer.json()
    assert (body["id"], body["phone"], body["status"]) == (world.user.id, PHONE, "active")
    assert [x["id"] for x in body["links"]] == [link.id, kept.id]
    assert [x["metadata"] for x in body["links"]] == [META_A, META_B]
    assert body["link_count"] == 2
    assert [(s["amr"], s["context"], s["ip"]) for s in body["sessions"]] == [
        (["sms"], None, "testclient")
    ] * 2
    assert body["created_at"].endswith("Z") and "." not in body["created_at"]  # RFC 3339

    path = f"/users/{world.user.id}/links/{link.id}"
    answer = caller.call("DELETE", path)
    assert (answer.status_code, answer.content) == (204, b"")
    conforms(caller.client, answer, "DELETE", "/users/{user_id}/links/{link_id}")
    assert caller.call("DELETE", path).status_code == 404

    answer = caller.call("DELETE", f"/users/{world.user.id}/sessions")
    assert (answer.status_code, answer.json()) == (200, {"ended": 2})
    conforms(caller.client, answer, "DELETE", "/users/{user_id}/sessions")
    assert _sessions(store, world.user.id) == []
    assert [x.id for x in in_unit(store, users.user_detail, world.user.id).links] == [kept.id]
    assert [actor for _, actor, _ in _audit(store, "link.removed")] == [caller.actor]
    ended = _audit(store, "user.sessions_ended")
    assert [(actor, detail) for _, actor, detail in ended] == [(caller.actor, {"count": 2})]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users"),
        ("GET", f"/users/{NOBODY}"),
        ("PATCH", f"/users/{NOBODY}"),
        ("DELETE", f"/users/{NOBODY}/links/{NOBODY}"),
        ("DELETE", f"/users/{NOBODY}/sessions"),
    ],
)
def test_the_api_needs_a_caller(app, method: str, path: str) -> None:
    with admin_console(app) as anonymous:
        answer = anonymous.request(method, f"/admin/api{path}", json={"status": "disabled"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_the_api_is_described(app) -> None:
    with admin_console(app) as local:
        document = local.get("/admin/api/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"User", "UserDetail", "UserPage", "Link", "Session", "UserPatch"} <= set(schemas)
    assert schemas["UserPatch"]["additionalProperties"] is False
    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        if path.startswith("/users")
        for method, operation in item.items()
        if method != "parameters"
    ]
    assert len(operations) == 5
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in operations:
        responses = operation["responses"]
        assert responses["401"]["content"]["application/json"]["schema"] == error, path
        if "{user_id}" in path:
            assert responses["404"]["content"]["application/json"]["schema"] == error, path
        if method in ("get", "patch") and path == "/users" or method == "patch":
            assert responses["422"]["content"]["application/json"]["schema"] == error, path
        for parameter in operation.get("parameters", []) + document["paths"][path].get(
            "parameters", []
        ):
            assert "schema" in parameter, (path, parameter)


# --- the console -----------------------------------------------------------------------------


def test_the_console_searches(admin_world, app, store: Store, world: World, linked) -> None:
    in_unit(store, users.create_user, "100% Wang", "+8613700137000")
    console = admin_world.console
    page = console.get("/admin/users", params={"q": "zhangsan_a"})
    assert page.status_code == 200
    assert f'href="/admin/users/{world.user.id}"' in page.text
    row = re.search(r"<tbody>(.*?)</tbody>", page.text, re.S)
    assert row
    cells = [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells[1:] == [PHONE, "zhangsan@example.com", "Active", "2"]
    assert 'value="zhangsan_a"' in page.text
    assert "100% Wang" in console.get("/admin/users", params={"q": "%"}).text
    assert "Zhang" not in console.get("/admin/users", params={"q": "%"}).text
    assert "No user matches." in console.get("/admin/users", params={"q": "nobody"}).text
    everyone = console.get("/admin/users")
    assert "Zhang San" in everyone.text and "100% Wang" in everyone.text
    too_long = console.get("/admin/users", params={"q": "x" * 201})
    assert too_long.status_code == 400
    chinese = console.get("/admin/users", params={"lang": "zh-CN"})
    assert "绑定身份数" in chinese.text
    with admin_console(app) as bare:  # the bearer token is for the API, not the pages
        answer = bare.get("/admin/users", headers=admin_world.bearer)
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


def test_the_console_shows_a_person_ends_sessions_disables_and_enables(
    admin_world, front: Front, world: World, linked, store: Store, clock: Clock
) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    assert front.login().status_code == 303
    page = console.get(path)
    assert page.status_code == 200
    text = html.unescape(page.text)
    for shown in [
        "Subsidiary A",
        f"{CORP_A}/ZhangSan_A",
        "Sales, East region",
        "Sales manager",
        "After-sales consultant",
        "testclient",  # the session's IP
        "End all sessions",
        "Disable",
    ]:
        assert shown in text, shown
    csrf = _csrf(console, path)

    assert console.post(f"{path}/sessions/end", data={}).status_code == 403
    assert len(_sessions(store, world.user.id)) == 1
    ended = console.post(f"{path}/sessions/end", data={"csrf_token": csrf})
    assert (ended.status_code, ended.headers["location"]) == (303, f"{path}?done=ended&n=1")
    page = console.get(ended.headers["location"]).text
    assert "Sessions ended: 1." in page and "No live session." in page
    assert _sessions(store, world.user.id) == []

    clock.advance(seconds=61)
    assert front.login().status_code == 303
    assert console.post(f"{path}/status", data={"status": "disabled"}).status_code == 403
    assert _status(store, world.user.id) == "active"
    bad = console.post(f"{path}/status", data={"csrf_token": csrf, "status": "gone"})
    assert bad.status_code == 400
    done = console.post(f"{path}/status", data={"csrf_token": csrf, "status": "disabled"})
    assert (done.status_code, done.headers["location"]) == (303, f"{path}?done=disabled")
    assert _status(store, world.user.id) == "disabled"
    assert _sessions(store, world.user.id) == []
    shown = console.get(done.headers["location"]).text
    assert "The user is disabled" in shown and "Enable" in shown

    done = console.post(f"{path}/status", data={"csrf_token": csrf, "status": "active"})
    assert (done.status_code, done.headers["location"]) == (303, f"{path}?done=enabled")
    assert _status(store, world.user.id) == "active"
    for event in ("user.sessions_ended", "user.disabled", "user.enabled"):
        assert [actor for _, actor, _ in _audit(store, event)] == ["admin:root"], event


def test_the_console_removes_a_link_after_asking(
    admin_world, world: World, linked, store: Store
) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    link = linked[0]
    ask = console.get(f"{path}/links/{link.id}/remove")
    assert ask.status_code == 200
    assert f"Remove the link {CORP_A}/ZhangSan_A from" in html.unescape(ask.text)
    # asking changes nothing
    assert len(in_unit(store, users.user_detail, world.user.id).links) == 2

    action = f"{path}/links/{link.id}/remove"
    assert console.post(action, data={}).status_code == 403
    removed = console.post(action, data={"csrf_token": _csrf(console, path)})
    assert (removed.status_code, removed.headers["location"]) == (
        303,
        f"{path}?done=link_removed",
    )
    assert [x.id for x in in_unit(store, users.user_detail, world.user.id).links] == [linked[1].id]
    assert "The link is removed." in console.get(removed.headers["location"]).text
    gone = console.get(f"{path}/links/{link.id}/remove")
    assert "That link no longer exists." in gone.text
    again = console.post(action, data={"csrf_token": _csrf(console, path)})
    assert again.status_code == 404
    assert console.get(f"/admin/users/{NOBODY}").status_code == 404
    assert _audit(store, "link.removed")[0][1] == "admin:root"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/users"),
        ("GET", "/admin/users/{user}"),
        ("POST", "/admin/users/{user}/sessions/end"),
    ],
)
def test_the_console_needs_a_sign_in(app, world: World, method: str, path: str) -> None:
    with admin_console(app) as anonymous:
        options = {"data": {}} if method == "POST" else {}
        answer = anonymous.request(method, path.format(user=world.user.id), **options)
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


# --- the console: a list with totals, adding and editing a person ------------------------------


def _users(store: Store) -> list[tuple[str, str | None, str | None]]:
    with store() as db:
        rows = db.scalars(select(User).order_by(User.created_at, User.id))
        return [(user.name, user.phone, user.email) for user in rows]


def _text(page) -> str:
    return html.unescape(re.sub(r"\s+", " ", page.text))


def _page_link(page, rel: str) -> str:
    [url] = re.findall(rf'href="([^"]+)" rel="{rel}"', page.text)
    return "/admin/users" + html.unescape(url)


def test_the_console_pages_with_totals_and_keeps_the_search(
    admin_world, store: Store, world: World
) -> None:
    for number in range(103):
        in_unit(store, users.create_user, f"Page person {number}", f"+86137{number:08d}")
    console = admin_world.console
    first = console.get("/admin/users", params={"q": "page person"})
    assert "1–50 of 103" in _text(first)
    assert first.text.count('<a href="/admin/users/') == 50
    assert 'rel="prev"' not in first.text
    next_url = _page_link(first, "next")
    assert next_url.startswith("/admin/users?q=page+person&after=")
    assert next_url.endswith("&n=51")
    second = console.get(next_url)
    assert "51–100 of 103" in _text(second)
    assert "Page person 50<" in second.text
    third = console.get(_page_link(second, "next"))
    assert "101–103 of 103" in _text(third)
    assert third.text.count('<a href="/admin/users/') == 3
    assert 'rel="next"' not in third.text
    back = console.get(_page_link(third, "prev"))
    assert "51–100 of 103" in _text(back)
    assert _names_shown(back) == _names_shown(second)
    start = console.get(_page_link(back, "prev"))
    assert "1–50 of 103" in _text(start)
    assert _names_shown(start) == _names_shown(first)
    assert 'rel="prev"' not in start.text
    everyone = console.get("/admin/users")
    assert "1–50 of 104" in _text(everyone)  # and 张三
    assert "No user matches." in console.get("/admin/users", params={"q": "nobody"}).text
    chinese = console.get("/admin/users", params={"q": "page person", "lang": "zh-CN"})
    assert "第 1–50 个，共 103 个" in _text(chinese)


def _names_shown(page) -> list[str]:
    return re.findall(r'<a href="/admin/users/[^"]+">([^<]+)</a>', page.text)


def test_the_console_pages_back_to_a_whole_first_page(
    admin_world, store: Store, world: World
) -> None:
    """People added before the first page meanwhile: "previous" from a page that starts less
    than a page in shows the first page, whole, numbered from 1."""
    for number in range(60):
        in_unit(store, users.create_user, f"Early {number}", f"+86137{number:08d}")
    console = admin_world.console
    rows = _names_shown(console.get("/admin/users"))
    second = console.get(_page_link(console.get("/admin/users"), "next"))
    earlier = _page_link(second, "prev").replace("&n=1", "&n=7")  # as if 6 rows were added
    back = console.get(earlier)
    assert "1–50 of 61" in _text(back)
    assert _names_shown(back) == rows


def test_the_console_says_about_or_more_than_for_big_totals(
    admin_world, store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(3):
        in_unit(store, users.create_user, f"Many {number}", f"+86137{number:08d}")
    monkeypatch.setattr(users, "COUNT_CAP", 2)
    console = admin_world.console
    assert "1–3 of more than 2" in _text(console.get("/admin/users", params={"q": "many"}))
    chinese = console.get("/admin/users", params={"q": "many", "lang": "zh-CN"})
    assert "第 1–3 个，共超过 2 个" in _text(chinese)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE users")
        assert "1–4 of about 4" in _text(console.get("/admin/users", params={"lang": "en"}))
        chinese = console.get("/admin/users", params={"lang": "zh-CN"})
        assert "第 1–4 个，共约 4 个" in _text(chinese)


@pytest.mark.parametrize(
    "params",
    [
        {"after": "garbage!"},
        {"after": "AAAA"},
        {"before": "x" * 101},
        {"before": "MjAyNi0xMi0wNnxub3BlCg"},
        {"after": "", "before": "%%"},
    ],
)
def test_the_console_refuses_a_forged_page_link(
    admin_world, world: World, params: dict[str, str]
) -> None:
    page = admin_world.console.get("/admin/users", params={"q": "zhang", **params})
    assert page.status_code == 400
    assert "That page link is not valid" in _text(page)
    assert 'value="zhang"' in page.text  # the search box keeps the search
    assert '<a href="/admin/users?q=zhang">Go to the first page</a>' in page.text


def test_the_console_adds_a_person(admin_world, store: Store, world: World) -> None:
    console = admin_world.console
    form = console.get("/admin/users/new")
    assert form.status_code == 200
    assert 'action="/admin/users"' in form.text
    csrf = _csrf(console, "/admin/users/new")

    added = console.post(
        "/admin/users",
        data={"csrf_token": csrf, "name": " 王五 ", "phone": "133 3333 3333", "email": ""},
    )

    assert added.status_code == 303, added.text
    user_id = added.headers["location"].removeprefix("/admin/users/").split("?")[0]
    assert added.headers["location"] == f"/admin/users/{user_id}?done=created"
    assert ("王五", "+8613333333333", None) in _users(store)
    assert "The user is added." in console.get(added.headers["location"]).text
    assert _audit(store, "user.created")[-1] == (user_id, "admin:root", {})


@pytest.mark.parametrize(
    ("fields", "status", "marked", "said"),
    [
        ({"name": ""}, 422, ["name"], "Enter a name of 1 to 200 characters."),
        ({"phone": ""}, 422, ["phone"], "Enter a mainland mobile number"),
        ({"phone": "12345"}, 422, ["phone"], "Enter a mainland mobile number"),
        ({"email": "not-an-address"}, 422, ["email"], "Enter an email address"),
        ({"name": "", "email": "x@"}, 422, ["name", "email"], "Check the marked fields."),
        ({"phone": "138-0013-8000"}, 409, ["phone"], "already belongs to another user"),
    ],
)
def test_the_console_refuses_a_new_person_and_says_why(
    admin_world,
    store: Store,
    world: World,
    fields: dict[str, str],
    status: int,
    marked: list[str],
    said: str,
) -> None:
    console = admin_world.console
    before = _users(store)
    data = {"name": "王五", "phone": "13333333333", "email": "wang@example.com", **fields}
    refused = console.post(
        "/admin/users", data={"csrf_token": _csrf(console, "/admin/users/new"), **data}
    )
    assert refused.status_code == status
    assert said in _text(refused)
    assert re.findall(r'id="(name|phone|email)-error"', refused.text) == marked
    assert f'value="{html.escape(data["name"])}"' in refused.text  # what was typed stays
    if status == 409:
        assert f'href="/admin/users/{world.user.id}"' in refused.text  # who has that phone
    assert _users(store) == before
    assert len(_audit(store, "user.created")) == len(before)  # the world's person only
    chinese = console.post(
        "/admin/users?lang=zh-CN",
        data={"csrf_token": _csrf(console, "/admin/users/new"), **data},
        headers={"accept-language": "zh-CN"},
    )
    assert not re.search(r"admin\.\w", chinese.text.replace("/admin.css", ""))


def test_the_console_refuses_a_form_without_its_token(admin_world, store: Store, world) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    before = _users(store)
    data = {"name": "X", "phone": "13333333333", "email": ""}
    for action in ("/admin/users", f"{path}/edit"):
        assert console.post(action, data=data).status_code == 403
    assert (
        console.post(f"{path}/links", data={"corp_id": CORP_A, "userid": "lisi"}).status_code == 403
    )
    assert _users(store) == before
    assert in_unit(store, users.user_detail, world.user.id).links == ()


def test_the_console_edits_a_person(admin_world, store: Store, world: World) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    page = console.get(path)
    assert f'action="{path}/edit"' in page.text and 'value="zhangsan@example.com"' in page.text
    csrf = _csrf(console, path)

    saved = console.post(
        f"{path}/edit",
        data={"csrf_token": csrf, "name": "张三", "phone": "13300133000", "email": ""},
    )

    assert (saved.status_code, saved.headers["location"]) == (303, f"{path}?done=saved")
    assert ("张三", "+8613300133000", None) in _users(store)
    assert "The changes are saved." in console.get(saved.headers["location"]).text
    assert _audit(store, "user.updated") == [
        (world.user.id, "admin:root", {"fields": ["name", "phone", "email"]})
    ]
    same = console.post(
        f"{path}/edit",
        data={"csrf_token": csrf, "name": "张三", "phone": "+8613300133000", "email": ""},
    )
    assert same.headers["location"] == f"{path}?done=unchanged"
    assert len(_audit(store, "user.updated")) == 1


@pytest.mark.parametrize(
    ("fields", "status", "marked"),
    [
        ({"name": "  "}, 422, ["name"]),
        ({"phone": "0"}, 422, ["phone"]),
        ({"email": "a@b"}, 422, ["email"]),
        ({"phone": "13700137000"}, 409, ["phone"]),  # 王's
    ],
)
def test_the_console_refuses_an_edit_and_changes_nothing(
    admin_world,
    store: Store,
    world: World,
    fields: dict[str, str],
    status: int,
    marked: list[str],
) -> None:
    wang = in_unit(store, users.create_user, "王", "+8613700137000")
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    before = _users(store)
    data = {"name": "New", "phone": PHONE, "email": "new@example.com", **fields}
    refused = console.post(f"{path}/edit", data={"csrf_token": _csrf(console, path), **data})
    assert refused.status_code == status
    assert re.findall(r'id="(name|phone|email)-error"', refused.text) == marked
    assert '<details class="card edit" open>' in refused.text  # the form stays open
    if status == 409:
        assert f'href="/admin/users/{wang.id}"' in refused.text
    assert _users(store) == before
    assert _audit(store, "user.updated") == []


def test_the_console_does_not_find_an_unknown_person(admin_world, store: Store) -> None:
    console, path = admin_world.console, f"/admin/users/{NOBODY}"
    csrf = _csrf(console, "/admin/users/new")
    for action, data in [
        (f"{path}/edit", {"name": "X", "phone": "", "email": ""}),
        (f"{path}/links", {"corp_id": CORP_A, "userid": "lisi"}),
        (f"{path}/sessions/{NOBODY}/end", {}),
        (f"{path}/status", {"status": "disabled"}),
    ]:
        answer = console.post(action, data={"csrf_token": csrf, **data})
        assert answer.status_code == 404, action
        assert "There is no such user." in answer.text
    for page in (path, f"{path}/disable", f"{path}/sessions/end", f"{path}/sessions/{NOBODY}/end"):
        assert console.get(page).status_code == 404, page
    assert _users(store) == []


# --- the console: linking a WeCom member by hand ------------------------------------------------


def _links(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(IdentityLink).order_by(IdentityLink.created_at))
        return [(link.user_id, link.provider_user_id, dict(link.link_metadata)) for link in rows]


def _link(console: TestClient, user_id: str, corp_id: str, userid: str):
    path = f"/admin/users/{user_id}"
    data = {"csrf_token": _csrf(console, path), "corp_id": corp_id, "userid": userid}
    return console.post(f"{path}/links", data=data)


def test_the_console_links_a_member_wecom_knows(
    admin_world, store: Store, world: World, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    page = console.get(path)
    assert f'<option value="{CORP_A}">子公司A ({CORP_A})</option>' in page.text

    linked = _link(console, world.user.id, CORP_A, "LiSi")  # userids are case-insensitive

    assert (linked.status_code, linked.headers["location"]) == (303, f"{path}?done=linked")
    [(owner, subject, metadata)] = _links(store)
    assert (owner, subject) == (world.user.id, f"{CORP_A}/lisi")  # as WeCom spells it
    assert (metadata["corp_name"], metadata["name"], metadata["position"]) == (
        "子公司A",
        "李四",
        "销售代表",
    )
    assert "The WeCom member is linked." in console.get(linked.headers["location"]).text
    assert _audit(store, "link.created") == [
        (world.user.id, "admin:root", {"link": f"{CORP_A}/lisi"})
    ]


@pytest.mark.parametrize(
    ("corp_id", "userid", "status", "said"),
    [
        (CORP_A, "nobody", 422, "WeCom has no member nobody in this corporation"),
        (CORP_A, "zhaoliu", 422, "WeCom has no member zhaoliu"),  # disabled in WeCom
        (CORP_A, "two words", 422, "Enter the member's WeCom userid"),
        (CORP_A, "", 422, "Enter the member's WeCom userid"),
        (CORP_B, "zs_b", 422, "Choose a connected, enabled corporation."),  # not connected
        ("", "lisi", 422, "Choose a connected, enabled corporation."),
    ],
)
def test_the_console_refuses_a_member_wecom_does_not_vouch_for(
    admin_world,
    store: Store,
    world: World,
    simulator: WeComSimulator,
    corp_id: str,
    userid: str,
    status: int,
    said: str,
) -> None:
    connect_corp(store, simulator, CORP_A)
    refused = _link(admin_world.console, world.user.id, corp_id, userid)
    assert refused.status_code == status
    assert said in _text(refused)
    assert f'value="{html.escape(userid)}"' in refused.text  # typed stays
    assert _links(store) == []
    assert _audit(store, "link.created") == []


def test_the_console_links_nothing_when_wecom_cannot_say(
    admin_world, store: Store, world: World, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    simulator.fail_next("user_get", 60011, "no privilege to access/modify contact")
    refused = _link(admin_world.console, world.user.id, CORP_A, "lisi")
    assert refused.status_code == 502
    assert "WeCom refused to look up the member (errcode 60011)" in _text(refused)
    simulator.fail_http("user_get", 502, times=5)  # every try the client makes
    down = _link(admin_world.console, world.user.id, CORP_A, "lisi")
    assert down.status_code == 503
    assert "WeCom could not be reached" in _text(down)
    chinese = admin_world.console.get(f"/admin/users/{world.user.id}", params={"lang": "zh-CN"})
    assert chinese.status_code == 200
    assert _links(store) == []


def test_the_console_refuses_a_member_linked_already(
    admin_world, store: Store, world: World, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    console = admin_world.console
    wang = in_unit(store, users.create_user, "王", "+8613700137000")
    assert _link(console, world.user.id, CORP_A, "lisi").status_code == 303

    elsewhere = _link(console, wang.id, CORP_A, "LISI")
    assert elsewhere.status_code == 409
    assert "already linked to another user" in _text(elsewhere)
    assert f'href="/admin/users/{world.user.id}"' in elsewhere.text
    here = _link(console, world.user.id, CORP_A, "lisi")
    assert here.status_code == 409
    assert "already linked to this user" in _text(here)
    assert [owner for owner, _, _ in _links(store)] == [world.user.id]
    assert len(_audit(store, "link.created")) == 1


# --- the console: asking before anything destructive ----------------------------------------------


def _danger_form(page_text: str) -> tuple[str, dict[str, str]]:
    """The confirmation's form: where its red button posts, and its hidden fields."""
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page_text, re.S)
    assert form, page_text
    assert 'class="danger"' in form.group(2)
    fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form.group(2)))
    return form.group(1), fields


def test_the_console_ends_one_session_after_asking(
    admin_world, front: Front, world: World, store: Store, clock: Clock
) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    assert front.login().status_code == 303
    front.client.cookies.clear()  # a second browser
    clock.advance(seconds=61)
    assert front.login().status_code == 303
    first, second = (sso.id for sso in _sessions(store, world.user.id))
    assert f'href="{path}/sessions/{first}/end"' in console.get(path).text

    ask = console.get(f"{path}/sessions/{first}/end")
    assert ask.status_code == 200
    assert "End this session of 张三 Zhang San (from testclient)?" in _text(ask)
    action, fields = _danger_form(ask.text)
    assert action == f"{path}/sessions/{first}/end"
    assert len(_sessions(store, world.user.id)) == 2  # asking changes nothing

    assert console.post(action, data={}).status_code == 403
    ended = console.post(action, data=fields)
    assert (ended.status_code, ended.headers["location"]) == (303, f"{path}?done=session_ended")
    assert [sso.id for sso in _sessions(store, world.user.id)] == [second]
    assert _audit(store, "user.session_ended") == [(world.user.id, "admin:root", {"sid": first})]
    again = console.post(action, data=fields)
    assert again.status_code == 404
    assert "That session has already ended." in again.text
    assert console.get(f"{path}/sessions/{first}/end").status_code == 404


def test_the_console_asks_before_disabling_and_ending_every_session(
    admin_world, front: Front, world: World, store: Store
) -> None:
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    assert front.login().status_code == 303
    page = console.get(path).text
    assert f'class="button danger" href="{path}/disable"' in page
    assert f'class="button danger" href="{path}/sessions/end"' in page

    ask = console.get(f"{path}/disable")
    assert "Disable 张三 Zhang San?" in _text(ask)
    action, fields = _danger_form(ask.text)
    assert (action, fields["status"]) == (f"{path}/status", "disabled")
    ask_all = console.get(f"{path}/sessions/end")
    assert "End all 1 live sessions of 张三 Zhang San?" in _text(ask_all)
    assert _danger_form(ask_all.text)[0] == f"{path}/sessions/end"
    assert _status(store, world.user.id) == "active"
    assert len(_sessions(store, world.user.id)) == 1

    assert console.post(action, data=fields).headers["location"] == f"{path}?done=disabled"
    assert _status(store, world.user.id) == "disabled"
    disabled = console.get(path).text
    assert f"{path}/disable" not in disabled and 'name="status" value="active"' in disabled


@pytest.mark.parametrize("below", ["status", "links", "edit"])
def test_a_get_on_a_form_url_goes_to_the_persons_page(admin_world, world, below: str) -> None:
    path = f"/admin/users/{world.user.id}"
    answer = admin_world.console.get(f"{path}/{below}")
    assert (answer.status_code, answer.headers["location"]) == (303, path)


def test_the_console_shows_no_raw_key_in_chinese(
    admin_world, front: Front, world: World, linked, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    assert front.login().status_code == 303
    console, path = admin_world.console, f"/admin/users/{world.user.id}"
    [sid] = [sso.id for sso in _sessions(store, world.user.id)]
    pages = [
        "/admin/users",
        "/admin/users/new",
        path,
        f"{path}/disable",
        f"{path}/sessions/end",
        f"{path}/sessions/{sid}/end",
        f"{path}/links/{linked[0].id}/remove",
    ]
    for page in pages:
        answer = console.get(page, params={"lang": "zh-CN"})
        assert answer.status_code == 200, page
        assert not re.search(r"admin\.\w", answer.text.replace("/admin.css", "")), page
    assert "停用该用户" in console.get(f"{path}/disable", params={"lang": "zh-CN"}).text
