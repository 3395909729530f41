"""Reconciliation (`iam corps sync`, issue #13 section 3): every active link of a corporation
is checked against the WeCom directory (the dev simulator, reached over its HTTP API), because
callbacks get lost. A member removed without any event is disabled, a changed one refreshed, a
second run changes nothing; WeCom's 45009 is waited out, a member WeCom cannot be asked about
fails alone; stored events not handled yet are handled first."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from support.constants import CORP_A, CORP_B
from support.units import in_unit

from iam.db.models import AuditEvent, DirectoryEvent, IdentityLink
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.errors import IamError, NotFoundError
from iam.federation.wecom.client import WeComApiError
from iam.services import corps, directory, users
from iam.services.directory import Lookup, SyncSummary

#: Subsidiary A's members linked here, in the order their links were made (the sync's order).
MEMBERS_A = ("lisi", "wangfang", "zhangsan_A")
PHONES = {
    "lisi": "+8613900139000",
    "wangfang": "+8613900139001",
    "zhangsan_A": "+8613800138000",
    "zs_b": "+8613800138001",
}


@pytest.fixture
def look_up(wecom_app) -> Lookup:
    """The app's own way of asking the directory (user/get through the corporation's app)."""
    lookup: Lookup = wecom_app.state.directory_lookup
    return lookup


def link_member(store: Store, look_up: Lookup, corp_id: str, userid: str) -> str:
    """A person linked to the member, with the metadata the directory shows now."""
    identity = look_up(corp_id, userid)
    assert identity is not None
    user = in_unit(store, users.create_user, userid, PHONES[userid])
    return in_unit(store, users.link_wecom, user.id, corp_id, userid, identity.metadata).id


@pytest.fixture
def links(store: Store, look_up: Lookup) -> dict[str, str]:
    """userid -> link id, for subsidiary A's linked members."""
    return {userid: link_member(store, look_up, CORP_A, userid) for userid in MEMBERS_A}


