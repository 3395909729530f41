"""Links follow the WeCom directory (issue #13): a leaver's link is disabled with everything
issued with it, a renamed userid re-keys the one link, a changed position reaches the next
token, a leaver who signs in through WeCom again gets the link back, and stored events are
handled once. The directory is a stub here (`look_up`); the HTTP receiver has its own tests."""

from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest
from sqlalchemy import func, select
from support.browser import WeComFront, refresh, tokens_of
from support.constants import CORP_A, RP_REDIRECT
from support.units import in_unit
from support.wecom import META_A
from support.world import World

from iam.db.models import AccessToken, AuditEvent, IdentityLink, RefreshToken, SsoSession
from iam.db.store import Store
from iam.federation.connector import Identity
from iam.federation.wecom.connector import subject_of
from iam.services import clients, directory, users
from iam.services.clients import RegisteredClient

Lookup = Callable[[str, str], Identity | None]


def gone(corp_id: str, userid: str) -> Identity | None:
    """The directory has no such member any more."""
    return None


def now_as(**changes: object) -> Lookup:
    """The directory shows the member with these metadata changes."""

    def look_up(corp_id: str, userid: str) -> Identity:
        subject, key = subject_of(corp_id, userid)
        return Identity("wecom", subject, key, metadata={**META_A, "userid": userid, **changes})

    return look_up


@pytest.fixture
def link_a(store: Store, world: World, wecom_front: WeComFront) -> str:
    """张三's link in subsidiary A (connected, with its simulated WeCom: `wecom_front`)."""
    return in_unit(store, users.link_wecom, world.user.id, CORP_A, "zhangsan_A", META_A).id


@pytest.fixture
def in_a(wecom_front: WeComFront, store: Store, link_a: str) -> WeComFront:
    """A browser signed in through subsidiary A's WeCom: the session's context is link A."""
    came_in = wecom_front.login_as("zhangsan_A", CORP_A)
    assert came_in.status_code == 303, came_in.text
    return wecom_front


@pytest.fixture
def crm(store: Store) -> RegisteredClient:
    return in_unit(store, clients.create_client, "CRM", [RP_REDIRECT], context_policy="required")


def the_link(store: Store, link_id: str) -> IdentityLink:
    with store() as db:
        link = db.get(IdentityLink, link_id)
        assert link is not None
        return link


