"""Admin: the audit trail page (names, events in words, times in the configured zone, the
person filter), its CSV export, and `GET /admin/api/audit`, with the console session and with
an admin bearer token; and `conforms`, which checks answers against the published OpenAPI
schemas (the users tests use it too)."""

from __future__ import annotations

import ast
import codecs
import csv
import dataclasses
import html
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest
import sqlalchemy
from httpx2 import Response
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.constants import ISSUER, RP_REDIRECT
from support.units import in_unit

from iam.admin import audit as audit_console
from iam.db.models import AuditEvent, SigningKey
from iam.db.store import Store
from iam.i18n import LANGUAGES, load_texts
from iam.services import audit, clients, corps, users
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

T0 = datetime(2026, 5, 1, 8, 0, 0)
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


# --- the schema check ------------------------------------------------------------------------


def schema_errors(value: Any, schema: dict[str, Any], document: dict[str, Any], at: str = "$"):
    """What in `value` breaks `schema` (the JSON Schema keywords our document uses)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        yield from schema_errors(value, document["components"]["schemas"][name], document, at)
        return
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        is_bool = isinstance(value, bool)
        if not any(
            isinstance(value, _TYPES[name]) and (not is_bool or name == "boolean") for name in names
        ):
            yield f"{at}: {value!r} is not {names}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{at}: {value!r} not in {schema['enum']}"
    if isinstance(value, str):
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            yield f"{at}: {value!r} is not a date-time"
        if schema.get("format") == "uuid" and not _UUID.match(value):
            yield f"{at}: {value!r} is not a uuid"
        if len(value) > schema.get("maxLength", len(value)):
            yield f"{at}: too long"
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        yield f"{at}: {value} out of bounds"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                yield f"{at}: {name} is missing"
        if schema.get("additionalProperties") is False:
            for name in set(value) - set(properties):
                yield f"{at}: {name} is not described"
        for name, item in value.items():
            if name in properties:
                yield from schema_errors(item, properties[name], document, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from schema_errors(item, schema["items"], document, f"{at}[{index}]")


def conforms(client: TestClient, answer: Response, method: str, path: str) -> None:
    """`answer` is one the API description promises for `method path` (relative to
    /admin/api), with a body of the promised schema."""
    document = client.get("/admin/api/openapi.json").json()
    operation = document["paths"][path][method.lower()]
    status = str(answer.status_code)
    assert status in operation["responses"], (method, path, status, answer.text)
    declared = operation["responses"][status]
    if "content" not in declared:
        assert answer.content == b"", answer.text
        return
    assert answer.headers["content-type"].split(";")[0] == "application/json"
    schema = declared["content"]["application/json"]["schema"]
    assert list(schema_errors(answer.json(), schema, document)) == []


# --- who calls -------------------------------------------------------------------------------


class Caller:
    """An API caller: the signed-in console, or a cookie-less client with the bearer token."""

    def __init__(self, client: TestClient, headers: dict[str, str], actor: str) -> None:
        self.client = client
        self.headers = headers
        self.actor = actor

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(f"/admin/api{path}", params=params, headers=self.headers)

    def call(self, method: str, path: str, **options: Any) -> Response:
        headers = {**self.headers, **options.pop("headers", {})}
        return self.client.request(method, f"/admin/api{path}", headers=headers, **options)


@contextmanager
def callers(admin_world: AdminWorld, app) -> Iterator[list[Caller]]:
    """Both ways in: the admin's console session (actor admin:root), and the admin client's
    bearer token from a browser without that cookie (actor client:<client_id>)."""
    client_id = jwt.decode(admin_world.token, options={"verify_signature": False})["client_id"]
    with admin_console(app) as bare:
        yield [
            Caller(admin_world.console, {}, "admin:root"),
            Caller(bare, admin_world.bearer, f"client:{client_id}"),
        ]


# --- the trail -------------------------------------------------------------------------------


def _seed(store: Store, count: int = 65) -> None:
    with store() as db:
        for index in range(count):
            db.add(
                AuditEvent(
                    occurred_at=T0 + timedelta(minutes=index),
                    event="login.succeeded" if index % 3 else "token.issued",
                    user_id="user-a" if index % 2 else "user-b",
                    client_id="crm" if index % 5 == 0 else None,
                    ip="198.51.100.7",
                    detail={"n": index, "名": "张三"},
                )
            )
        db.commit()


def _ns(answer: Response) -> list[int]:
    return [event["detail"]["n"] for event in answer.json()["events"] if "n" in event["detail"]]


def test_the_api_pages_newest_first_and_filters(admin_world: AdminWorld, app, store) -> None:
    _seed(store)
    with callers(admin_world, app) as both:
        for caller in both:
            seen: list[int] = []
            answer = caller.get("/audit", user_id="user-a", limit=20)
            pages = 0
            while True:
                assert answer.status_code == 200, answer.text
                conforms(caller.client, answer, "GET", "/audit")
                seen += _ns(answer)
                pages += 1
                if answer.json()["next"] is None:
                    break
                cursor = answer.json()["next"]
                answer = caller.get("/audit", user_id="user-a", limit=20, before=cursor)
            assert (seen, pages) == ([n for n in range(64, -1, -1) if n % 2], 2)

            answer = caller.get(
                "/audit",
                event="login.",
                client_id="crm",
                since="2026-05-01T08:10:00Z",
                until="2026-05-01T10:40:00+02:00",  # 08:40 UTC
            )
            assert answer.status_code == 200, answer.text
            assert _ns(answer) == [n for n in range(39, 9, -1) if n % 5 == 0 and n % 3]
            event = answer.json()["events"][0]
            assert event["occurred_at"] == "2026-05-01T08:35:00Z"
            assert (event["event"], event["user_id"], event["client_id"], event["ip"]) == (
                "login.succeeded",
                "user-a",
                "crm",
                "198.51.100.7",
            )
            [latest] = caller.get("/audit", event="token.issued", limit=1).json()["events"]
            assert latest["detail"] == {"n": 63, "名": "张三"}


BAD_FILTERS = [
    ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": ""}, "limit"),
    ({"before": "0"}, "before"),
    ({"before": str(2**63)}, "before"),
    ({"before": "1e3"}, "before"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"since": ""}, "since"),
    ({"user_id": "u" * 37}, "user_id"),
    ({"client_id": "c" * 65}, "client_id"),
    ({"event": "e" * 65}, "event"),
    ({"actor": "admin:root"}, "actor"),
]


def test_the_api_refuses_bad_filters(admin_world: AdminWorld, app) -> None:
    with callers(admin_world, app) as both:
        for caller in both:
            for params, field in BAD_FILTERS:
                answer = caller.get("/audit", **params)
                assert (answer.status_code, answer.json().get("field")) == (422, field), params
                conforms(caller.client, answer, "GET", "/audit")
            # the ends of the calendar are instants too: clamped, not refused
            edges = {"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-01:00"}
            assert caller.get("/audit", **edges).status_code == 200


def test_the_api_needs_a_caller(app) -> None:
    with admin_console(app) as anonymous:
        answer = anonymous.get("/admin/api/audit")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        conforms(anonymous, answer, "GET", "/audit")
        wrong = anonymous.get("/admin/api/audit", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_the_admins_own_actions_are_in_the_trail(admin_world: AdminWorld, app, store) -> None:
    person = in_unit(store, users.create_user, "王五", "+8613700137000")
    with callers(admin_world, app) as both:
        for caller, status in zip(both, ["disabled", "active"], strict=True):
            answer = caller.call("PATCH", f"/users/{person.id}", json={"status": status})
            assert answer.status_code == 200, answer.text
        events = both[1].get("/audit", user_id=person.id, event="user.").json()["events"]
    assert [(e["event"], e["actor"], e["ip"]) for e in events] == [
        ("user.enabled", both[1].actor, "127.0.0.1"),
        ("user.disabled", "admin:root", "127.0.0.1"),
        ("user.created", "cli", None),
    ]


# --- the page --------------------------------------------------------------------------------


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr>\s*<td class=\"when\".*?</tr>", page, re.S)


def _text(row: str) -> str:
    """A row as read: tags gone, entities read, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())


