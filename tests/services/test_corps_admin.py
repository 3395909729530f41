"""iam/services/corps.py, the admin's side: reading and changing a corporation, and a live
connection test against WeCom (the simulator, and httpx.MockTransport for a WeCom that cannot
be reached)."""

from __future__ import annotations

import json
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

#: The issuer's host, as `corps.issuer_domain` gives it: what the app's trusted domain must be.
DOMAIN = "iam.example.com"
AGENT = {
    "errcode": 0,
    "errmsg": "ok",
    "agentid": SIM_A.agent_id,
    "name": "统一登录",
    "allow_userinfos": {"user": []},
    "allow_partys": {"partyid": [1]},
    "allow_tags": {"tagid": []},
    "close": 0,
    "redirect_domain": DOMAIN,
}
TOKEN = {"errcode": 0, "errmsg": "ok", "access_token": "t", "expires_in": 7200}
IP_60020 = (
    "not allow to access from your ip, hint: [1733460000_61_8a1b], from ip: 198.51.100.23, "
    "more info at https://open.work.weixin.qq.com/devtool/query?e=60020"
)


def run_test(
    store: Store, box: SecretBox, wecom: WeComClient, **options: Any
) -> corps.ConnectionResult:
    return corps.test_connection(store, box, wecom, CORP_A, domain=DOMAIN, **options)


def reasons(result: corps.ConnectionResult) -> list[str]:
    return [problem.reason for problem in result.problems]