def events(store: Store, name: str) -> list[AuditEvent]:
    with store() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_a_leaver_loses_the_link_and_everything_issued_with_it(
    in_a: WeComFront, store: Store, crm: RegisteredClient, link_a: str
) -> None:
    tokens = tokens_of(in_a, crm)
    assert directory.follow_member(store, gone, CORP_A, "zhangsan_A") == "disabled"
    link = the_link(store, link_a)
    assert (link.status, link.disabled_reason) == ("disabled", directory.LEFT)
    assert link.disabled_at is not None
    refused = refresh(in_a, crm, tokens["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    with store() as db:
        assert db.scalars(select(SsoSession.context_link_id)).all() == [None]
        assert db.scalar(select(func.count()).where(AccessToken.revoked_at.is_(None))) == 0
        assert db.scalar(select(func.count()).where(RefreshToken.revoked_at.is_(None))) == 0
    (audited,) = events(store, "link.disabled")
    assert audited.detail["reason"] == directory.LEFT and audited.actor == "wecom"
    assert audited.detail["sessions"] == 1 and audited.detail["tokens_revoked"] >= 2


def test_disabling_twice_changes_nothing_the_second_time(store: Store, link_a: str) -> None:
    assert directory.follow_member(store, gone, CORP_A, "zhangsan_A") == "disabled"
    assert directory.follow_member(store, gone, CORP_A, "zhangsan_A") == "already disabled"
    assert len(events(store, "link.disabled")) == 1


def test_a_member_who_is_not_linked_changes_nothing(store: Store, link_a: str) -> None:
    assert directory.follow_member(store, gone, CORP_A, "someone_else") == "no link"
    assert the_link(store, link_a).status == "active"


def test_a_position_change_reaches_the_next_token(
    in_a: WeComFront, store: Store, crm: RegisteredClient, link_a: str
) -> None:
    outcome = directory.follow_member(store, now_as(position="区域总监"), CORP_A, "zhangsan_A")
    assert outcome == "refreshed"
    token = tokens_of(in_a, crm)["id_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["wecom_context"]["position"] == "区域总监"
    (audited,) = events(store, "link.refreshed")
    assert "position" in audited.detail["changed"]
    assert directory.follow_member(store, now_as(position="区域总监"), CORP_A, "zhangsan_A") == (
        "unchanged"
    )


def test_a_rename_rekeys_the_one_link(store: Store, world: World, link_a: str) -> None:
    outcome = directory.rename_member(store, now_as(), CORP_A, "zhangsan_A", "zhang.san")
    assert outcome == "rekeyed, unchanged"
    with store() as db:
        (link,) = db.scalars(select(IdentityLink)).all()
    assert (link.id, link.provider_user_id) == (link_a, f"{CORP_A}/zhang.san")
    assert link.provider_user_key == f"{CORP_A}/zhang.san" and link.status == "active"
    assert link.link_metadata["userid"] == "zhang.san"
    # the same event again finds nothing to re-key
    assert directory.rename_member(store, now_as(), CORP_A, "zhangsan_A", "zhang.san") == (
        "unchanged"
    )


def test_a_rename_onto_a_link_that_already_exists_disables_the_old_one(
    store: Store, world: World, link_a: str
) -> None:
    newer = in_unit(store, users.link_wecom, world.user.id, CORP_A, "zhang.san", META_A).id
    directory.rename_member(store, now_as(), CORP_A, "zhangsan_A", "zhang.san")
    assert the_link(store, link_a).status == "disabled"
    assert the_link(store, newer).status == "active"


def test_a_leaver_who_signs_in_through_wecom_again_gets_the_link_back(
    wecom_front: WeComFront, store: Store, link_a: str
) -> None:
    directory.follow_member(store, gone, CORP_A, "zhangsan_A")
    answer = wecom_front.login_as("zhangsan_A", CORP_A)  # WeCom vouches: a member again
    assert answer.status_code == 303, answer.text
    assert the_link(store, link_a).status == "active"
    assert the_link(store, link_a).disabled_reason is None
    (enabled,) = events(store, "link.enabled")
    assert enabled.actor == "login"


def test_a_stored_event_is_kept_once_and_handled_once(store: Store, link_a: str) -> None:
    fields = {"UserID": "zhangsan_A", "ChangeType": "delete_user"}
    first = in_unit(store, directory.store_event, CORP_A, "cipher-1", "delete_user", fields)
    assert first is not None
    assert in_unit(store, directory.store_event, CORP_A, "cipher-1", "delete_user", fields) is None
    assert directory.handle_pending(store, gone) == 1
    assert directory.handle_event(store, gone, first) == "already handled"
    assert directory.handle_pending(store, gone) == 0
    assert the_link(store, link_a).status == "disabled"


def test_an_update_with_a_new_userid_is_a_rename(store: Store, link_a: str) -> None:
    fields = {"UserID": "zhangsan_A", "NewUserID": "zhang.san"}
    event = in_unit(store, directory.store_event, CORP_A, "cipher-2", "update_user", fields)
    assert event is not None
    assert directory.handle_event(store, now_as(), event) == "rekeyed, unchanged"
    assert the_link(store, link_a).provider_user_id == f"{CORP_A}/zhang.san"


@pytest.mark.parametrize("change_type", ["update_tag", "subscribe"])
def test_other_events_are_stored_and_ignored(store: Store, link_a: str, change_type: str) -> None:
    event = in_unit(store, directory.store_event, CORP_A, change_type, change_type, {"Id": "2"})
    assert event is not None
    assert directory.handle_event(store, gone, event) == "ignored"
    assert the_link(store, link_a).status == "active"


def test_a_department_event_is_handled_without_touching_links(store: Store, link_a: str) -> None:
    event = in_unit(store, directory.store_event, CORP_A, "party", "update_party", {"Id": "2"})
    assert event is not None
    assert directory.handle_event(store, gone, event) == "departments read again"
    assert the_link(store, link_a).status == "active"