def _older(page: str) -> str:
    older = re.search(r'<a href="(\?[^"]+)" rel="next">', page)
    assert older, page
    return html.unescape(older.group(1))


def test_the_page_shows_rows_in_words_pages_and_filters(
    admin_world: AdminWorld, store: Store
) -> None:
    _seed(store, 130)
    console = admin_world.console
    page = console.get("/admin/audit")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert len(rows) == 50
    # n=129: a token, at 10:09 UTC, shown in the console's zone (Asia/Shanghai by default)
    assert _text(rows[0]) == (
        "2026-05-01 18:09:00 Token issued token.issued Success user-a 198.51.100.7 n 129 名 张三"
    )
    assert "Signed in" in rows[1]
    assert '<time datetime="2026-05-01T18:09:00+08:00">' in rows[0]
    assert '<span class="outcome ok">Success</span>' in rows[0]
    assert "<dt>名</dt><dd>张三</dd>" in rows[0]  # fields, never a JSON blob
    assert not any("{" in _text(row) for row in rows)
    assert "Time (Asia/Shanghai)" in page.text
    assert re.search(r'<span class="zone"[^>]*>Times: Asia/Shanghai', page.text)
    for name in ("person", "client_id", "event", "since", "until"):
        assert f'name="{name}"' in page.text

    # the filters stay in the pagination links
    signins = {"event": "login.", "client_id": ""}
    page = console.get("/admin/audit", params=signins)
    assert len(_rows(page.text)) == 50
    older = _older(page.text)
    assert "event=login." in older
    second = console.get("/admin/audit" + older)
    logins = sum(1 for n in range(130) if n % 3)
    assert len(_rows(second.text)) == logins - 50
    assert all("login.succeeded" in row for row in _rows(second.text))
    assert 'rel="next"' not in second.text
    newest = re.search(r'<a href="(\?[^"]+)">Newest</a>', second.text)
    assert newest and "event=login." in html.unescape(newest.group(1))

    # times typed in the console's zone: 16:00 to 16:31 in Shanghai is 08:00 to 08:31 UTC
    page = console.get(
        "/admin/audit",
        params={
            "user_id": "user-b",
            "event": "token.issued",
            "client_id": "crm",
            "since": "2026-05-01T16:00",
            "until": "2026-05-01T16:31",
        },
    )
    assert page.status_code == 200
    shown = [int(n) for n in re.findall(r"<dt>n</dt><dd>(\d+)</dd>", page.text)]
    assert shown == [30, 0]
    assert 'value="2026-05-01T16:31"' in page.text  # the filters stay filled in
    assert '<option value="token.issued" selected>' in page.text
    empty = console.get("/admin/audit", params={"person": "nobody"})
    assert empty.status_code == 200 and "No event matches." in empty.text
    wrong = console.get("/admin/audit", params={"since": "soon"})
    assert wrong.status_code == 400 and "A filter is not valid" in wrong.text
    chinese = console.get("/admin/audit", params={"lang": "zh-CN"})
    assert "时间（Asia/Shanghai）" in chinese.text and "更早" in chinese.text
    assert "时间：Asia/Shanghai" in chinese.text
    [first] = _rows(chinese.text)[:1]
    assert "签发令牌" in first and '<span class="outcome ok">成功</span>' in first


