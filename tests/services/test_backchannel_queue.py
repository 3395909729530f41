"""iam/services/backchannel.py: the queue of logout tokens commits with the session's end or not
at all, holds one row per session and app, and leases a due row to one sender at a time."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.clocks import Clock
from support.constants import PHONE
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import AccessToken, BackchannelLogout, RefreshToken, User
from iam.db.store import Store
from iam.secretbox import digest
from iam.services import backchannel, clients, sessions, users

URI = "https://crm.example/backchannel-logout"


@pytest.fixture
def zhang(store: Store) -> User:
    return in_unit(store, users.create_user, "张三 Zhang San", PHONE, None)


def _client(store: Store, uri: str | None = URI) -> str:
    registered = in_unit(
        store, clients.create_client, "CRM", ["https://crm.example/cb"], backchannel_logout_uri=uri
    )
    return registered.client.client_id


def _session_with_tokens(store: Store, user: User, *client_ids: str) -> str:
    """A session, and an access token (and a refresh token) of it for each app."""

    def work(db: Session) -> str:
        sid = sessions.start(db, user, ["sms"]).session.id
        now = utcnow()
        for client_id in client_ids:
            db.add(
                AccessToken(
                    jti=secrets.token_hex(8),
                    client_id=client_id,
                    user_id=user.id,
                    sid=sid,
                    scope="openid",
                    expires_at=now + timedelta(minutes=10),
                )
            )
            db.add(
                RefreshToken(
                    token_hash=digest(secrets.token_hex(8)),
                    family_id="f",
                    client_id=client_id,
                    user_id=user.id,
                    scope="openid",
                    sid=sid,
                    auth_time=now,
                    expires_at=now + timedelta(days=1),
                )
            )
        return sid

    return in_unit(store, work)


def _rows(store: Store) -> list[BackchannelLogout]:
    with store() as db:
        return list(db.scalars(select(BackchannelLogout)))


def test_a_unit_that_fails_after_the_end_queues_nothing(store: Store, zhang: User) -> None:
    client_id = _client(store)
    sid = _session_with_tokens(store, zhang, client_id)

    def ended_then_failed(db: Session) -> None:
        sessions.end(db, sid)
        assert len(db.scalars(select(BackchannelLogout)).all()) == 1
        raise RuntimeError("the unit's last step fails")

    with pytest.raises(RuntimeError):
        in_unit(store, ended_then_failed)
    assert _rows(store) == []
    in_unit(store, sessions.end, sid)
    assert [(row.sid, row.client_id, row.user_id) for row in _rows(store)] == [
        (sid, client_id, zhang.id)
    ]


def test_one_row_per_session_and_app_whatever_the_tokens_and_ends(
    store: Store, zhang: User
) -> None:
    told, untold = _client(store), _client(store, None)
    sid = _session_with_tokens(store, zhang, told, told, untold)
    assert in_unit(store, backchannel.enqueue, [sid, sid], "logout") == 1
    assert in_unit(store, backchannel.enqueue, [sid], "logout") == 0
    assert [row.client_id for row in _rows(store)] == [told]


def test_a_claim_is_a_lease(store: Store, zhang: User, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock().install(monkeypatch, backchannel)
    client_id = _client(store)
    sid = _session_with_tokens(store, zhang, client_id)
    in_unit(store, sessions.end, sid)
    (first,) = in_unit(store, backchannel.claim_due)
    assert (first.client_id, first.uri, first.sid, first.sub, first.attempt) == (
        client_id,
        URI,
        sid,
        zhang.id,
        1,
    )
    assert in_unit(store, backchannel.claim_due) == [], "leased to the first sender"
    clock.advance(seconds=backchannel.LEASE.total_seconds())  # its sender died mid-send
    (again,) = in_unit(store, backchannel.claim_due)
    assert (again.id, again.attempt) == (first.id, 2)
    in_unit(store, backchannel.record_sent, again)
    in_unit(store, backchannel.record_failed, first, "late")  # the first sender woke up
    assert [row.status for row in _rows(store)] == ["sent"]


def test_an_app_that_dropped_its_uri_meanwhile_is_not_sent_to(store: Store, zhang: User) -> None:
    client_id = _client(store)
    sid = _session_with_tokens(store, zhang, client_id)
    in_unit(store, sessions.end, sid)
    in_unit(store, clients.update_client, client_id, actor="test", backchannel_logout_uri="")
    assert in_unit(store, backchannel.claim_due) == []
    assert [row.status for row in _rows(store)] == ["given_up"]
