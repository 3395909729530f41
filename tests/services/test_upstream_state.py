"""iam/services/upstream.py: the login state (random, browser-bound, single use, 10 minutes),
the provider registry, and failed logins in the audit trail."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from support.clocks import Clock
from support.constants import CORP_A, CORP_B
from support.units import in_unit

from iam.db.models import AuditEvent, UpstreamLogin
from iam.db.store import Store
from iam.errors import NotFoundError
from iam.secretbox import digest
from iam.services import rows as row_keeping
from iam.services import upstream
from iam.services.upstream import LoginStateError, Providers

BROWSER = "browser-one"


def rows(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(UpstreamLogin))


def test_a_state_is_random_letters_and_digits_and_only_its_digest_is_stored(store: Store) -> None:
    states = {
        in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, None).state for _ in range(5)
    }
    assert len(states) == 5
    for state in states:
        assert re.fullmatch(r"[0-9a-f]{48}", state)  # WeCom takes [a-zA-Z0-9], up to 128
    with store() as db:
        stored = db.scalars(select(UpstreamLogin)).all()
    assert {row.id for row in stored} == {digest(state) for state in states}
    assert all(row.browser_hash == digest(BROWSER) for row in stored)


def test_a_state_is_spent_once_and_gives_back_its_flow(store: Store) -> None:
    state = in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, "flow-1").state
    used = in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, state)
    assert (used.flow_id, used.link_user_id) == ("flow-1", None)
    with pytest.raises(LoginStateError):
        in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, state)
    other = in_unit(
        store, upstream.start_login, BROWSER, "wecom", CORP_A, "", link_user_id="user-1"
    ).state
    used = in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, other)
    assert (used.flow_id, used.link_user_id) == (None, "user-1")


#: (browser, provider, connector id, state; None: the one issued) that must be refused
NOT_THIS_CALLBACKS = [
    ("browser-two", "wecom", CORP_A, None),  # another browser
    (BROWSER, "wecom", CORP_B, None),  # another corporation's callback
    (BROWSER, "dingtalk", CORP_A, None),  # another provider's callback
    (BROWSER, "wecom", CORP_A, ""),  # none at all
    (BROWSER, "wecom", CORP_A, "0" * 48),  # one we never gave
    (BROWSER, "wecom", CORP_A, "a" * 129),  # longer than any we give
]


def test_a_state_that_is_not_this_browsers_for_this_callback_is_refused(store: Store) -> None:
    issued = in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, "flow-1").state
    for browser, provider, connector_id, state in NOT_THIS_CALLBACKS:
        offered = issued if state is None else state
        with pytest.raises(LoginStateError):
            in_unit(store, upstream.use_state, browser, provider, connector_id, offered)
    # the refusals did not spend it
    assert in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, issued).flow_id == "flow-1"


def test_a_state_lives_ten_minutes_and_expired_ones_are_swept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, upstream, row_keeping)
    kept = in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, None).state
    late = in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, None).state
    clock.advance(minutes=9, seconds=59)
    assert in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, kept).flow_id is None
    clock.advance(seconds=1)
    with pytest.raises(LoginStateError):
        in_unit(store, upstream.use_state, BROWSER, "wecom", CORP_A, late)
    assert rows(store) == 2
    in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, None)
    assert rows(store) == 1


def test_one_state_spent_by_ten_threads_at_once_wins_once(store: Store) -> None:
    state = in_unit(store, upstream.start_login, BROWSER, "wecom", CORP_A, "flow-1").state
    barrier = threading.Barrier(10)
    results: list[Any] = [None] * 10

    def spend(index: int) -> None:
        barrier.wait()
        try:
            results[index] = in_unit(
                store, upstream.use_state, BROWSER, "wecom", CORP_A, state
            ).flow_id
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            results[index] = error

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results.count("flow-1") == 1
    losers = [r for r in results if r != "flow-1"]
    assert len(losers) == 9 and all(isinstance(r, LoginStateError) for r in losers), losers


def test_record_failure_writes_one_audit_event(store: Store) -> None:
    in_unit(
        store,
        upstream.record_failure,
        "wecom",
        CORP_A,
        "wecom.busy",
        "x" * 800,
        ip="198.51.100.1",
        code=45009,
    )
    with store() as db:
        event = db.scalars(select(AuditEvent)).one()
    assert (event.event, event.outcome, event.ip) == (
        "upstream.login_failed",
        "failure",
        "198.51.100.1",
    )
    assert event.detail["provider"] == "wecom"
    assert event.detail["connector_id"] == CORP_A
    assert event.detail["reason"] == "wecom.busy"
    assert event.detail["code"] == 45009
    assert event.detail["detail"] == "x" * 500


def test_providers_open_the_named_provider_or_refuse() -> None:
    opened: list[str] = []

    def open_wecom(connector_id: str) -> Any:
        opened.append(connector_id)
        return f"connector for {connector_id}"

    providers = Providers({"wecom": open_wecom})
    assert providers.open("wecom", CORP_A) == f"connector for {CORP_A}"
    assert opened == [CORP_A]
    with pytest.raises(NotFoundError):
        providers.open("dingtalk", CORP_A)