def test_a_failure_is_said_in_words_and_colour(admin_world: AdminWorld, store: Store) -> None:
    with store() as db:
        audit.record(db.connection(), "admin.login_failed", outcome="failure", username="root")
        db.commit()
    for lang, words, field in (
        ("en", "Admin sign-in refused", "Admin"),
        ("zh-CN", "管理员登录被拒绝", "管理员"),
    ):
        page = admin_world.console.get("/admin/audit", params={"lang": lang})
        [row] = [row for row in _rows(page.text) if "admin.login_failed" in row]
        assert words in row
        assert '<span class="outcome failed">' in row
        assert f"<dt>{field}</dt><dd>root</dd>" in row


def test_rows_name_people_apps_and_corporations_with_a_bounded_number_of_queries(
    admin_world: AdminWorld, store: Store, box
) -> None:
    people = [
        in_unit(store, users.create_user, f"员工{index:02d}", f"+86139{index:08d}")
        for index in range(50)
    ]
    crm = in_unit(store, clients.create_client, "客户系统 CRM", [RP_REDIRECT]).client
    in_unit(store, corps.add_corp, box, "wwsubsidiary", "子公司A", 1000002, "s" * 43)
    console = admin_world.console

    def statements(params: dict[str, str]) -> tuple[int, str]:
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        sqlalchemy.event.listen(store.engine, "before_cursor_execute", count)
        try:
            page = console.get("/admin/audit", params=params)
        finally:
            sqlalchemy.event.remove(store.engine, "before_cursor_execute", count)
        assert page.status_code == 200
        return len(seen), page.text

    with store() as db:
        for person in people:
            audit.record(
                db.connection(),
                "login.succeeded",
                user_id=person.id,
                client_id=crm.client_id,
                corp_id="wwsubsidiary",
            )
        audit.record(db.connection(), "token.issued", user_id="ghost-user", client_id="gone-app")
        db.commit()
    few, page = statements({"user_id": people[0].id})
    many, page = statements({"event": "login.succeeded"})
    assert many == few <= 8  # one query per kind of name, never one per row
    rows = _rows(page)
    assert len(rows) == 50
    for person in people:
        link = f'<a href="/admin/users/{person.id}" title="{person.id}">{person.name}</a>'
        assert sum(link in row for row in rows) == 1
    assert all(f'<a href="/admin/apps/{crm.client_id}"' in row for row in rows)
    assert all(">客户系统 CRM</a>" in row for row in rows)
    assert all(
        '<a href="/admin/corps/wwsubsidiary" title="wwsubsidiary">子公司A</a>' in row
        for row in rows
    )
    # a deleted person or app: its id, not a link
    [gone] = _rows(console.get("/admin/audit", params={"user_id": "ghost-user"}).text)
    assert "ghost-user" in gone and "gone-app" in gone
    assert "/admin/users/ghost-user" not in gone and "/admin/apps/gone-app" not in gone
    assert "Deleted since" in gone


