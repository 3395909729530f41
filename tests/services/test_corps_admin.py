"""iam/services/corps.py, the admin's side: reading and changing a corporation, and a live
connection test against WeCom (the simulator, and httpx.MockTransport for a WeCom that cannot
be reached)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient
from support.constants import CORP_A, TEST_SECRET, WECOM_BASE
from support.units import in_unit
from support.wecom import connect_corp

from iam.db.models import AuditEvent, WeComCorp
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.errors import NotFoundError, ValidationError
from iam.federation.wecom.client import WeComApiError, WeComApp, WeComClient
from iam.federation.wecom.tokens import MemoryTokenCache
from iam.secretbox import SecretBox
from iam.services import corps

SIM_A = next(corp for corp in demo_corps() if corp.corp_id == CORP_A)
NEW_SECRET = "n3w-Secret_of-the-app-0123456789abcdefghijk"


def trail(store: Store, event: str) -> list[AuditEvent]:
    with store() as db:
        query = select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
        return list(db.scalars(query))


def row_of(store: Store, corp_id: str = CORP_A) -> dict[str, Any]:
    with store.engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM wecom_corps WHERE corp_id = :id"), {"id": corp_id}
        ).one()
    return dict(row._mapping)


@pytest.fixture
def corp(store: Store, simulator: WeComSimulator) -> WeComCorp:
    connect_corp(store, simulator, CORP_A)
    return in_unit(store, corps.get_corp, CORP_A)


@pytest.fixture
def wecom(simulator: WeComSimulator) -> Iterator[WeComClient]:
    with TestClient(simulator.app, base_url=WECOM_BASE) as http:
        yield WeComClient(WECOM_BASE, http, MemoryTokenCache())


@contextmanager
def offline_client(handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[WeComClient]:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        yield WeComClient(WECOM_BASE, http, MemoryTokenCache())


# --- get_corp and update_corp --------------------------------------------------------------------


def test_get_corp_finds_enabled_and_disabled_corporations(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=False)
    assert in_unit(store, corps.get_corp, CORP_A).enabled is False


@pytest.mark.parametrize("corp_id", ["wwnosuchcorp", "", "a/b", CORP_A + "\n", CORP_A.upper()])
def test_get_corp_of_an_unknown_corporation_is_not_found(
    store: Store, corp: WeComCorp, corp_id: str
) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, corps.get_corp, corp_id)


def test_update_corp_changes_what_is_given_and_audits_it(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    updated = in_unit(
        store,
        corps.update_corp,
        box,
        CORP_A,
        actor="admin:root",
        name="  子公司A（华东） ",
        agent_id=1000009,
    )
    assert (updated.name, updated.agent_id, updated.trust_mobile, updated.enabled) == (
        "子公司A（华东）",
        1000009,
        False,
        True,
    )
    assert box.decrypt(row_of(store)["secret_encrypted"]) == SIM_A.secret  # kept
    in_unit(
        store, corps.update_corp, box, CORP_A, actor="client:ops", trust_mobile=True, enabled=False
    )
    again = in_unit(store, corps.get_corp, CORP_A)
    assert (again.name, again.trust_mobile, again.enabled) == ("子公司A（华东）", True, False)
    events = [(e.actor, e.detail) for e in trail(store, "corp.updated")]
    assert events == [
        (
            "admin:root",
            {
                "corp_id": CORP_A,
                "changed": ["agent_id", "name"],
                "enabled": True,
                "trust_mobile": False,
                "callback": False,
            },
        ),
        (
            "client:ops",
            {
                "corp_id": CORP_A,
                "changed": ["enabled", "trust_mobile"],
                "enabled": False,
                "trust_mobile": True,
                "callback": False,
            },
        ),
    ]


def test_a_new_secret_is_stored_encrypted_and_never_in_the_audit_trail(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", secret=NEW_SECRET)
    row = row_of(store)
    assert all(NEW_SECRET not in str(value) for value in row.values())
    assert box.decrypt(row["secret_encrypted"]) == NEW_SECRET
    [event] = trail(store, "corp.updated")
    assert event.detail["changed"] == ["secret"]
    assert NEW_SECRET not in str(event.detail)


def test_an_update_that_changes_nothing_writes_nothing(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    before = row_of(store)
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root")
    in_unit(
        store,
        corps.update_corp,
        box,
        CORP_A,
        actor="admin:root",
        name=SIM_A.name,
        enabled=True,
        trust_mobile=False,
    )
    assert row_of(store) == before
    assert trail(store, "corp.updated") == []


#: (the field refused, the change asked for)
BAD_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": ""}),
    ("name", {"name": " \t\u3000"}),
    ("name", {"name": "\ufeff"}),
    ("name", {"name": "n" * 201}),
    ("name", {"name": " " + "n" * 200}),  # measured as given, not once stripped
    ("name", {"name": "line\nbreak"}),
    ("name", {"name": "bell\x07"}),
    ("name", {"name": "c1\x85"}),
    ("name", {"name": 7}),
    ("agent_id", {"agent_id": 0}),
    ("agent_id", {"agent_id": -5}),
    ("agent_id", {"agent_id": 2**63}),
    ("agent_id", {"agent_id": True}),
    ("agent_id", {"agent_id": "1000002"}),
    ("secret", {"secret": ""}),
    ("secret", {"secret": " padded"}),
    ("secret", {"secret": "in side"}),
    ("secret", {"secret": "s" * 257}),
    ("secret", {"secret": "秘密"}),
    ("trust_mobile", {"trust_mobile": "yes"}),
    ("enabled", {"enabled": 1}),
    # a valid change beside a bad one is not made either
    ("secret", {"name": "Fine name", "secret": "bad secret"}),
]


@pytest.mark.parametrize(
    ("field", "changes"), BAD_CHANGES, ids=[repr(changes)[:40] for _, changes in BAD_CHANGES]
)
def test_bad_changes_are_refused_and_change_nothing(
    store: Store, box: SecretBox, corp: WeComCorp, field: str, changes: dict[str, Any]
) -> None:
    before = row_of(store)
    with pytest.raises(ValidationError) as refused:
        in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", **changes)
    assert refused.value.field == field
    assert row_of(store) == before
    assert trail(store, "corp.updated") == []


@pytest.mark.parametrize("corp_id", ["wwnosuchcorp", "bad id"])
def test_updating_an_unknown_corporation_is_not_found(
    store: Store, box: SecretBox, corp_id: str
) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, corps.update_corp, box, corp_id, actor="admin:root", name="x")


def test_corp_ids_with_a_trailing_newline_are_refused(store: Store, box: SecretBox) -> None:
    """Python's `$` matches before a final newline; the corp id rule must not."""
    with pytest.raises(ValidationError) as refused:
        in_unit(store, corps.add_corp, box, CORP_A + "\n", "A", 1, "secret")
    assert refused.value.field == "corp_id"


