"""Admin: WeCom corporations in the console (/admin/corps) and the API (/admin/api/corps), with
the console session and with an admin client's bearer token. WeCom is the simulator; a WeCom
that cannot be reached is an httpx.MockTransport."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.constants import CORP_A, CORP_B
from support.units import in_unit
from support.wecom import connect_corp

from iam.admin.openapi import document
from iam.app import create_app
from iam.db.models import AuditEvent
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.secretbox import SecretBox
from iam.services import clients, corps
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

#: For what the handlers decide before the database is asked: SQLite is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
#: One way of calling is enough where the other is covered beside it.
AS_SCRIPT = pytest.mark.parametrize("caller", ["bearer"], indirect=True)
AS_ADMIN = pytest.mark.parametrize("caller", ["console"], indirect=True)

SIM_B = next(corp for corp in demo_corps() if corp.corp_id == CORP_B)
SECRET = "Adm1n-typed_secret-0123456789abcdefghijklmn"
NEW_SECRET = "n3w-Secret_of-the-app-0123456789abcdefghijk"


#: The issuer's host (https://testserver): the trusted domain the apps need.
DOMAIN = "testserver"


@pytest.fixture
def app(wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator):
    """The app reaching WeCom through the simulator (admin_world signs in to this one); both
    simulated apps trust the issuer's domain."""
    for corp_id in (CORP_A, CORP_B):
        simulator.configure_app(corp_id, redirect_domain=DOMAIN)
    return create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))


@dataclass
class Caller:
    """One way of calling the admin API, and how the audit trail names it. Every answer is
    kept, so a test can check that no secret was ever sent back."""

    client: TestClient
    headers: dict[str, str]
    actor: str
    answers: list[httpx.Response]

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        headers = {**self.headers, **options.pop("headers", {})}
        answer = self.client.request(method, path, headers=headers, **options)
        self.answers.append(answer)
        return answer


@pytest.fixture(params=["console", "bearer"])
def caller(request: pytest.FixtureRequest, admin_world: AdminWorld, app) -> Iterator[Caller]:
    """The signed-in console browser, or a script with only the admin bearer token."""
    if request.param == "console":
        yield Caller(admin_world.console, {}, "admin:root", [])
        return
    client_id = jwt.decode(admin_world.token, options={"verify_signature": False})["client_id"]
    with admin_console(app) as script:
        yield Caller(script, admin_world.bearer, f"client:{client_id}", [])


def trail(store: Store, event: str) -> list[AuditEvent]:
    with store() as db:
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        return list(db.scalars(query))


def stored(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM wecom_corps ORDER BY corp_id")).all()
    return [dict(row._mapping) for row in rows]


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def input_of(corp_id: str = CORP_B, **changes: Any) -> dict[str, Any]:
    return {
        "corp_id": corp_id,
        "name": "子公司B",
        "agent_id": SIM_B.agent_id,
        "secret": SIM_B.secret,
        **changes,
    }


# --- the API -----------------------------------------------------------------------------------

API_CALLS = [
    ("GET", "/admin/api/corps", None),
    ("POST", "/admin/api/corps", input_of()),
    ("GET", f"/admin/api/corps/{CORP_A}", None),
    ("PATCH", f"/admin/api/corps/{CORP_A}", {"name": "x"}),
    ("POST", f"/admin/api/corps/{CORP_A}/test", None),
]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("method", "path", "body"), API_CALLS, ids=[f"{m} {p}" for m, p, _ in API_CALLS]
)
def test_every_api_call_needs_a_caller(
    app, store: Store, simulator: WeComSimulator, method: str, path: str, body: Any
) -> None:
    connect_corp(store, simulator, CORP_A)
    before = stored(store)
    with admin_console(app) as anonymous:
        answer = anonymous.request(method, path, json=body)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        forged = anonymous.request(
            method, path, json=body, headers={"authorization": "Bearer not.a.token"}
        )
        assert forged.status_code == 401
    assert stored(store) == before
    assert simulator.calls["gettoken"] == 0


def test_connect_list_show_and_change_a_corporation(caller: Caller, store: Store) -> None:
    created = caller.call("POST", "/admin/api/corps", json=input_of(trust_mobile=True))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/admin/api/corps/{CORP_B}"
    corp = created.json()
    assert set(corp) == {
        "corp_id",
        "name",
        "agent_id",
        "trust_mobile",
        "enabled",
        "callback",
        "on_login_page",
        "hidden_by_test",
        "last_tested_at",
        "last_test_ok",
        "last_test_problems",
        "created_at",
    }
    assert (corp["corp_id"], corp["name"], corp["agent_id"]) == (CORP_B, "子公司B", SIM_B.agent_id)
    assert (corp["trust_mobile"], corp["enabled"], corp["callback"]) == (True, True, False)
    assert (corp["on_login_page"], corp["hidden_by_test"]) == (True, False)
    assert (corp["last_tested_at"], corp["last_test_ok"], corp["last_test_problems"]) == (
        None,
        None,
        [],
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", corp["created_at"])

    assert caller.call("GET", "/admin/api/corps").json() == {"corps": [corp]}
    assert caller.call("GET", f"/admin/api/corps/{CORP_B}").json() == corp

    patch = {
        "name": "子公司B（华南）",
        "agent_id": 1000099,
        "trust_mobile": False,
        "enabled": False,
    }
    changed = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json=patch)
    assert changed.status_code == 200, changed.text
    now = {**corp, **patch, "on_login_page": False}
    assert changed.json() == now
    assert caller.call("GET", f"/admin/api/corps/{CORP_B}").json() == now

    replaced = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={"secret": NEW_SECRET})
    assert replaced.json() == now
    [row] = stored(store)
    assert all(SIM_B.secret not in str(v) and NEW_SECRET not in str(v) for v in row.values())

    assert [(e.event, e.actor) for e in trail(store, "corp.added")] == [
        ("corp.added", caller.actor)
    ]
    assert [(e.actor, e.detail["changed"]) for e in trail(store, "corp.updated")] == [
        (caller.actor, ["agent_id", "enabled", "name", "trust_mobile"]),
        (caller.actor, ["secret"]),
    ]
    for answer in caller.answers:
        assert SIM_B.secret not in answer.text and NEW_SECRET not in answer.text
        assert answer.headers["cache-control"] == "no-store"


@AS_ADMIN
def test_a_patch_keeps_what_it_does_not_name(caller: Caller, store: Store, box: SecretBox) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of())
    assert caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={}).status_code == 200
    answer = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={"trust_mobile": True})
    assert (answer.json()["name"], answer.json()["trust_mobile"]) == ("子公司B", True)
    [row] = stored(store)
    assert box.decrypt(row["secret_encrypted"]) == SIM_B.secret
    assert len(trail(store, "corp.updated")) == 1


#: (the body, the field the 422 names)
BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    (input_of(color="blue"), "color"),
    (input_of(secret_encrypted="x"), "secret_encrypted"),
    (input_of(enabled=False), "enabled"),
    (input_of(corp_id=""), "corp_id"),
    (input_of(corp_id="ww corp"), "corp_id"),
    (input_of(corp_id="ww/corp"), "corp_id"),
    (input_of(corp_id="x" * 65), "corp_id"),
    (input_of(corp_id=12345), "corp_id"),
    (input_of(name=""), "name"),
    (input_of(name="   "), "name"),
    (input_of(name=["子公司B"]), "name"),
    (input_of(agent_id=0), "agent_id"),
    (input_of(agent_id=-1000002), "agent_id"),
    (input_of(agent_id=2**63), "agent_id"),
    (input_of(agent_id="1000002"), "agent_id"),
    (input_of(agent_id=1000002.5), "agent_id"),
    (input_of(agent_id=True), "agent_id"),
    (input_of(secret=""), "secret"),
    (input_of(secret=" padded "), "secret"),
    (input_of(secret=42), "secret"),
    (input_of(trust_mobile="yes"), "trust_mobile"),
    (input_of(trust_mobile=None), "trust_mobile"),
    (input_of(name=None), "name"),
    ({key: value for key, value in input_of().items() if key != "secret"}, "secret"),
    ({key: value for key, value in input_of().items() if key != "agent_id"}, "agent_id"),
]