def test_the_person_filter_finds_people_by_name_or_phone(
    admin_world: AdminWorld, store: Store
) -> None:
    wangwu = in_unit(store, users.create_user, "王五", "+8613700137000")
    wangfang = in_unit(store, users.create_user, "王芳", "+8613800138001")
    lilei = in_unit(store, users.create_user, "Li Lei", "+8613900139002")
    with store() as db:
        for person in (wangwu, wangfang, lilei):
            audit.record(db.connection(), "session.started", user_id=person.id, sid=person.name)
        for index in range(55):
            audit.record(db.connection(), "token.issued", user_id=wangwu.id, n=index)
        db.commit()
    console = admin_world.console

    def found(person: str, **more: str) -> set[str]:
        page = console.get("/admin/audit", params={"person": person, **more})
        assert page.status_code == 200, page.text
        return set(re.findall(r'<a href="/admin/users/[^"]+" title="[^"]+">([^<]+)</a>', page.text))

    session = {"event": "session.started"}
    assert found("王", **session) == {"王五", "王芳"}
    assert found("li lei", **session) == {"Li Lei"}
    assert found("137 0013 7000", **session) == {"王五"}
    assert found("+86 137-0013-7000", **session) == {"王五"}
    assert found("０１３７", **session) == set()
    assert found("7000", **session) == {"王五"}
    assert found("8001", **session) == {"王芳"}
    assert found("%", **session) == set()
    assert found("nobody") == set()
    # the person stays in the pagination links (56 tokens and sessions, and user.created)
    page = console.get("/admin/audit", params={"person": "王五"})
    assert len(_rows(page.text)) == 50
    older = _older(page.text)
    assert "person=" in older
    second = console.get("/admin/audit" + older)
    assert len(_rows(second.text)) == 57 - 50
    assert "王芳" not in second.text and "Li Lei" not in second.text


# --- the CSV export ----------------------------------------------------------------------------


def _csv(answer: Response) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.content.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))