@pytest.mark.parametrize(
    "pattern",
    [corps.CORP_ID_PATTERN, corps.NAME_PATTERN, corps.SECRET_PATTERN],
    ids=["corp_id", "name", "secret"],
)
def test_the_patterns_read_the_same_in_python_and_in_json_schema(pattern: str) -> None:
    """The API's schema carries these patterns (ECMA-262): anchored, no `\\s`, no `\\d`."""
    assert pattern.startswith("^") and pattern.endswith("$")
    assert not re.search(r"\\[sSdDwW]", pattern), pattern
    re.compile(pattern)


# --- test_connection --------------------------------------------------------------------------


def test_a_working_corporation_answers_ok_from_a_live_gettoken(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    app = WeComApp(CORP_A, SIM_A.agent_id, SIM_A.secret)
    cached = wecom.access_token(app)
    assert simulator.calls["gettoken"] == 1
    result = corps.test_connection(store, box, wecom, CORP_A, actor="admin:root")
    assert result == corps.ConnectionResult(ok=True, errcode=0, errmsg="ok", expires_in=7200)
    assert simulator.calls["gettoken"] == 2  # asked WeCom, not the cache
    assert wecom.access_token(app) == cached  # and left the cache as it was
    assert simulator.calls["gettoken"] == 2
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.actor) == ("success", "admin:root")
    assert event.detail == {"corp_id": CORP_A, "errcode": 0, "reason": None, "detail": None}


