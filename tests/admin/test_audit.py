"""Admin: the audit trail page and `GET /admin/api/audit`, with the console session and with an
admin bearer token; and `conforms`, which checks answers against the published OpenAPI schemas
(the users tests use it too)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from httpx2 import Response
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.constants import ISSUER
from support.units import in_unit

from iam.db.models import AuditEvent
from iam.db.store import Store
from iam.services import users

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
    return re.findall(r"<tr>\s*<td><time.*?</tr>", page, re.S)


def test_the_page_shows_rows_pages_and_filters(admin_world: AdminWorld, store: Store) -> None:
    _seed(store)
    with store() as db:
        total = len(db.scalars(select(AuditEvent.id)).all())  # with the admin's own sign-in
    console = admin_world.console
    page = console.get("/admin/audit")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert len(rows) == 50
    for shown in [
        "2026-05-01 09:04:00",
        "login.succeeded",
        "success",
        "user-b",
        "198.51.100.7",
        '{"n":64,"名":"张三"}',
    ]:
        assert shown in html.unescape(rows[0]).replace("<wbr>", ""), (shown, rows[0])
    for name in ("user_id", "client_id", "event", "since", "until"):
        assert f'name="{name}"' in page.text
    older = re.search(r'<a href="(\?[^"]+)" rel="next">Older</a>', page.text)
    assert older, page.text
    second = console.get("/admin/audit" + html.unescape(older.group(1)))
    assert len(_rows(second.text)) == total - 50
    assert 'rel="next"' not in second.text
    assert ">Newest</a>" in second.text

    page = console.get(
        "/admin/audit",
        params={
            "user_id": "user-b",
            "event": "token.",
            "client_id": "crm",
            "since": "2026-05-01T08:00",
            "until": "2026-05-01T08:31",
        },
    )
    assert page.status_code == 200
    shown = [int(n) for n in re.findall(r"{&#34;n&#34;:<wbr>(\d+)", page.text)]
    assert shown == [30, 0]
    assert 'value="2026-05-01T08:31"' in page.text  # the filters stay filled in
    empty = console.get("/admin/audit", params={"user_id": "nobody"})
    assert empty.status_code == 200 and "No event matches." in empty.text
    wrong = console.get("/admin/audit", params={"since": "soon"})
    assert wrong.status_code == 400 and "A filter is not valid" in wrong.text
    chinese = console.get("/admin/audit", params={"lang": "zh-CN"})
    assert "时间（UTC）" in chinese.text and "更早" in chinese.text


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