def case_id(body: dict[str, Any], field: str) -> str:
    """A case's name: the field at fault and, when sent, the value (short)."""
    return f"{field}={body[field]!r}"[:40] if field in body else f"{field}-missing"


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(
    ("body", "field"), BAD_INPUTS, ids=[case_id(body, field) for body, field in BAD_INPUTS]
)
def test_bad_input_is_refused_naming_the_field(
    caller: Caller, store: Store, body: dict[str, Any], field: str
) -> None:
    answer = caller.call("POST", "/admin/api/corps", json=body)
    assert answer.status_code == 422, answer.text
    assert (answer.json()["error"], answer.json()["field"]) == ("invalid", field)
    assert SIM_B.secret not in answer.text
    assert stored(store) == []
    assert trail(store, "corp.added") == []


#: (how the body is sent, the status and error it gets)
NOT_AN_OBJECT: list[tuple[dict[str, Any], int, str]] = [
    ({"data": input_of()}, 415, "unsupported_media_type"),
    ({"json": [input_of()]}, 400, "invalid_json"),
    ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
]


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(
    ("sent", "status", "error"), NOT_AN_OBJECT, ids=["form", "json-list", "broken-json"]
)
def test_a_body_that_is_no_json_object_is_refused(
    caller: Caller, store: Store, sent: dict[str, Any], status: int, error: str
) -> None:
    answer = caller.call("POST", "/admin/api/corps", **sent)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert SIM_B.secret not in answer.text
    assert stored(store) == []


@SQLITE_ONLY
@AS_SCRIPT
def test_an_integral_agent_id_is_an_integer(caller: Caller) -> None:
    """JSON Schema counts 1000003.0 as an integer, so the API does too."""
    answer = caller.call("POST", "/admin/api/corps", json=input_of(agent_id=1000003.0))
    assert (answer.status_code, answer.json()["agent_id"]) == (201, 1000003)


BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"corp_id": "wwother"}, "corp_id"),
    ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ({"name": ""}, "name"),
    ({"name": 3}, "name"),
    ({"agent_id": 0}, "agent_id"),
    ({"agent_id": -1}, "agent_id"),
    ({"agent_id": "7"}, "agent_id"),
    ({"secret": ""}, "secret"),
    ({"secret": None}, "secret"),
    ({"enabled": "false"}, "enabled"),
    ({"enabled": None}, "enabled"),
    ({"trust_mobile": 1}, "trust_mobile"),
    ({"name": "Fine", "agent_id": 0}, "agent_id"),
]


@SQLITE_ONLY
@AS_ADMIN
@pytest.mark.parametrize(
    ("body", "field"), BAD_PATCHES, ids=[repr(body)[:40] for body, _ in BAD_PATCHES]
)
def test_bad_changes_are_refused_and_change_nothing(
    caller: Caller, store: Store, body: dict[str, Any], field: str
) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of())
    before = stored(store)
    answer = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert stored(store) == before
    assert trail(store, "corp.updated") == []


UNKNOWN = [
    ("GET", "/admin/api/corps/wwnosuchcorp", None),
    ("PATCH", "/admin/api/corps/wwnosuchcorp", {"name": "x"}),
    ("POST", "/admin/api/corps/wwnosuchcorp/test", None),
    ("GET", "/admin/api/corps/bad%20id", None),
]


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(
    ("method", "path", "body"), UNKNOWN, ids=[f"{m} {p}" for m, p, _ in UNKNOWN]
)
def test_unknown_corporations_are_404(
    caller: Caller, store: Store, method: str, path: str, body: Any
) -> None:
    answer = caller.call(method, path, json=body)
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    assert stored(store) == []
    assert trail(store, "corp.tested") == []


@AS_SCRIPT
def test_a_corporation_connected_twice_is_409(caller: Caller, store: Store) -> None:
    assert caller.call("POST", "/admin/api/corps", json=input_of()).status_code == 201
    again = caller.call("POST", "/admin/api/corps", json=input_of(name="again"))
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    assert [corp["name"] for corp in stored(store)] == ["子公司B"]


ODD_PATHS = [
    ("GET", "/admin/api/corps/x%2Fy"),
    ("PATCH", "/admin/api/corps/x%2Fy"),
    ("POST", "/admin/api/corps/x%2Fy/test"),
    ("GET", f"/admin/api/corps/{CORP_A}/members"),
]
WRONG_METHODS = [
    ("DELETE", "/admin/api/corps", {"GET", "HEAD", "POST"}),
    ("PUT", f"/admin/api/corps/{CORP_A}", {"GET", "HEAD", "PATCH"}),
    ("GET", f"/admin/api/corps/{CORP_A}/test", {"POST"}),
]


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(("method", "path"), ODD_PATHS, ids=[f"{m} {p}" for m, p in ODD_PATHS])
def test_odd_paths_get_the_apis_json_404(caller: Caller, method: str, path: str) -> None:
    answer = caller.call(method, path, json={"name": "x"})
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(
    ("method", "path", "allowed"), WRONG_METHODS, ids=[f"{m} {p}" for m, p, _ in WRONG_METHODS]
)
def test_wrong_methods_are_405_naming_the_allowed_ones(
    caller: Caller, method: str, path: str, allowed: set[str]
) -> None:
    answer = caller.call(method, path)
    assert answer.status_code == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == allowed


# --- the connection test, through the API --------------------------------------------------------


#: The answer of a test that passed (subsidiary B's app, as the simulator has it).
PASSED = {
    "ok": True,
    "errcode": 0,
    "errmsg": "ok",
    "reason": None,
    "api": "agent/get",
    "problems": [],
    "seen_ip": None,
    "app_name": "统一登录",
}