def answering(**answers: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    """WeCom answering each API (by its path after /cgi-bin/, `/` as `_`) as given."""

    def handler(request: httpx.Request) -> httpx.Response:
        api = request.url.path.partition("/cgi-bin/")[2].replace("/", "_")
        return httpx.Response(200, json=answers[api])

    return handler


@pytest.fixture
def configured(simulator: WeComSimulator) -> WeComSimulator:
    """Subsidiary A's app trusts the issuer's domain (the simulator's default is its own host)."""
    simulator.configure_app(CORP_A, redirect_domain=DOMAIN)
    return simulator


def test_a_working_corporation_passes_a_live_gettoken_and_agent_get(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    app = WeComApp(CORP_A, SIM_A.agent_id, SIM_A.secret)
    cached = wecom.access_token(app)
    assert configured.calls["gettoken"] == 1
    result = run_test(store, box, wecom, actor="admin:root")
    assert result == corps.ConnectionResult(
        ok=True, errcode=0, errmsg="ok", expires_in=7200, api="agent/get", app_name="统一登录"
    )
    assert configured.calls["gettoken"] == 2  # asked WeCom, not the cache
    assert configured.calls["agent_get"] == 1
    assert wecom.access_token(app) == cached  # and left the cache as it was
    assert configured.calls["gettoken"] == 2
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.actor) == ("success", "admin:root")
    assert event.detail == {
        "corp_id": CORP_A,
        "api": "agent/get",
        "errcode": 0,
        "reason": None,
        "problems": [],
        "seen_ip": None,
        "detail": None,
    }
    row = row_of(store)
    assert (row["last_test_ok"], row["hidden_by_test"]) == (True, False)
    assert row["last_tested_at"] is not None


def test_a_wrong_secret_is_wecoms_40001(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", secret=NEW_SECRET)
    result = run_test(store, box, wecom, actor="client:ops")
    assert (result.ok, result.api, result.errcode, result.errmsg, result.reason) == (
        False,
        "gettoken",
        40001,
        "invalid credential",
        corps.SECRET_WRONG,
    )
    assert reasons(result) == [corps.SECRET_WRONG]
    assert configured.calls["agent_get"] == 0  # nothing more to learn without a token
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.actor, event.detail["errcode"]) == ("failure", "client:ops", 40001)
    assert event.detail["problems"] == [corps.SECRET_WRONG]
    assert NEW_SECRET not in str(event.detail) + repr(result)


@pytest.mark.parametrize(
    ("errcode", "errmsg", "reason"),
    [
        (40013, "invalid corpid", corps.CORP_ID_WRONG),
        (40091, "secret is invalid", corps.SECRET_WRONG),
        (41004, "corpsecret missing", corps.SECRET_WRONG),
    ],
)
def test_gettoken_refusals_say_which_value_is_wrong(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    wecom: WeComClient,
    configured: WeComSimulator,
    errcode: int,
    errmsg: str,
    reason: str,
) -> None:
    configured.fail_next("gettoken", errcode, errmsg)
    result = run_test(store, box, wecom)
    assert (result.ok, result.errcode, result.errmsg, reasons(result)) == (
        False,
        errcode,
        errmsg,
        [reason],
    )


def test_an_unknown_corp_id_is_40013_from_the_simulator(
    store: Store, box: SecretBox, wecom: WeComClient, configured: WeComSimulator
) -> None:
    in_unit(store, corps.add_corp, box, "wwnotatwecom", "X", 1000002, SIM_A.secret)
    result = corps.test_connection(store, box, wecom, "wwnotatwecom", domain=DOMAIN)
    assert (result.errcode, reasons(result)) == (40013, [corps.CORP_ID_WRONG])


def test_an_agent_id_of_another_app_is_said(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="t", agent_id=1000099)
    result = run_test(store, box, wecom)
    assert (result.api, result.errcode, reasons(result)) == (
        "agent/get",
        40056,
        [corps.AGENT_WRONG],
    )


def test_a_closed_app_with_nobody_visible_reports_both(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    configured.configure_app(CORP_A, closed=True, visible_departments=[])
    result = run_test(store, box, wecom)
    assert (result.ok, result.errcode, result.api) == (False, 0, "agent/get")
    assert reasons(result) == [corps.APP_CLOSED, corps.NOBODY_VISIBLE]
    assert result.reason == corps.APP_CLOSED
    [event] = trail(store, "corp.tested")
    assert event.detail["problems"] == [corps.APP_CLOSED, corps.NOBODY_VISIBLE]
    row = row_of(store)
    assert (row["last_test_ok"], row["hidden_by_test"]) == (False, True)
    problems = row["last_test_problems"]
    assert (json.loads(problems) if isinstance(problems, str) else problems) == [
        {"reason": corps.APP_CLOSED, "params": {}},
        {"reason": corps.NOBODY_VISIBLE, "params": {}},
    ]


@pytest.mark.parametrize(
    "visible",
    [
        {"visible_departments": [], "visible_users": ["lisi"]},
        {"visible_departments": [], "visible_tags": [3]},
        {"visible_departments": [2]},
    ],
    ids=["a-member", "a-tag", "a-department"],
)
def test_anyone_in_the_visible_range_is_enough(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    wecom: WeComClient,
    configured: WeComSimulator,
    visible: dict[str, Any],
) -> None:
    configured.configure_app(CORP_A, **visible)
    assert run_test(store, box, wecom).ok


def test_an_untrusted_address_is_60020_with_the_address_wecom_saw(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    configured.configure_app(CORP_A, trusted_ips=["198.51.100.7"])
    result = run_test(store, box, wecom)
    assert (result.ok, result.api, result.errcode, result.seen_ip) == (
        False,
        "agent/get",
        60020,
        "203.0.113.9",
    )
    assert result.problems == (corps.Problem(corps.IP_NOT_TRUSTED, {"ip": "203.0.113.9"}),)
    assert result.errmsg and "from ip: 203.0.113.9" in result.errmsg
    [event] = trail(store, "corp.tested")
    assert (event.detail["seen_ip"], event.detail["problems"]) == (
        "203.0.113.9",
        [corps.IP_NOT_TRUSTED],
    )
    configured.configure_app(CORP_A, trusted_ips=["198.51.100.7", "203.0.113.9"])
    assert run_test(store, box, wecom).ok


def test_a_60020_without_an_address_still_says_to_trust_this_server(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    refused = {"errcode": 60020, "errmsg": "not allow to access from your ip"}
    with offline_client(answering(gettoken=TOKEN, agent_get=refused)) as wecom:
        result = run_test(store, box, wecom)
    assert (result.seen_ip, reasons(result)) == (None, [corps.IP_NOT_TRUSTED_UNSEEN])


def test_a_real_60020_errmsg_gives_its_address(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    with offline_client(
        answering(gettoken=TOKEN, agent_get={"errcode": 60020, "errmsg": IP_60020})
    ) as wecom:
        result = run_test(store, box, wecom)
    assert result.problems == (corps.Problem(corps.IP_NOT_TRUSTED, {"ip": "198.51.100.23"}),)


def test_a_60020_from_gettoken_is_the_same_problem(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    """Whether WeCom checks gettoken's caller is not confirmed (wecom-api.md 4): if it does, the
    admin reads the same words."""
    refused = {"errcode": 60020, "errmsg": IP_60020}
    with offline_client(answering(gettoken=refused)) as wecom:
        result = run_test(store, box, wecom)
    assert (result.api, result.seen_ip) == ("gettoken", "198.51.100.23")
    assert reasons(result) == [corps.IP_NOT_TRUSTED]


@pytest.mark.parametrize(
    ("errmsg", "address"),
    [
        (IP_60020, "198.51.100.23"),
        (
            "not allow to access from your ip, hint: [x], from ip: 2001:db8::5, more info",
            "2001:db8::5",
        ),
        ("not allow to access from your ip, from ip:10.0.0.1", "10.0.0.1"),
        ("not allow to access from your ip, hint: [x], from ip: 999.1.1.1, more", None),
        ("not allow to access from your ip", None),
    ],
)
def test_seen_ip_reads_the_address_out_of_the_errmsg(errmsg: str, address: str | None) -> None:
    assert corps.seen_ip(errmsg) == address


@pytest.mark.parametrize(
    ("trusted", "problem"),
    [
        (
            "other.example.com",
            corps.Problem(
                corps.DOMAIN_MISMATCH, {"domain": "other.example.com", "expected": DOMAIN}
            ),
        ),
        ("", corps.Problem(corps.DOMAIN_UNSET, {"expected": DOMAIN})),
        (
            "iam.example.com:8443",
            corps.Problem(
                corps.DOMAIN_MISMATCH, {"domain": "iam.example.com:8443", "expected": DOMAIN}
            ),
        ),
    ],
    ids=["another", "none", "another-port"],
)
def test_a_trusted_domain_other_than_the_issuers_is_said(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    wecom: WeComClient,
    configured: WeComSimulator,
    trusted: str,
    problem: corps.Problem,
) -> None:
    configured.configure_app(CORP_A, redirect_domain=trusted)
    result = run_test(store, box, wecom)
    assert (result.ok, result.problems) == (False, (problem,))


@pytest.mark.parametrize("trusted", ["IAM.example.com", "https://iam.example.com/"])
def test_the_trusted_domain_is_compared_leniently(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    wecom: WeComClient,
    configured: WeComSimulator,
    trusted: str,
) -> None:
    configured.configure_app(CORP_A, redirect_domain=trusted)
    assert run_test(store, box, wecom).ok


@pytest.mark.parametrize(
    ("issuer", "domain"),
    [
        ("https://iam.example.com", "iam.example.com"),
        ("https://IAM.example.com:443/", "iam.example.com"),
        ("https://iam.example.com:8443", "iam.example.com:8443"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://localhost:80/iam", "localhost"),
    ],
)
def test_issuer_domain_is_the_host_and_a_port_that_is_not_the_default(
    issuer: str, domain: str
) -> None:
    assert corps.issuer_domain(issuer) == domain


def test_everything_wrong_at_once_is_said_at_once(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    agent = {**AGENT, "close": 1, "redirect_domain": "old.example.com", "allow_partys": {}}
    with offline_client(answering(gettoken=TOKEN, agent_get=agent)) as wecom:
        result = run_test(store, box, wecom)
    assert reasons(result) == [corps.APP_CLOSED, corps.DOMAIN_MISMATCH, corps.NOBODY_VISIBLE]


def test_a_throttled_gettoken_is_busy(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    simulator.fail_next("gettoken", 45009, "api freq out of limit")
    result = run_test(store, box, wecom)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (
        False,
        45009,
        "api freq out of limit",
        corps.BUSY,
    )
    assert result.problems == (corps.Problem(corps.BUSY, {"errcode": "45009"}),)
    assert trail(store, "corp.tested")[0].actor == "cli"


@pytest.mark.parametrize(
    ("errmsg", "readable"),
    [
        (IP_60020, "not allow to access from your ip, hint: [1733460000_61_8a1b], from ip: "
         "198.51.100.23"),
        ("api forbidden, more info at https://open.work.weixin.qq.com/devtool/query?e=48002",
         "api forbidden"),
        ("invalid credential", "invalid credential"),
    ],
)  # fmt: skip
def test_readable_errmsg_drops_wecoms_help_link(errmsg: str, readable: str) -> None:
    assert corps.readable_errmsg(errmsg) == readable


def test_another_refusal_is_quoted(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    configured.fail_next("agent_get", 48002, "api forbidden")
    result = run_test(store, box, wecom)
    assert result.problems == (
        corps.Problem(
            corps.REFUSED, {"api": "agent/get", "errcode": "48002", "errmsg": "api forbidden"}
        ),
    )


def test_an_answer_that_is_not_wecoms_is_unavailable(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    simulator.fail_http("gettoken", 502)
    result = run_test(store, box, wecom)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (
        False,
        None,
        None,
        corps.UNAVAILABLE,
    )
    assert result.detail and "answered HTTP 502" in result.detail


def test_agent_get_not_answering_is_unavailable_too(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    configured.fail_http("agent_get", 503)
    result = run_test(store, box, wecom)
    assert (result.ok, result.api, reasons(result)) == (False, "agent/get", [corps.UNAVAILABLE])


@pytest.mark.parametrize(
    ("failure", "reason", "said"),
    [
        (httpx.ReadTimeout("read timed out"), corps.TIMEOUT, "timed out (ReadTimeout)"),
        (httpx.ConnectTimeout("connect timed out"), corps.TIMEOUT, "timed out"),
        (httpx.ConnectError("[Errno 111] refused"), corps.UNAVAILABLE, "could not be reached"),
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
        result = run_test(store, box, wecom)
    assert (result.ok, result.errcode, result.errmsg, result.reason) == (False, None, None, reason)
    assert result.detail and said in result.detail
    assert SIM_A.secret not in result.detail
    [event] = trail(store, "corp.tested")
    assert (event.outcome, event.detail["reason"]) == ("failure", reason)


def test_no_connection_is_held_while_wecom_answers(
    store: Store, box: SecretBox, corp: WeComCorp
) -> None:
    """The app is read in one unit and the answer kept and audited in another: the pooled
    connection (and its transaction) is back in the pool for as long as WeCom takes."""
    held: list[int] = []
    answer = answering(gettoken=TOKEN, agent_get=AGENT)

    def handler(request: httpx.Request) -> httpx.Response:
        held.append(store.engine.pool.checkedout())  # type: ignore[attr-defined]
        return answer(request)

    with offline_client(handler) as wecom:
        assert run_test(store, box, wecom).ok
    assert held == [0, 0, 0]  # gettoken (live), gettoken (for the cache), agent/get
    assert [e.outcome for e in trail(store, "corp.tested")] == ["success"]


def test_a_disabled_corporation_can_be_tested(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=False)
    assert run_test(store, box, wecom).ok


def test_a_secret_that_no_longer_decrypts_is_reported_not_raised(
    store: Store, corp: WeComCorp, wecom: WeComClient, simulator: WeComSimulator
) -> None:
    other_key = SecretBox(TEST_SECRET + "-changed")
    result = run_test(store, other_key, wecom)
    assert (result.ok, result.errcode, result.reason) == (False, None, corps.SECRET_UNREADABLE)
    assert reasons(result) == [corps.SECRET_UNREADABLE]
    assert simulator.calls["gettoken"] == 0
    assert row_of(store)["hidden_by_test"]


def test_testing_an_unknown_corporation_is_not_found(
    store: Store, box: SecretBox, wecom: WeComClient
) -> None:
    with pytest.raises(NotFoundError):
        corps.test_connection(store, box, wecom, "wwnosuchcorp", domain=DOMAIN)
    assert trail(store, "corp.tested") == []


# --- the login page's list: a failed test hides, a passing one or an admin shows ------------------


def login_page(store: Store) -> list[str]:
    return [corp.corp_id for corp in in_unit(store, corps.list_corps, on_login_page=True)]


def test_a_failed_test_hides_and_a_passing_test_shows_again(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    assert login_page(store) == [CORP_A]  # never tested: shown
    configured.configure_app(CORP_A, closed=True)
    assert not run_test(store, box, wecom).ok
    assert login_page(store) == []
    # still enabled: the directory sync and links through it go on
    assert [c.corp_id for c in in_unit(store, corps.list_corps, enabled_only=True)] == [CORP_A]
    configured.configure_app(CORP_A, closed=False)
    assert run_test(store, box, wecom).ok
    assert login_page(store) == [CORP_A]


def test_an_admin_who_enables_it_shows_it_although_its_test_failed(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    configured.configure_app(CORP_A, visible_departments=[])
    run_test(store, box, wecom)
    assert login_page(store) == []
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", name="子公司A（新）")
    assert login_page(store) == []  # another change is not enabling
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=True)
    assert login_page(store) == [CORP_A]
    updated = trail(store, "corp.updated")[-1]
    assert updated.detail["changed"] == ["hidden_by_test"]
    got = in_unit(store, corps.get_corp, CORP_A)
    assert (got.last_test_ok, got.hidden_by_test, corps.shown_on_login_page(got)) == (
        False,
        False,
        True,
    )
    # the next failed test hides it again
    run_test(store, box, wecom)
    assert login_page(store) == []


@pytest.mark.parametrize("failure", ["busy", "unreachable"])
def test_a_test_that_meets_a_slow_or_busy_wecom_hides_nothing_and_shows_nothing(
    store: Store,
    box: SecretBox,
    corp: WeComCorp,
    wecom: WeComClient,
    configured: WeComSimulator,
    failure: str,
) -> None:
    """Problems of the moment say nothing of the set-up: the login page stays as it was."""

    def fail() -> None:
        if failure == "busy":
            configured.fail_next("gettoken", 45009, "api freq out of limit")
        else:
            configured.fail_http("gettoken", 502)

    fail()
    result = run_test(store, box, wecom)
    assert not result.ok and reasons(result)[0] in corps.PASSING_PROBLEMS
    assert login_page(store) == [CORP_A]  # still shown
    configured.configure_app(CORP_A, closed=True)
    run_test(store, box, wecom)
    assert login_page(store) == []
    fail()
    run_test(store, box, wecom)
    assert login_page(store) == []  # still hidden: the set-up problem is not known to be fixed


def test_a_disabled_corporation_is_never_on_the_login_page(
    store: Store, box: SecretBox, corp: WeComCorp, wecom: WeComClient, configured: WeComSimulator
) -> None:
    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=False)
    assert run_test(store, box, wecom).ok
    assert login_page(store) == []


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