def test_the_csv_export_keeps_the_filters_and_names_both(
    admin_world: AdminWorld, store: Store
) -> None:
    wangwu = in_unit(store, users.create_user, "王五", "+8613700137000")
    rogue = in_unit(store, users.create_user, '=HYPERLINK("http://x")', "+8613800138001")
    crm = in_unit(store, clients.create_client, "@CRM", [RP_REDIRECT]).client
    with store() as db:
        db.add(
            AuditEvent(
                occurred_at=T0,
                event="login.succeeded",
                user_id=wangwu.id,
                client_id=crm.client_id,
                ip="198.51.100.7",
                detail={"method": "sms", "reason": "-1+2"},
            )
        )
        audit.record(db.connection(), "login.succeeded", user_id=rogue.id, ip="+1")
        db.commit()
    console = admin_world.console
    signins = {"event": "login.succeeded"}
    answer = console.get("/admin/audit.csv", params={"person": "王五", **signins})
    assert re.fullmatch(
        r'attachment; filename="audit-\d{8}-\d{4}\.csv"', answer.headers["content-disposition"]
    )
    header, *rows = _csv(answer)
    assert header == [
        "Time",
        "Event",
        "Event name",
        "Outcome",
        "Person",
        "User id",
        "App",
        "App (client_id)",
        "Corporation",
        "Corporation id",
        "Actor",
        "IP address",
        "Detail",
    ]
    assert rows == [
        [
            "2026-05-01 16:00:00+08:00",
            "Signed in",
            "login.succeeded",
            "Success",
            "王五",
            wangwu.id,
            "'@CRM",
            crm.client_id,
            "",
            "",
            "",
            "198.51.100.7",
            "Method: sms; Reason: -1+2",
        ]
    ]
    [row] = _csv(console.get("/admin/audit.csv", params={"person": "8001", **signins}))[1:]
    assert row[4] == '\'=HYPERLINK("http://x")' and row[11] == "'+1"
    chinese = _csv(
        console.get("/admin/audit.csv", params={"person": "王五", "lang": "zh-CN", **signins})
    )
    assert chinese[0][:4] == ["时间", "事件", "事件名", "结果"]
    assert chinese[1][1:4] == ["登录成功", "login.succeeded", "成功"]
    wrong = console.get("/admin/audit.csv", params={"until": "later"})
    assert wrong.status_code == 400 and "A filter is not valid" in wrong.text
    page = console.get("/admin/audit", params={"person": "王五"})
    assert 'href="/admin/audit.csv?person=%E7%8E%8B%E4%BA%94"' in page.text
    assert "at most 100,000 rows" in page.text