class Sleeps(list[float]):
    """Records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps(wecom_app) -> Sleeps:
    """The sync's waits, recorded; the WeCom client's clock moves on by them (so a corporation
    WeCom blocked for a minute is free again after a wait of a minute)."""
    waits = Sleeps()
    client = wecom_app.state.wecom
    real = client._clock
    client._clock = lambda: real() + sum(waits)
    return waits


def sync(store: Store, look_up: Lookup, sleeps: Sleeps, **options: object) -> SyncSummary:
    options.setdefault("pause", 0)
    return directory.reconcile(store, look_up, CORP_A, sleep=sleeps, **options)  # type: ignore[arg-type]


def the_link(store: Store, link_id: str) -> IdentityLink:
    with store() as db:
        link = db.get(IdentityLink, link_id)
        assert link is not None
        return link


def audited(store: Store, name: str) -> list[AuditEvent]:
    with store() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def outcomes(summary: SyncSummary) -> dict[str, str]:
    return {member.userid: member.outcome for member in summary.members}


def test_a_member_removed_without_any_event_is_disabled(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.remove_member(CORP_A, "wangfang")
    summary = sync(store, look_up, sleeps)
    assert (summary.checked, summary.disabled, summary.unchanged, summary.failed) == (3, 1, 2, 0)
    assert outcomes(summary)["wangfang"] == directory.DISABLED
    link = the_link(store, links["wangfang"])
    assert (link.status, link.disabled_reason) == ("disabled", directory.LEFT)
    assert all(the_link(store, links[u]).status == "active" for u in ("lisi", "zhangsan_A"))
    (disabled,) = audited(store, "link.disabled")
    assert disabled.actor == directory.ACTOR
    assert disabled.detail["link_id"] == links["wangfang"]


def test_a_position_change_is_refreshed(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.update_member(CORP_A, "lisi", position="销售总监")
    summary = sync(store, look_up, sleeps)
    assert (summary.checked, summary.refreshed, summary.unchanged) == (3, 1, 2)
    assert outcomes(summary)["lisi"] == directory.REFRESHED
    link = the_link(store, links["lisi"])
    assert link.status == "active" and link.link_metadata["position"] == "销售总监"
    (refreshed,) = audited(store, "link.refreshed")
    assert refreshed.detail["changed"] == ["position"]


def test_a_second_sync_changes_nothing(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.remove_member(CORP_A, "wangfang")
    simulator.update_member(CORP_A, "lisi", position="销售总监")
    first = sync(store, look_up, sleeps)
    assert (first.disabled, first.refreshed) == (1, 1)
    second = sync(store, look_up, sleeps)
    # The disabled link is no longer active: only the other two are checked, and both stay.
    assert (second.checked, second.disabled, second.refreshed, second.unchanged) == (2, 0, 0, 2)
    assert len(audited(store, "link.disabled")) == 1
    assert len(audited(store, "link.refreshed")) == 1


def test_members_are_paced(
    store: Store, look_up: Lookup, links: dict[str, str], sleeps: Sleeps
) -> None:
    summary = sync(store, look_up, sleeps, pause=0.25)
    assert summary.checked == 3
    assert sleeps == [0.25, 0.25]  # between members, not before the first


def test_45009_is_waited_out_then_the_member_is_handled(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.remove_member(CORP_A, "lisi")  # the first member walked
    before = simulator.calls["user_get"]
    simulator.fail_next("user_get", 45009, "api freq out of limit", times=2)
    summary = sync(store, look_up, sleeps, backoff=(61.0, 62.0, 63.0))
    assert sleeps == [61.0, 62.0]
    assert simulator.calls["user_get"] - before == 3 + 2  # the first member asked three times
    assert (summary.checked, summary.disabled, summary.failed) == (3, 1, 0)
    assert the_link(store, links["lisi"]).status == "disabled"


def test_45009_past_every_wait_fails_that_member_and_the_sync_goes_on(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.update_member(CORP_A, "zhangsan_A", position="销售总监")
    simulator.fail_next("user_get", 45009, "api freq out of limit", times=3)
    summary = sync(store, look_up, sleeps, backoff=(61.0, 62.0))
    # WeCom blocks the whole corporation for a minute: the next member waits it out once
    assert sleeps == [61.0, 62.0, 61.0]
    assert outcomes(summary) == {
        "lisi": directory.FAILED,
        "wangfang": directory.UNCHANGED,
        "zhangsan_A": directory.REFRESHED,
    }
    assert (summary.failed, summary.failed_userids) == (1, ["lisi"])
    assert the_link(store, links["lisi"]).status == "active"


def test_a_member_wecom_cannot_be_asked_about_fails_and_the_others_go_on(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    simulator.remove_member(CORP_A, "zhangsan_A")
    simulator.fail_http("user_get", 502)  # the first member: WeCom answers a proxy's error page
    summary = sync(store, look_up, sleeps)
    assert outcomes(summary) == {
        "lisi": directory.FAILED,
        "wangfang": directory.UNCHANGED,
        "zhangsan_A": directory.DISABLED,
    }
    assert (summary.checked, summary.failed, summary.disabled) == (3, 1, 1)
    assert sleeps == []  # not WeCom's rate limit: no backoff
    assert the_link(store, links["lisi"]).status == "active"
    (synced,) = audited(store, "directory.synced")
    assert synced.outcome == "failure" and synced.detail["failed"] == 1


def test_after_failures_in_a_row_the_rest_is_left_for_the_next_sync(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    before = simulator.calls["user_get"]
    simulator.fail_http("user_get", 503, times=10)
    summary = sync(store, look_up, sleeps, give_up_after=2)
    assert summary.failed == 3 and summary.failed_userids == list(MEMBERS_A)
    assert simulator.calls["user_get"] - before == 2  # the third member was not asked
    assert all(the_link(store, link_id).status == "active" for link_id in links.values())


def test_an_unhandled_stored_event_is_handled_by_the_sync(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    """A rename is known only from its event: the sync handles the stored event first (the
    link is re-keyed), and the walk then finds the renamed member, not a leaver."""
    simulator.update_member(CORP_A, "lisi", userid="lisi_new")
    fields = {"ChangeType": "update_user", "UserID": "lisi", "NewUserID": "lisi_new"}
    event_id = in_unit(store, directory.store_event, CORP_A, "cipher-r", "update_user", fields)
    summary = sync(store, look_up, sleeps)
    assert (summary.events, summary.events_left) == (1, 0)
    assert (summary.checked, summary.disabled, summary.failed) == (3, 0, 0)
    link = the_link(store, links["lisi"])
    assert (link.status, link.provider_user_id) == ("active", f"{CORP_A}/lisi_new")
    with store() as db:
        event = db.get(DirectoryEvent, event_id)
        assert event is not None and event.handled_at is not None
        assert event.outcome is not None and event.outcome.startswith("rekeyed")


def test_an_event_wecom_cannot_be_asked_about_stays_for_the_next_sync(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], sleeps: Sleeps
) -> None:
    fields = {"ChangeType": "delete_user", "UserID": "wangfang"}
    event_id = in_unit(store, directory.store_event, CORP_A, "cipher-d", "delete_user", fields)
    simulator.fail_http("user_get", 502)
    summary = sync(store, look_up, sleeps)
    assert (summary.events, summary.events_left, summary.failed) == (0, 1, 0)
    with store() as db:
        event = db.get(DirectoryEvent, event_id)
        assert event is not None and event.handled_at is None
    assert sync(store, look_up, sleeps).events == 1


def test_another_corporations_events_wait_for_its_own_sync(
    store: Store, look_up: Lookup, links: dict[str, str], sleeps: Sleeps
) -> None:
    fields = {"ChangeType": "delete_user", "UserID": "zs_b"}
    event_id = in_unit(store, directory.store_event, CORP_B, "cipher-b", "delete_user", fields)
    assert sync(store, look_up, sleeps).events == 0
    with store() as db:
        event = db.get(DirectoryEvent, event_id)
        assert event is not None and event.handled_at is None


def test_every_enabled_corporation_is_synced_and_a_disabled_one_refused(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str], box
) -> None:
    link_b = link_member(store, look_up, CORP_B, "zs_b")
    simulator.remove_member(CORP_B, "zs_b")
    summaries = directory.reconcile_all(store, look_up, pause=0, sleep=Sleeps())
    assert [(s.corp_id, s.checked, s.disabled) for s in summaries] == [
        (CORP_A, 3, 0),
        (CORP_B, 1, 1),
    ]
    assert the_link(store, link_b).status == "disabled"
    in_unit(store, corps.update_corp, box, CORP_B, actor="test", enabled=False)
    assert in_unit(store, directory.sync_targets) == [CORP_A]
    with pytest.raises(IamError, match="disabled"):
        in_unit(store, directory.sync_targets, CORP_B)
    with pytest.raises(NotFoundError):
        in_unit(store, directory.sync_targets, "wwunknown0000")


def test_targets_are_checked_before_anything_is_synced(
    store: Store, look_up: Lookup, simulator: WeComSimulator, links: dict[str, str]
) -> None:
    simulator.remove_member(CORP_A, "lisi")
    before = simulator.calls["user_get"]
    with pytest.raises(NotFoundError):
        directory.reconcile_all(store, look_up, "wwunknown0000", pause=0, sleep=Sleeps())
    assert simulator.calls["user_get"] == before
    assert the_link(store, links["lisi"]).status == "active"


def answering(*answers: object) -> Callable[[], object]:
    """A call that raises or returns each of `answers` in turn."""
    queue = list(answers)

    def call() -> object:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


@pytest.mark.parametrize("code", sorted(directory.THROTTLED))
def test_asked_too_often_is_waited_out(code: int) -> None:
    sleeps = Sleeps()
    call = answering(WeComApiError("user/get", code, "api freq out of limit"), "ok")
    assert directory.with_backoff(call, (7.0,), sleeps) == "ok"
    assert sleeps == [7.0]


def test_other_wecom_errors_are_not_retried() -> None:
    sleeps = Sleeps()
    call = answering(WeComApiError("user/get", 60011, "no privilege"), "ok")
    with pytest.raises(WeComApiError):
        directory.with_backoff(call, (7.0,), sleeps)
    assert sleeps == []