def test_a_wrong_secret_is_wecoms_40001(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", secret=NEW_SECRET)
    result = corps.test_connection(store, box, wecom, CORP_A, actor="client:ops")
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (
        False,
        40001,
        "invalid credential",
        "wecom.misconfigured",
    )
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.actor, event.detail["errcode"]) == ("failure", "client:ops", 40001)
    assert NEW_SECRET not in str(event.detail) + repr(result)


def test_a_throttled_gettoken_is_busy(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    simulator.fail_next("gettoken", 45009, "api freq out of limit")
    result = corps.test_connection(store, box, wecom, CORP_A)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (
        False,
        45009,
        "api freq out of limit",
        "wecom.busy",
    )
    assert trail(store, "corp.tested")[0].actor == "cli"


def test_an_answer_that_is_not_wecoms_is_unavailable(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    simulator.fail_http("gettoken", 502)
    result = corps.test_connection(store, box, wecom, CORP_A)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (
        False,
        None,
        None,
        "wecom.unavailable",
    )
    assert result.detail and "answered HTTP 502" in result.detail


@pytest.mark.parametrize(
    ("failure", "reason", "said"),
    [
        (httpx.ReadTimeout("read timed out"), "wecom.timeout", "timed out (ReadTimeout)"),
        (httpx.ConnectTimeout("connect timed out"), "wecom.timeout", "timed out"),
        (httpx.ConnectError("[Errno 111] refused"), "wecom.unavailable", "could not be reached"),
    ],
)
def test_a_wecom_that_cannot_be_reached_says_so(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    failure: httpx.HTTPError,
    reason: str,
    said: str,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/cgi-bin/gettoken"
        raise failure

    with offline_client(handler) as wecom:
        result = corps.test_connection(store, box, wecom, CORP_A)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (False, None, None, reason)
    assert result.detail and said in result.detail
    assert SIM_A.secret not in result.detail
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.detail["reason"]) == ("failure", reason)


def test_no_connection_is_held_while_wecom_answers(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    """The app is read in one unit and the answer audited in another: the pooled connection
    (and its transaction) is back in the pool for as long as WeCom takes."""
    held: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        held.append(store.engine.pool.checkedout())  # type: ignore[attr-defined]
        return httpx.Response(
            200, json={"errcode": 0, "errmsg": "ok", "access_token": "t", "expires_in": 7200}
        )

    with offline_client(handler) as wecom:
        assert corps.test_connection(store, box, wecom, CORP_A).ok
    assert held == [0]
    assert [e.outcome for e in trail(store, "corp.tested")] == ["success"]


def test_a_disabled_corporation_can_be_tested(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=False)
    assert corps.test_connection(store, box, wecom, CORP_A).ok


def test_a_secret_that_no_longer_decrypts_is_reported_not_raised(
    store: Store, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    other_key = SecretBox(TEST_SECRET + "-changed")
    result = corps.test_connection(store, other_key, wecom, CORP_A)
    assert (result.ok, result.errcode, result.reason) == (False, None, corps.SECRET_UNREADABLE)
    assert simulator.calls["gettoken"] == 0


def test_testing_an_unknown_corporation_is_not_found(
    store: Store, box: SecretBox, wecom: WeComClient
) -> None:
    with pytest.raises(NotFoundError):
        corps.test_connection(store, box, wecom, "wwnosuchcorp")
    assert trail(store, "corp.tested") == []


# --- WeComClient.fetch_token --------------------------------------------------------------------


def test_fetch_token_always_calls_gettoken_and_raises_its_errors(
    wecom: WeComClient, simulator: WeComSimulator
) -> None:
    app = WeComApp(CORP_A, SIM_A.agent_id, SIM_A.secret)
    assert [wecom.fetch_token(app) for _ in range(3)] == [7200, 7200, 7200]
    assert simulator.calls["gettoken"] == 3
    with pytest.raises(WeComApiError) as refused:
        wecom.fetch_token(WeComApp(CORP_A, SIM_A.agent_id, "wrong"))
    assert refused.value.code == 40001