def test_the_csv_export_is_read_in_batches_up_to_its_cap(
    admin_world: AdminWorld, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(store, 12)
    monkeypatch.setattr(audit_console, "CSV_BATCH", 5)
    monkeypatch.setattr(audit_console, "CSV_CAP", 11)
    reads: list[int] = []
    named_page = audit.named_page

    def counted(db: Any, filters: Any, limit: int, before: int | None) -> Any:
        reads.append(limit)
        return named_page(db, filters, limit, before)

    monkeypatch.setattr(audit, "named_page", counted)
    rows = _csv(admin_world.console.get("/admin/audit.csv"))[1:]
    assert [int(row[-1].split("n: ")[1].split(";")[0]) for row in rows] == list(range(11, 0, -1))
    assert reads == [5, 5, 1]
    tokens = _csv(admin_world.console.get("/admin/audit.csv", params={"user_id": "user-b"}))
    assert len(tokens) == 1 + 6  # fewer than the cap: all of them


def test_the_csv_export_is_guarded_like_the_console(app) -> None:
    with admin_console(app) as anonymous:
        answer = anonymous.get("/admin/audit.csv")
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")
    with admin_console(app, "203.0.113.9") as outsider:
        assert outsider.get("/admin/audit.csv").status_code == 403


# --- times in the configured zone ------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The app's settings, in the time zone a test asks for (`indirect`)."""
    zone = getattr(request, "param", None)
    return dataclasses.replace(settings, timezone=zone) if zone else settings


@pytest.mark.parametrize("settings", ["America/New_York"], indirect=True)
def test_times_are_shown_and_typed_in_the_configured_zone(
    admin_world: AdminWorld, store: Store
) -> None:
    # 08:00 UTC is 04:00 in New York (EDT), in a year to come: the fixture's events are of now,
    # and ids grow with the time as `audit.record` writes them, which the time filter relies on.
    in_unit_record_at(store, LATER, "key.rotated", kid="k1")
    console = admin_world.console

    def kids(**params: str) -> list[str]:
        page = console.get("/admin/audit", params={"event": "key.rotated", **params})
        return re.findall(r"<dt>Key ID</dt><dd>(\w+)</dd>", page.text)

    page = console.get("/admin/audit", params={"event": "key.rotated"})
    assert '<time datetime="2126-05-01T04:00:00-04:00">2126-05-01 04:00:00</time>' in page.text
    assert "Times: America/New_York" in page.text and "Time (America/New_York)" in page.text
    assert kids(since="2126-05-01T04:00", until="2126-05-01T04:00:01") == ["k1"]
    assert kids(since="2126-05-01T04:00:01") == []
    assert kids(until="2126-05-01T04:00") == []
    [row] = _csv(console.get("/admin/audit.csv", params={"event": "key.rotated"}))[1:]
    assert row[0] == "2126-05-01 04:00:00-04:00"
    with store() as db:
        [created] = db.scalars(
            select(SigningKey.created_at).where(SigningKey.alg == "RS256")
        ).all()
    local = created.replace(tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    keys = console.get("/admin/keys").text
    assert local.strftime("%Y-%m-%d %H:%M:%S") in keys
    assert "Times: America/New_York" in keys and "UTC</td>" not in keys


#: An instant after every event the fixtures write (of now), in New York's summer time.
LATER = datetime(2126, 5, 1, 8, 0, 0)


def in_unit_record_at(store: Store, when: datetime, event: str, **detail: Any) -> None:
    with store() as db:
        db.add(AuditEvent(occurred_at=when, event=event, detail=detail))
        db.commit()


# --- every event has words -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: The functions that write an audit event given as their second argument: `audit.record` and
#: the services' helpers around it (a helper passes on its own `event` parameter).
AUDITING = {
    "audit.record",
    "otp.record_refusal",
    "record_refusal",
    "directory.link_event",
    "link_event",
}


def _names(node: ast.expr, scope: ast.AST) -> set[str]:
    """The event names an argument can hold: a literal, either branch of a conditional, or a
    variable assigned such in the same function."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _names(node.body, scope) | _names(node.orelse, scope)
    if isinstance(node, ast.Name):
        assigned = [
            value
            for sub in ast.walk(scope)
            if isinstance(sub, ast.Assign)
            for target in sub.targets
            if isinstance(target, ast.Name) and target.id == node.id
            for value in [sub.value]
        ]
        if assigned:
            return set().union(*(_names(value, scope) for value in assigned))
        assert isinstance(scope, ast.FunctionDef) and scope.name in {
            name.rpartition(".")[2] for name in AUDITING
        }, f"{ast.unparse(node)} at line {node.lineno}: say which events it holds"
        return set()  # a helper's own parameter: its callers' literals are found
    raise AssertionError(f"an event given as {ast.unparse(node)} (line {node.lineno})")


def recorded_events() -> set[str]:
    """Every event name the code writes to the trail."""
    events: set[str] = set()
    for path in sorted((ROOT / "iam").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        enclosing: dict[int, ast.AST] = {}  # a node's id -> the function it is in
        for scope in ast.walk(tree):
            if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(scope):
                    enclosing[id(node)] = scope  # inner functions come later and win
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in AUDITING:
                given = [*node.args[1:2], *(kw.value for kw in node.keywords if kw.arg == "event")]
                for argument in given:
                    events |= _names(argument, enclosing.get(id(node), tree))
    return events


def test_every_recorded_event_has_words_in_both_languages() -> None:
    events = recorded_events()
    # a guard on the scan: literals, conditionals, variables, helpers, the sign-in's events
    assert {
        "login.succeeded",
        "login.failed",
        "token.failed",
        "oauth.failed",
        "user.disabled",
        "otp.rejected",
        "link.disabled",
        "upstream.login_failed",
    } <= events
    assert sorted(events - set(audit_console.EVENTS)) == []
    texts = {lang: load_texts(lang) for lang in LANGUAGES}
    keys = [*audit_console.EVENTS.values(), *audit_console.FIELDS.values()]
    missing = [f"{key} ({lang})" for key in keys for lang in LANGUAGES if not texts[lang].get(key)]
    assert missing == []


def test_the_page_needs_a_sign_in(app) -> None:
    with admin_console(app) as anonymous:
        answer = anonymous.get("/admin/audit")
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


def test_the_api_is_described(app) -> None:
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 50000)) as local:
        document = local.get("/admin/api/openapi.json").json()
    operation = document["paths"]["/audit"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "user_id",
        "client_id",
        "event",
        "since",
        "until",
        "limit",
        "before",
    }
    assert all("schema" in p for p in operation["parameters"])
    for status in ("401", "422"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert {"AuditEvent", "AuditPage"} <= set(document["components"]["schemas"])