def test_connection_ok_is_a_live_gettoken_and_agent_get(
    caller: Caller, store: Store, simulator: WeComSimulator
) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of())
    for tests in (1, 2):
        before = simulator.calls["gettoken"]
        answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
        assert answer.status_code == 200, answer.text
        assert answer.json() == PASSED
        assert simulator.calls["gettoken"] > before  # never from the cache
        assert simulator.calls["agent_get"] == tests
    schema = document("https://testserver")["components"]["schemas"]["ConnectionTest"]
    assert set(answer.json()) == set(schema["properties"]) == set(schema["required"])
    events = trail(store, "corp.tested")
    assert [(e.outcome, e.actor) for e in events] == [("success", caller.actor)] * 2
    corp = caller.call("GET", f"/admin/api/corps/{CORP_B}").json()
    assert (corp["last_test_ok"], corp["on_login_page"], corp["last_test_problems"]) == (
        True,
        True,
        [],
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", corp["last_tested_at"])


def failed(reason: str, *problems: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The answer of a failed test: `reason` first, then `problems` (each {reason, params})."""
    return {
        "ok": False,
        "errcode": None,
        "errmsg": None,
        "reason": reason,
        "api": None,
        "problems": [{"reason": reason, "params": {}}, *problems],
        "seen_ip": None,
        "app_name": None,
        **values,
    }


@AS_SCRIPT
def test_connection_failures_say_what_wecom_answered(
    caller: Caller, store: Store, simulator: WeComSimulator
) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of(secret=SECRET))
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
    assert answer.json() == failed(
        corps.SECRET_WRONG, api="gettoken", errcode=40001, errmsg="invalid credential"
    )
    hidden = caller.call("GET", f"/admin/api/corps/{CORP_B}").json()
    assert (hidden["enabled"], hidden["on_login_page"], hidden["hidden_by_test"]) == (
        True,
        False,
        True,
    )
    assert hidden["last_test_problems"] == [{"reason": corps.SECRET_WRONG, "params": {}}]
    caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={"secret": SIM_B.secret})
    assert caller.call("POST", f"/admin/api/corps/{CORP_B}/test").json() == PASSED
    assert caller.call("GET", f"/admin/api/corps/{CORP_B}").json()["on_login_page"] is True

    simulator.fail_next("gettoken", 45009, "api freq out of limit")
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
    busy = {"reason": corps.BUSY, "params": {"errcode": "45009"}}
    assert answer.json() == {
        **failed(corps.BUSY, api="gettoken", errcode=45009, errmsg="api freq out of limit"),
        "problems": [busy],
    }

    simulator.fail_http("gettoken", 502)
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
    assert answer.json() == failed(corps.UNAVAILABLE, api="gettoken")

    simulator.configure_app(CORP_B, closed=True, visible_departments=[], trusted_ips=None)
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
    assert answer.json() == {
        **failed(
            corps.APP_CLOSED,
            {"reason": corps.NOBODY_VISIBLE, "params": {}},
            api="agent/get",
            errcode=0,
            errmsg="ok",
        ),
        "app_name": "统一登录",
    }

    simulator.configure_app(CORP_B, trusted_ips=["198.51.100.7"])
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test")
    refused = answer.json()
    assert (refused["reason"], refused["seen_ip"], refused["errcode"]) == (
        corps.IP_NOT_TRUSTED,
        "203.0.113.9",
        60020,
    )
    assert refused["problems"] == [
        {"reason": corps.IP_NOT_TRUSTED, "params": {"ip": "203.0.113.9"}}
    ]

    events = trail(store, "corp.tested")
    assert [(e.outcome, e.actor) for e in events] == [
        ("failure", caller.actor),
        ("success", caller.actor),
        ("failure", caller.actor),
        ("failure", caller.actor),
        ("failure", caller.actor),
        ("failure", caller.actor),
    ]
    assert [e.detail["errcode"] for e in events] == [40001, 0, 45009, None, 0, 60020]
    assert all(SECRET not in a.text and SIM_B.secret not in a.text for a in caller.answers)


@AS_SCRIPT
def test_an_explicit_enable_shows_a_hidden_corporation(
    caller: Caller, store: Store, simulator: WeComSimulator
) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of())
    simulator.configure_app(CORP_B, redirect_domain="old.example.com")
    answer = caller.call("POST", f"/admin/api/corps/{CORP_B}/test").json()
    assert answer["problems"] == [
        {
            "reason": corps.DOMAIN_MISMATCH,
            "params": {"domain": "old.example.com", "expected": DOMAIN},
        }
    ]
    corp = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={"name": "B"}).json()
    assert (corp["on_login_page"], corp["hidden_by_test"]) == (False, True)
    corp = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json={"enabled": True}).json()
    assert (corp["on_login_page"], corp["hidden_by_test"], corp["last_test_ok"]) == (
        True,
        False,
        False,
    )
    assert trail(store, "corp.updated")[-1].detail["changed"] == ["hidden_by_test"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx.ConnectTimeout("timed out"), corps.TIMEOUT),
        (httpx.ConnectError("[Errno 111] Connection refused"), corps.UNAVAILABLE),
    ],
)
def test_connection_to_a_wecom_that_cannot_be_reached(
    admin_world: AdminWorld,
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
    failure: httpx.HTTPError,
    reason: str,
) -> None:
    connect_corp(store, simulator, CORP_A)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise failure

    with httpx.Client(transport=httpx.MockTransport(unreachable)) as http:
        offline = create_app(wecom_settings, store=store, sms=sms, wecom_http=http)
        with admin_console(offline) as script:
            answer = script.post(f"/admin/api/corps/{CORP_A}/test", headers=admin_world.bearer)
            assert answer.json() == failed(reason, api="gettoken")
            page = script.get(f"/admin/corps/{CORP_A}")  # the bearer token opens no page
            assert (page.status_code, page.headers["location"]) == (303, "/admin/login")
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.detail["reason"]) == ("failure", reason)


# --- the console -------------------------------------------------------------------------------

CONSOLE_PAGES = ["/admin/corps", f"/admin/corps/{CORP_A}"]
CONSOLE_FORMS = [
    "/admin/corps",
    f"/admin/corps/{CORP_A}",
    f"/admin/corps/{CORP_A}/enable",
    f"/admin/corps/{CORP_A}/disable",
    f"/admin/corps/{CORP_A}/test",
    f"/admin/corps/{CORP_A}/callback",
]


#: What a form sends besides a CSRF token (enough for any of them).
FORM = {
    "corp_id": CORP_B,
    "name": "x",
    "agent_id": "5",
    "secret": "abc",
    "enabled": "yes",
    "callback_token": "tok",
}


@SQLITE_ONLY
@pytest.mark.parametrize("path", CONSOLE_PAGES)
@pytest.mark.parametrize("with_bearer", [False, True], ids=["anonymous", "bearer"])
def test_console_pages_need_a_signed_in_admin(
    app,
    admin_world: AdminWorld,
    store: Store,
    simulator: WeComSimulator,
    path: str,
    with_bearer: bool,
) -> None:
    """The admin client's bearer token opens no console page."""
    connect_corp(store, simulator, CORP_A)
    with admin_console(app) as stranger:
        answer = stranger.get(path, headers=admin_world.bearer if with_bearer else {})
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


@SQLITE_ONLY
@pytest.mark.parametrize("path", CONSOLE_FORMS)
def test_console_forms_need_a_signed_in_admin(
    app, admin_world: AdminWorld, store: Store, simulator: WeComSimulator, path: str
) -> None:
    connect_corp(store, simulator, CORP_A)
    before = stored(store)
    with admin_console(app) as stranger:
        answer = stranger.post(path, data=FORM, headers=admin_world.bearer)
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")
    assert stored(store) == before
    assert simulator.calls["gettoken"] == 0


@SQLITE_ONLY
@pytest.mark.parametrize("path", CONSOLE_FORMS)
@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no-csrf", "forged-csrf"])
def test_console_forms_need_the_csrf_token(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, path: str, token: str | None
) -> None:
    connect_corp(store, simulator, CORP_A)
    before = stored(store)
    data = FORM if token is None else {**FORM, "csrf_token": token}
    answer = admin_world.console.post(path, data=data)
    assert answer.status_code == 403
    assert stored(store) == before
    assert simulator.calls["gettoken"] == 0


@SQLITE_ONLY
def test_the_list_shows_every_corporation(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    empty = admin_world.console.get("/admin/corps")
    assert empty.status_code == 200
    assert "No corporation is connected yet." in empty.text
    connect_corp(store, simulator, CORP_A, trust_mobile=True)
    connect_corp(store, simulator, CORP_B)
    in_unit(store, corps.update_corp, box, CORP_B, actor="admin:root", enabled=False)
    page = admin_world.console.get("/admin/corps")
    rows = re.findall(r"<tr>\s*(.*?)\s*</tr>", page.text, re.S)
    cells = [re.findall(r"<td data-label=[^>]*>(.*?)</td>", row, re.S) for row in rows[1:]]
    assert cells == [
        [f'<a href="/admin/corps/{CORP_A}">{CORP_A}</a>', "子公司A", "1000002", "Yes", "Enabled"],
        [f'<a href="/admin/corps/{CORP_B}">{CORP_B}</a>', "子公司B", "1000003", "No", "Disabled"],
    ]
    assert 'type="password" id="secret" name="secret"' in page.text
    chinese = admin_world.console.get("/admin/corps?lang=zh-CN")
    assert "接入企业" in chinese.text and "已停用" in chinese.text


def test_connecting_through_the_console(admin_world: AdminWorld, store: Store) -> None:
    console = admin_world.console
    form = {
        "csrf_token": admin_world.csrf("/admin/corps"),
        "corp_id": f" {CORP_B} ",
        "name": "子公司B",
        "agent_id": str(SIM_B.agent_id),
        "secret": SIM_B.secret,
        "trust_mobile": "yes",
    }
    answer = console.post("/admin/corps", data=form)
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        f"/admin/corps/{CORP_B}?done=added",
    )
    page = console.get(answer.headers["location"])
    assert "The corporation is connected." in page.text
    assert "Set (never shown)" in page.text
    assert SIM_B.secret not in page.text
    [row] = stored(store)
    assert (row["corp_id"], row["agent_id"], bool(row["trust_mobile"])) == (CORP_B, 1000003, True)
    assert all(SIM_B.secret not in str(value) for value in row.values())
    [event] = trail(store, "corp.added")
    assert event.actor == "admin:root"

    again = console.post("/admin/corps", data={**form, "corp_id": CORP_B, "name": "again"})
    assert again.status_code == 409
    assert "This corporation is already connected." in again.text
    assert 'value="again"' in again.text and SIM_B.secret not in again.text
    assert stored(store) == [row]


@SQLITE_ONLY
@pytest.mark.parametrize("path", ["/admin/corps", f"/admin/corps/{CORP_B}"])
def test_the_forms_say_a_trusted_mobile_does_not_bind_people_known_elsewhere(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, path: str
) -> None:
    """Finding 12 of #11: the admin who ticks the box learns its limit (and why)."""
    connect_corp(store, simulator, CORP_B)
    hint = re.compile(r'<p class="hint" id="trust_mobile-hint">(.*?)</p>', re.S)
    [english] = hint.findall(admin_world.console.get(f"{path}?lang=en").text)
    assert "without an SMS code" in english
    assert "active identity in another corporation" in english
    assert "still proves the number by SMS code" in english
    [chinese] = hint.findall(admin_world.console.get(f"{path}?lang=zh-CN").text)
    assert "无需短信验证码" in chinese and "其他企业" in chinese
    assert "仍须通过短信验证码" in chinese


@pytest.mark.parametrize("name", ["CorpInput", "CorpPatch"])
def test_the_api_says_a_trusted_mobile_does_not_bind_people_known_elsewhere(name: str) -> None:
    schemas = document("https://testserver")["components"]["schemas"]
    described = schemas[name]["properties"]["trust_mobile"]["description"]
    assert "active identity in another corporation" in described


#: (what the admin typed instead of good values, the field marked, its message)
BAD_FORMS = [
    ({"corp_id": "ww corp"}, "corp_id", "Not a WeCom corp ID"),
    ({"name": "  "}, "name", "Give a name of 1 to 200 characters."),
    ({"agent_id": "abc"}, "agent_id", "The agent ID is the app&#39;s positive number."),
    ({"agent_id": "0"}, "agent_id", "The agent ID is the app&#39;s positive number."),
    ({"agent_id": "9" * 40}, "agent_id", "The agent ID is the app&#39;s positive number."),
    ({"secret": ""}, "secret", "Paste the app secret exactly as WeCom shows it"),
    ({"secret": "with space"}, "secret", "Paste the app secret exactly as WeCom shows it"),
]


BAD_FORM_IDS = [f"{field}={typed[field]!r}"[:40] for typed, field, _ in BAD_FORMS]


@SQLITE_ONLY
@pytest.mark.parametrize(("typed", "field", "message"), BAD_FORMS, ids=BAD_FORM_IDS)
def test_console_validation_errors_reshow_the_form_and_change_nothing(
    admin_world: AdminWorld, store: Store, typed: dict[str, str], field: str, message: str
) -> None:
    console = admin_world.console
    csrf = admin_world.csrf("/admin/corps")
    good = {"corp_id": CORP_B, "name": "子公司<B>", "agent_id": "1000003", "trust_mobile": "yes"}
    secret = typed.get("secret", f"{SECRET}")
    answer = console.post(
        "/admin/corps", data={"csrf_token": csrf, **good, **typed, "secret": secret}
    )
    assert answer.status_code == 422
    assert message in answer.text
    assert f'id="{field}-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert "Nothing was saved." in answer.text
    kept = typed.get("name", "子公司&lt;B&gt;")
    assert f'value="{kept}"' in answer.text or field == "name"
    assert 'name="trust_mobile" value="yes" aria-describedby="trust_mobile-hint" checked' in (
        answer.text
    )
    assert SECRET not in answer.text  # a refused form never shows the secret back
    assert stored(store) == []
    assert trail(store, "corp.added") == []


def test_editing_through_the_console(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    console = admin_world.console
    path = f"/admin/corps/{CORP_B}"
    page = console.get(path)
    assert 'value="子公司B"' in page.text and 'value="1000003"' in page.text
    assert SIM_B.secret not in page.text
    form = {"csrf_token": csrf_of(page), "name": "子公司B（华南）", "agent_id": "1000004"}
    form |= {"secret": "", "trust_mobile": "yes", "enabled": "yes"}
    answer = console.post(path, data=form)
    assert (answer.status_code, answer.headers["location"]) == (303, f"{path}?done=saved")
    assert "Saved." in console.get(answer.headers["location"]).text
    corp = in_unit(store, corps.get_corp, CORP_B)
    assert (corp.name, corp.agent_id, corp.trust_mobile, corp.enabled) == (
        "子公司B（华南）",
        1000004,
        True,
        True,
    )
    [row] = stored(store)
    assert box.decrypt(row["secret_encrypted"]) == SIM_B.secret  # empty: kept

    console.post(path, data={**form, "secret": NEW_SECRET})
    [row] = stored(store)
    assert box.decrypt(row["secret_encrypted"]) == NEW_SECRET
    assert NEW_SECRET not in console.get(path).text

    # The form has no enabled box: saving never disables (disabling asks first, below the
    # form), whatever a posted form says.
    assert 'name="enabled"' not in console.get(path).text
    for enabled in ({}, {"enabled": ""}, {"enabled": "yes"}):
        unticked = {key: value for key, value in form.items() if key != "enabled"}
        assert console.post(path, data=unticked | enabled).status_code == 303
        assert in_unit(store, corps.get_corp, CORP_B).enabled is True
    events = trail(store, "corp.updated")
    assert [(e.actor, e.detail["changed"]) for e in events] == [
        ("admin:root", ["agent_id", "name", "trust_mobile"]),
        ("admin:root", ["secret"]),
    ]


#: The forms' refusals that an edit can meet: the corp id is not edited, and an empty secret
#: means "keep it".
BAD_EDITS = [
    (case, case_id)
    for case, case_id in zip(BAD_FORMS, BAD_FORM_IDS, strict=True)
    if "corp_id" not in case[0] and case[0].get("secret") != ""
]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("typed", "field", "message"),
    [case for case, _ in BAD_EDITS],
    ids=[case_id for _, case_id in BAD_EDITS],
)
def test_console_edit_errors_reshow_the_form_and_change_nothing(
    admin_world: AdminWorld,
    store: Store,
    simulator: WeComSimulator,
    typed: dict[str, str],
    field: str,
    message: str,
) -> None:
    connect_corp(store, simulator, CORP_B)
    before = stored(store)
    path = f"/admin/corps/{CORP_B}"
    csrf = admin_world.csrf(path)
    good = {"name": "Renamed", "agent_id": "1000004", "enabled": "yes"}
    answer = admin_world.console.post(path, data={"csrf_token": csrf, **good, **typed})
    assert answer.status_code == 422
    assert message in answer.text and f'id="{field}-error"' in answer.text
    assert "with space" not in answer.text
    assert stored(store) == before
    assert trail(store, "corp.updated") == []


def test_disable_and_enable_buttons(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    console = admin_world.console
    path = f"/admin/corps/{CORP_A}"
    page = console.get(path)
    # Disabling asks first: the page's red button is a link to the question, whose red
    # button posts; asking changes nothing, and cancelling goes back to the page.
    assert (
        f'action="{path}/disable"' not in page.text and f'action="{path}/enable"' not in page.text
    )
    assert f'<a class="button danger" href="{path}?confirm=disable">Disable</a>' in page.text
    page = console.get(f"{path}?confirm=disable")
    assert "Disable 子公司A?" in page.text
    assert re.search(
        rf'<form method="post" action="{path}/disable">\s*<input[^>]+>\s*'
        r'<button type="submit" class="danger">Disable sign-ins</button>',
        page.text,
    ), page.text
    assert f'<a class="button secondary" href="{path}">Cancel</a>' in page.text
    assert in_unit(store, corps.get_corp, CORP_A).enabled is True
    answer = console.post(f"{path}/disable", data={"csrf_token": csrf_of(page)})
    assert (answer.status_code, answer.headers["location"]) == (303, f"{path}?done=disabled")
    page = console.get(answer.headers["location"])
    assert "Disabled: nobody can sign in through this corporation." in page.text
    assert f'action="{path}/enable"' in page.text
    assert 'id="confirm"' not in console.get(f"{path}?confirm=disable").text  # nothing to ask
    assert in_unit(store, corps.list_corps, enabled_only=True) == []
    assert console.get(f"/login/wecom/{CORP_A}").status_code == 404  # no sign-in through it

    answer = console.post(f"{path}/enable", data={"csrf_token": csrf_of(page)})
    assert answer.headers["location"] == f"{path}?done=enabled"
    enabled = in_unit(store, corps.list_corps, enabled_only=True)
    assert [c.corp_id for c in enabled] == [CORP_A]
    events = trail(store, "corp.updated")
    assert [(e.actor, e.detail["enabled"]) for e in events] == [
        ("admin:root", False),
        ("admin:root", True),
    ]


@SQLITE_ONLY
def test_an_unknown_corporations_page_is_404(admin_world: AdminWorld) -> None:
    answer = admin_world.console.get("/admin/corps/wwnosuchcorp")
    assert answer.status_code == 404
    assert "There is no such corporation." in answer.text


@SQLITE_ONLY
@pytest.mark.parametrize("suffix", ["", "/enable", "/disable", "/test", "/callback"])
def test_forms_on_unknown_corporations_are_404_pages(
    admin_world: AdminWorld, store: Store, suffix: str
) -> None:
    csrf = admin_world.csrf("/admin/corps")
    data = {"csrf_token": csrf, "name": "x", "agent_id": "1", "callback_token": "tok"}
    answer = admin_world.console.post(f"/admin/corps/wwnosuchcorp{suffix}", data=data)
    assert answer.status_code == 404
    assert "There is no such corporation." in answer.text
    assert stored(store) == []


def problems_of(page: httpx.Response) -> list[str]:
    """The problems a failed test lists on the page, as text."""
    found = re.search(
        r'<div class="error" role="alert" id="test-result">(.*?)</div>', page.text, re.S
    )
    assert found, page.text
    return [item.strip() for item in re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)]


@SQLITE_ONLY
def test_console_connection_test_says_what_wecom_answered(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    console = admin_world.console
    path = f"/admin/corps/{CORP_B}"
    csrf = admin_world.csrf(path)

    ok = console.post(f"{path}/test", data={"csrf_token": csrf})
    assert ok.status_code == 200
    assert "Everything works: WeCom issued an access token (valid 7200 s)" in ok.text
    assert "its app “统一登录” is enabled, trusts testserver" in ok.text

    in_unit(store, corps.update_corp, box, CORP_B, actor="admin:root", secret=SECRET)
    wrong = console.post(f"{path}/test", data={"csrf_token": csrf})
    [problem] = problems_of(wrong)
    assert problem.startswith("WeCom refused the app secret (40001 or 40091)")
    assert "WeCom refused: errcode 40001, errmsg “invalid credential”." in wrong.text

    in_unit(store, corps.update_corp, box, CORP_B, actor="admin:root", secret=SIM_B.secret)
    simulator.fail_next("gettoken", 45009, "api freq out of limit <b>")
    busy = console.post(f"{path}/test?lang=zh-CN", data={"csrf_token": csrf})
    assert problems_of(busy) == [
        "企业微信正在限制调用频率（errcode 45009）。请等待几分钟后重新测试。"
    ]
    assert "企业微信拒绝：errcode 45009，errmsg “api freq out of limit &lt;b&gt;”" in busy.text

    simulator.fail_http("gettoken", 502)
    broken = console.post(f"{path}/test?lang=en", data={"csrf_token": csrf})
    [problem] = problems_of(broken)
    assert problem.startswith("WeCom could not be asked")
    assert "WeCom gettoken answered HTTP 502" in broken.text

    simulator.configure_app(CORP_B, closed=True, visible_departments=[])
    closed = console.post(f"{path}/test?lang=zh-CN", data={"csrf_token": csrf})
    assert problems_of(closed) == [
        "该应用在企业微信中已停用：成员无法打开它，也无法通过它登录。"
        "请在企业微信管理后台“应用管理 → 本应用”中启用。",
        "该应用的可见范围为空：没有任何成员、部门或标签，因此无人能通过它登录。"
        "请在“应用管理 → 本应用 → 可见范围”中添加需要登录的部门。",
    ]

    simulator.configure_app(CORP_B, closed=False, visible_departments=[1])
    simulator.configure_app(CORP_B, trusted_ips=["198.51.100.7"], redirect_domain="old.example")
    untrusted = console.post(f"{path}/test?lang=en", data={"csrf_token": csrf})
    [problem] = problems_of(untrusted)
    assert "WeCom refused calls from this server&#39;s address 203.0.113.9 (60020)" in problem
    assert "企业可信IP, add 203.0.113.9" in problem
    assert "WeCom refused: errcode 60020" in untrusted.text  # its own words too

    simulator.configure_app(CORP_B, trusted_ips=None)
    domain = console.post(f"{path}/test?lang=en", data={"csrf_token": csrf})
    [problem] = problems_of(domain)
    assert "trusted domain (可信域名) is old.example, but sign-ins return to testserver" in problem
    for answer in (ok, wrong, busy, broken, closed, untrusted, domain):
        assert SECRET not in answer.text and SIM_B.secret not in answer.text
    assert [(e.outcome, e.actor) for e in trail(store, "corp.tested")] == [
        ("success", "admin:root"),
        *[("failure", "admin:root")] * 6,
    ]


def login_page_state(page: httpx.Response) -> str:
    found = re.search(r'<td id="login-page-state">(.*?)</td>', page.text, re.S)
    assert found, page.text
    return found.group(1)


@SQLITE_ONLY
def test_a_hidden_corporation_says_why_and_can_be_shown_anyway(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    console = admin_world.console
    path = f"/admin/corps/{CORP_B}"
    page = console.get(path)
    assert login_page_state(page) == "Shown on the login page."
    assert '<td id="last-test">Never tested</td>' in page.text
    assert "docs/wecom-setup.md" in page.text
    assert 'id="hidden-card"' not in page.text

    simulator.configure_app(CORP_B, visible_departments=[])
    console.post(f"{path}/test", data={"csrf_token": admin_world.csrf(path)})
    page = console.get(path)
    assert login_page_state(page) == "Hidden from the login page: last test failed"
    tested = re.search(r'<td id="last-test">Failed \((\d{4}-\d\d-\d\d \d\d:\d\d)\)</td>', page.text)
    assert tested, page.text
    card = re.search(r'<div class="error" id="hidden-card">(.*?)</div>\n</div>', page.text, re.S)
    assert card, page.text
    assert f"its last connection test failed ({tested.group(1)})" in card.group(1)
    assert "Nobody is in the app&#39;s visible range (可见范围)" in card.group(1)
    assert "Show on the login page anyway" in card.group(1)
    chinese = console.get(f"{path}?lang=zh-CN")
    assert login_page_state(chinese) == "未在登录页显示：最近一次测试未通过"
    assert "仍在登录页显示" in chinese.text and "该应用的可见范围为空" in chinese.text
    listing = console.get("/admin/corps?lang=en")
    assert (
        'Enabled <span class="badge danger">Hidden from the login page: test failed</span> '
        f'<span class="hint">{tested.group(1)}</span>'
    ) in listing.text

    # saving the form (its box ticked, as ever) is not enabling: still hidden
    form = {"csrf_token": admin_world.csrf(path), "name": "子公司B", "agent_id": "1000003",
            "enabled": "yes"}  # fmt: skip
    assert console.post(path, data=form).status_code == 303
    assert login_page_state(console.get(path)) == "Hidden from the login page: last test failed"

    shown = console.post(
        f"{path}/enable", data={"csrf_token": admin_world.csrf(path), "show": "anyway"}
    )
    assert (shown.status_code, shown.headers["location"]) == (303, f"{path}?done=shown")
    page = console.get(shown.headers["location"])
    assert "Shown on the login page again, although its last test failed." in page.text
    assert login_page_state(page) == (
        "Shown on the login page although its last test failed: an admin enabled it."
    )
    assert 'id="hidden-card"' not in page.text
    assert in_unit(store, corps.list_corps, on_login_page=True)[0].corp_id == CORP_B


# --- the description -----------------------------------------------------------------------------


def test_the_openapi_document_describes_every_corp_operation() -> None:
    doc = document("https://testserver")
    schemas = doc["components"]["schemas"]
    operations = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        if path.startswith("/corps")
        for method in item
        if method != "parameters"
    }
    assert operations == {
        ("GET", "/corps"),
        ("POST", "/corps"),
        ("GET", "/corps/{corp_id}"),
        ("PATCH", "/corps/{corp_id}"),
        ("POST", "/corps/{corp_id}/test"),
    }
    for method, path in operations:
        operation = doc["paths"][path][method.lower()]
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        body = operation.get("requestBody")
        if body:
            ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[ref]["additionalProperties"] is False
            assert "422" in operation["responses"] and "400" in operation["responses"]
    for name in ("Corp", "CorpInput", "CorpPatch", "ConnectionTest"):
        assert schemas[name]["additionalProperties"] is False
    assert "secret" not in schemas["Corp"]["properties"]
    assert set(schemas["CorpInput"]["required"]) == {"corp_id", "name", "agent_id", "secret"}
    assert set(schemas["CorpPatch"]["properties"]) == {
        "name",
        "agent_id",
        "secret",
        "trust_mobile",
        "enabled",
        "callback_token",
        "encoding_aes_key",
    }


# --- the callback settings (接收事件服务器) -------------------------------------------------------

TOKEN = "QDG6eK2xTuVw9Nf"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
NEW_TOKEN = "ZyX987wvu"
NEW_AES_KEY = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456"
CALLBACK_VALUES = (TOKEN, AES_KEY, NEW_TOKEN, NEW_AES_KEY)
EVENTS_URL = f"https://testserver/events/wecom/{CORP_B}"


def never_shown(*answers: httpx.Response) -> None:
    for answer in answers:
        assert all(value not in answer.text for value in CALLBACK_VALUES), answer.text


def never_stored_plain(store: Store) -> None:
    stored_values = [str(value) for row in stored(store) for value in row.values()]
    audited = [str(event.detail) for event in trail(store, "corp.added")]
    audited += [str(event.detail) for event in trail(store, "corp.updated")]
    for value in CALLBACK_VALUES:
        assert all(value not in text for text in stored_values + audited), value


def test_api_create_with_the_callback_settings(
    caller: Caller, store: Store, box: SecretBox
) -> None:
    body = input_of(callback_token=TOKEN, encoding_aes_key=AES_KEY)
    created = caller.call("POST", "/admin/api/corps", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["callback"] is True
    assert "callback_token" not in created.json() and "encoding_aes_key" not in created.json()
    assert caller.call("GET", f"/admin/api/corps/{CORP_B}").json()["callback"] is True
    [row] = stored(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN
    assert box.decrypt(row["encoding_aes_key_encrypted"]) == AES_KEY
    [event] = trail(store, "corp.added")
    assert event.detail["callback"] is True
    never_shown(*caller.answers)
    never_stored_plain(store)


@AS_SCRIPT
def test_api_create_without_the_callback_settings_says_false(caller: Caller) -> None:
    created = caller.call("POST", "/admin/api/corps", json=input_of())
    assert created.json()["callback"] is False


#: (the callback part of a body, the field the 422 names)
BAD_CALLBACK_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"callback_token": TOKEN}, "encoding_aes_key"),
    ({"encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": "", "encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": "tok-en", "encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": "t" * 33, "encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": 7, "encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": None, "encoding_aes_key": AES_KEY}, "callback_token"),
    ({"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1]}, "encoding_aes_key"),
    ({"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1] + "="}, "encoding_aes_key"),
    ({"callback_token": TOKEN, "encoding_aes_key": AES_KEY + "\n"}, "encoding_aes_key"),
]


@SQLITE_ONLY
@AS_SCRIPT
@pytest.mark.parametrize(
    ("extra", "field"),
    BAD_CALLBACK_INPUTS,
    ids=[f"{field}-{index}" for index, (_, field) in enumerate(BAD_CALLBACK_INPUTS)],
)
def test_api_create_refuses_bad_callback_settings(
    caller: Caller, store: Store, extra: dict[str, Any], field: str
) -> None:
    answer = caller.call("POST", "/admin/api/corps", json=input_of(**extra))
    assert answer.status_code == 422, answer.text
    assert (answer.json()["error"], answer.json()["field"]) == ("invalid", field)
    never_shown(answer)
    assert stored(store) == []
    assert trail(store, "corp.added") == []


def test_api_patch_sets_the_token_then_the_aes_key(
    caller: Caller, store: Store, box: SecretBox
) -> None:
    caller.call("POST", "/admin/api/corps", json=input_of())
    path = f"/admin/api/corps/{CORP_B}"
    token_only = caller.call("PATCH", path, json={"callback_token": TOKEN})
    assert token_only.status_code == 200, token_only.text
    assert token_only.json()["callback"] is False  # the EncodingAESKey is still missing
    both = caller.call("PATCH", path, json={"encoding_aes_key": AES_KEY})
    assert both.json()["callback"] is True
    [row] = stored(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN
    assert box.decrypt(row["encoding_aes_key_encrypted"]) == AES_KEY
    assert [
        (e.actor, e.detail["changed"], e.detail["callback"]) for e in trail(store, "corp.updated")
    ] == [
        (caller.actor, ["callback_token"], False),
        (caller.actor, ["encoding_aes_key"], True),
    ]
    never_shown(*caller.answers)
    never_stored_plain(store)


@AS_SCRIPT
def test_api_patch_replaces_both_and_keeps_the_rest(
    caller: Caller, store: Store, box: SecretBox
) -> None:
    caller.call(
        "POST", "/admin/api/corps", json=input_of(callback_token=TOKEN, encoding_aes_key=AES_KEY)
    )
    body = {"callback_token": NEW_TOKEN, "encoding_aes_key": NEW_AES_KEY}
    answer = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json=body)
    assert (answer.json()["callback"], answer.json()["name"]) == (True, "子公司B")
    [row] = stored(store)
    assert box.decrypt(row["callback_token_encrypted"]) == NEW_TOKEN
    assert box.decrypt(row["encoding_aes_key_encrypted"]) == NEW_AES_KEY
    assert box.decrypt(row["secret_encrypted"]) == SIM_B.secret
    never_shown(*caller.answers)


BAD_CALLBACK_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({"callback_token": ""}, "callback_token"),
    ({"callback_token": "with space"}, "callback_token"),
    ({"callback_token": None}, "callback_token"),
    ({"encoding_aes_key": "short"}, "encoding_aes_key"),
    ({"encoding_aes_key": 43}, "encoding_aes_key"),
    ({"callback_token": NEW_TOKEN, "encoding_aes_key": "bad"}, "encoding_aes_key"),
]


@SQLITE_ONLY
@AS_ADMIN
@pytest.mark.parametrize(
    ("body", "field"),
    BAD_CALLBACK_PATCHES,
    ids=[repr(body)[:40] for body, _ in BAD_CALLBACK_PATCHES],
)
def test_api_patch_refuses_bad_callback_settings_and_changes_nothing(
    caller: Caller, store: Store, body: dict[str, Any], field: str
) -> None:
    caller.call(
        "POST", "/admin/api/corps", json=input_of(callback_token=TOKEN, encoding_aes_key=AES_KEY)
    )
    before = stored(store)
    answer = caller.call("PATCH", f"/admin/api/corps/{CORP_B}", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert stored(store) == before
    assert trail(store, "corp.updated") == []


def test_the_api_documents_the_callback_settings_as_write_only() -> None:
    schemas = document("https://testserver")["components"]["schemas"]
    assert schemas["Corp"]["properties"]["callback"]["type"] == "boolean"
    assert "callback" in schemas["Corp"]["required"]
    for name in ("CorpInput", "CorpPatch"):
        properties = schemas[name]["properties"]
        token, key = properties["callback_token"], properties["encoding_aes_key"]
        assert (token["pattern"], token["writeOnly"]) == (corps.CALLBACK_TOKEN_PATTERN, True)
        assert (key["pattern"], key["writeOnly"]) == (corps.AES_KEY_PATTERN, True)
    assert not {"callback_token", "encoding_aes_key"} & set(schemas["Corp"]["properties"])
    assert schemas["CorpInput"]["dependentRequired"] == {
        "callback_token": ["encoding_aes_key"],
        "encoding_aes_key": ["callback_token"],
    }
    assert "dependentRequired" not in schemas["CorpPatch"]  # each may be replaced alone


# --- the callback settings in the console ---------------------------------------------------------


def callback_state(page: httpx.Response) -> str:
    match = re.search(r'<td id="callback-state">(.*?)</td>', page.text, re.S)
    assert match, page.text
    return match.group(1)


def callback_form(admin_world: AdminWorld, **typed: str) -> httpx.Response:
    path = f"/admin/corps/{CORP_B}"
    data = {"csrf_token": admin_world.csrf(path), **typed}
    return admin_world.console.post(f"{path}/callback", data=data)


@SQLITE_ONLY
def test_the_console_shows_an_unset_callback_and_the_url(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_B)
    page = admin_world.console.get(f"/admin/corps/{CORP_B}")
    assert callback_state(page) == "Not set"
    assert f'id="callback-url">{EVENTS_URL}</code>' in page.text
    assert "Set API receiving" in page.text


@SQLITE_ONLY
def test_the_console_shows_the_url_and_hint_in_chinese(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_B)
    page = admin_world.console.get(f"/admin/corps/{CORP_B}?lang=zh-CN")
    assert callback_state(page) == "未设置"
    assert "接收事件服务器" in page.text and "设置API接收" in page.text
    assert f'id="callback-url">{EVENTS_URL}</code>' in page.text


@SQLITE_ONLY
def test_the_console_fields_are_never_prefilled(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    in_unit(
        store,
        corps.update_corp,
        box,
        CORP_B,
        actor="admin:root",
        callback_token=TOKEN,
        encoding_aes_key=AES_KEY,
    )
    page = admin_world.console.get(f"/admin/corps/{CORP_B}")
    assert callback_state(page) == "Set (never shown)"
    for name in ("callback_token", "encoding_aes_key"):
        field = re.search(rf'<input type="password" id="{name}" name="{name}"[^>]*>', page.text)
        assert field and "value=" not in field.group(0), page.text
    never_shown(page)


def test_setting_the_callback_through_the_console(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    answer = callback_form(admin_world, callback_token=TOKEN, encoding_aes_key=f" {AES_KEY} ")
    path = f"/admin/corps/{CORP_B}"
    assert (answer.status_code, answer.headers["location"]) == (303, f"{path}?done=callback")
    page = admin_world.console.get(answer.headers["location"])
    assert "The callback settings are saved." in page.text
    assert callback_state(page) == "Set (never shown)"
    assert in_unit(store, corps.callback_settings, box, CORP_B) == corps.CallbackSettings(
        CORP_B, TOKEN, AES_KEY
    )
    [event] = trail(store, "corp.updated")
    assert (event.actor, event.detail["changed"]) == (
        "admin:root",
        ["callback_token", "encoding_aes_key"],
    )
    never_shown(answer, page)
    never_stored_plain(store)


@SQLITE_ONLY
def test_the_console_sets_the_token_alone_and_says_incomplete(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    answer = callback_form(admin_world, callback_token=TOKEN, encoding_aes_key="")
    assert answer.status_code == 303
    page = admin_world.console.get(answer.headers["location"])
    assert callback_state(page).startswith("Incomplete")
    [row] = stored(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN
    assert row["encoding_aes_key_encrypted"] is None


@SQLITE_ONLY
def test_the_console_replaces_the_aes_key_alone(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, box: SecretBox
) -> None:
    connect_corp(store, simulator, CORP_B)
    callback_form(admin_world, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    callback_form(admin_world, callback_token="", encoding_aes_key=NEW_AES_KEY)
    assert in_unit(store, corps.callback_settings, box, CORP_B) == corps.CallbackSettings(
        CORP_B, TOKEN, NEW_AES_KEY
    )


#: (what the admin typed, the field marked, its message)
BAD_CALLBACK_FORMS = [
    ({"callback_token": "tok-en"}, "callback_token", "Paste the Token exactly as WeCom shows it"),
    ({"callback_token": "t" * 33}, "callback_token", "Paste the Token exactly as WeCom shows it"),
    (
        {"encoding_aes_key": AES_KEY[:-1]},
        "encoding_aes_key",
        "Paste the EncodingAESKey exactly as WeCom shows it",
    ),
    (
        {"callback_token": NEW_TOKEN, "encoding_aes_key": AES_KEY + "="},
        "encoding_aes_key",
        "Paste the EncodingAESKey exactly as WeCom shows it",
    ),
    ({}, "callback_token", "Type a new Token, a new EncodingAESKey, or both."),
]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("typed", "field", "message"),
    BAD_CALLBACK_FORMS,
    ids=[f"{field}-{index}" for index, (_, field, _) in enumerate(BAD_CALLBACK_FORMS)],
)
def test_console_callback_errors_reshow_the_page_and_change_nothing(
    admin_world: AdminWorld,
    store: Store,
    simulator: WeComSimulator,
    typed: dict[str, str],
    field: str,
    message: str,
) -> None:
    connect_corp(store, simulator, CORP_B)
    before = stored(store)
    answer = callback_form(admin_world, **typed)
    assert answer.status_code == 422
    assert message in answer.text
    assert f'id="{field}-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert 'id="callback-form-error"' in answer.text and 'id="form-error"' not in answer.text
    assert all(value not in answer.text for value in typed.values())  # nothing typed comes back
    assert f'id="callback-url">{EVENTS_URL}</code>' in answer.text
    assert stored(store) == before
    assert trail(store, "corp.updated") == []


# --- the corporation page: what to set in WeCom (issue #16) -------------------------------------


def copyable_values(page: httpx.Response) -> dict[str, str]:
    """Each value the page offers to copy (by its element id), each with its copy button."""
    values = dict(
        re.findall(r'<code class="(?:link|value)" id="([^"]+)">([^<]*)</code>', page.text)
    )
    buttons = set(re.findall(r'data-copy="([^"]+)"', page.text))
    assert set(values) == buttons, (values, buttons)
    return values


@SQLITE_ONLY
def test_the_corporation_page_says_what_to_set_in_wecom_with_copy_buttons(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_B)
    launched = in_unit(
        store,
        clients.create_client,
        "OA 办公",
        ["https://oa.example.com/cb"],
        initiate_login_uri="https://oa.example.com/oidc/initiate",
    ).client.client_id
    in_unit(store, clients.create_client, "No workbench", ["https://nw.example.com/cb"])
    path = f"/admin/corps/{CORP_B}"
    page = admin_world.console.get(path)
    assert copyable_values(page) == {
        "wecom-domain": DOMAIN,
        "wecom-return": f"https://testserver/callback/wecom/{CORP_B}",
        "wecom-events": EVENTS_URL,
        "callback-url": EVENTS_URL,
        f"launch-{launched}": f"https://testserver/launch/{launched}/wecom/{CORP_B}",
    }
    assert "What to set in WeCom" in page.text and "Trusted domain (可信域名)" in page.text
    assert f'id="launch-{launched}-name">OA 办公</span>' in page.text
    assert "docs/wecom-setup.md" in page.text
    assert '<script src="/static/admin-copy.js" defer></script>' in page.text

    chinese = admin_world.console.get(f"{path}?lang=zh-CN")
    assert "需在企业微信中填写的内容" in chinese.text and "工作台链接" in chinese.text
    assert copyable_values(chinese) == copyable_values(page)


@SQLITE_ONLY
def test_without_workbench_apps_the_corporation_page_says_how_to_get_links(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_B)
    page = admin_world.console.get(f"/admin/corps/{CORP_B}")
    assert 'id="wecom-workbench-none"' in page.text
    assert not any(name.startswith("launch-") for name in copyable_values(page))


@SQLITE_ONLY
def test_a_corporation_that_failed_its_test_is_marked_and_kept_off_the_login_page(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    connect_corp(store, simulator, CORP_B)
    console = admin_world.console
    path = f"/admin/corps/{CORP_B}"
    assert 'class="badge' not in console.get("/admin/corps").text
    assert f"/login/wecom/{CORP_B}" in console.get("/login").text

    simulator.configure_app(CORP_B, visible_departments=[])
    console.post(f"{path}/test", data={"csrf_token": admin_world.csrf(path)})
    listing = console.get("/admin/corps")
    badges = re.findall(r'<span class="badge danger">([^<]+)</span>', listing.text)
    assert badges == ["Hidden from the login page: test failed"]  # B only, not A
    page = console.get(path)
    assert '<span class="badge danger" id="hidden-badge">' in page.text
    assert 'id="hidden-card"' in page.text
    login = console.get("/login").text
    assert f"/login/wecom/{CORP_B}" not in login and f"/login/wecom/{CORP_A}" in login
    chinese = console.get(f"{path}?lang=zh-CN")
    assert "未在登录页显示：测试未通过" in chinese.text

    # shown anyway: still marked (its last test failed), on the login page again
    console.post(f"{path}/enable", data={"csrf_token": admin_world.csrf(path), "show": "anyway"})
    page = console.get(f"{path}?lang=en")
    assert '<span class="badge warn" id="failed-badge">Last test failed</span>' in page.text
    listing = console.get("/admin/corps").text
    assert '<span class="badge warn">Last test failed</span>' in listing
    assert f"/login/wecom/{CORP_B}" in console.get("/login").text


@SQLITE_ONLY
def test_the_corporation_pages_show_times_in_the_configured_zone(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator
) -> None:
    connect_corp(store, simulator, CORP_B)
    created = in_unit(store, corps.get_corp, CORP_B).created_at
    shanghai = created.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    page = admin_world.console.get(f"/admin/corps/{CORP_B}")
    assert f"<td>{shanghai:%Y-%m-%d %H:%M}</td>" in page.text
    assert " UTC" not in page.text


@SQLITE_ONLY
def test_a_failed_tests_english_detail_stays_off_the_chinese_page(
    admin_world: AdminWorld, wecom_settings: Settings, store: Store, sms: ConsoleSms,
    simulator: WeComSimulator,
) -> None:  # fmt: skip
    """What the HTTP library said (English) is on the English page only; the Chinese page says
    what happened in Chinese."""
    connect_corp(store, simulator, CORP_B)
    path = f"/admin/corps/{CORP_B}"

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Name or service not known")

    with httpx.Client(transport=httpx.MockTransport(unreachable)) as http:
        offline = create_app(wecom_settings, store=store, sms=sms, wecom_http=http)
        with admin_console(offline) as console:
            console.cookies = admin_world.console.cookies  # the same signed-in admin
            csrf = admin_world.csrf(path)
            english = console.post(f"{path}/test?lang=en", data={"csrf_token": csrf})
            chinese = console.post(f"{path}/test?lang=zh-CN", data={"csrf_token": csrf})
    assert english.status_code == chinese.status_code == 200
    assert "(ConnectError: Name or service not known)" in english.text
    assert "Name or service not known" not in chinese.text
    assert 'data-reason="admin.corp.problem.unavailable"' in chinese.text


@SQLITE_ONLY
@pytest.mark.parametrize("action", ["enable", "disable", "test", "callback"])
def test_a_get_on_a_corporation_form_url_goes_to_its_page(
    admin_world: AdminWorld, store: Store, simulator: WeComSimulator, action: str
) -> None:
    connect_corp(store, simulator, CORP_B)
    answer = admin_world.console.get(f"/admin/corps/{CORP_B}/{action}")
    assert (answer.status_code, answer.headers["location"]) == (303, f"/admin/corps/{CORP_B}")
    assert in_unit(store, corps.get_corp, CORP_B).enabled is True  # nothing done
