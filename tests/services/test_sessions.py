"""iam/services/sessions.py: server-side SSO sessions behind an opaque cookie."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from support.clocks import Clock
from support.units import in_unit, signed_in

from iam.clock import utcnow
from iam.db.models import AccessToken, AuditEvent, RefreshToken, SsoSession, User
from iam.db.store import Store
from iam.services import clients, sessions, users


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock().install(monkeypatch, sessions)


@pytest.fixture
def user(store: Store) -> User:
    return in_unit(store, users.create_user, "Zhang San", "13800138000")


def _start(store: Store, user: User, **options: Any) -> sessions.NewSession:
    with store() as db:
        new = sessions.start(db, user, ["sms"], **options)
        db.commit()
    return new


def _session_rows(store: Store) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(select(SsoSession)).all()
        return [
            {column.key: getattr(row, column.key) for column in SsoSession.__table__.columns}
            for row in rows
        ]


def _set_session(store: Store, sid: str, **values: Any) -> None:
    with store() as db:
        row = db.get(SsoSession, sid)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        db.commit()


def _audit(store: Store, event: str) -> list[tuple[str | None, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [(row.user_id, dict(row.detail)) for row in rows]


def _add_tokens(store: Store, user: User, client_id: str, sid: str | None, name: str) -> None:
    """One refresh token and one access token bound to `sid`."""
    now = utcnow()
    with store() as db:
        db.add(
            RefreshToken(
                token_hash=hashlib.sha256(name.encode()).hexdigest(),
                family_id=f"family-{name}",
                client_id=client_id,
                user_id=user.id,
                scope="openid",
                sid=sid,
                auth_time=now,
                amr=["sms"],
                issued_at=now,
                expires_at=now + timedelta(days=30),
            )
        )
        db.add(
            AccessToken(
                jti=f"jti-{name}",
                client_id=client_id,
                user_id=user.id,
                family_id=f"family-{name}",
                sid=sid,
                scope="openid",
                issued_at=now,
                expires_at=now + timedelta(minutes=10),
            )
        )
        db.commit()


def _revoked(store: Store) -> dict[str, bool]:
    with store() as db:
        refresh = {
            row.family_id: row.revoked_at is not None for row in db.scalars(select(RefreshToken))
        }
        access = {row.jti: row.revoked_at is not None for row in db.scalars(select(AccessToken))}
        return {
            **{f"refresh:{k}": v for k, v in refresh.items()},
            **{f"access:{k}": v for k, v in access.items()},
        }


# --- start ------------------------------------------------------------------------------


def test_start_returns_a_cookie_and_stores_only_its_sha256(store: Store, user: User) -> None:
    new = _start(store, user, ip="203.0.113.9", user_agent="Firefox")
    assert len(new.cookie_value) >= 43
    [row] = _session_rows(store)
    assert row["token_hash"] == hashlib.sha256(new.cookie_value.encode()).hexdigest()
    assert new.cookie_value not in str(row)
    assert row["id"] == new.session.id
    assert row["user_id"] == user.id
    assert row["amr"] == ["sms"]
    assert (row["ip"], row["user_agent"]) == ("203.0.113.9", "Firefox")


def test_session_lasts_twelve_hours(store: Store, user: User) -> None:
    _start(store, user)
    [row] = _session_rows(store)
    assert row["expires_at"] - row["auth_time"] == timedelta(hours=12)


def test_sessions_get_distinct_cookies_and_ids(store: Store, user: User) -> None:
    first, second = _start(store, user), _start(store, user)
    assert first.cookie_value != second.cookie_value
    assert first.session.id != second.session.id


def test_long_user_agent_is_cut(store: Store, user: User) -> None:
    _start(store, user, user_agent="x" * 900)
    assert len(_session_rows(store)[0]["user_agent"]) == 500


def test_start_records_an_audit_event(store: Store, user: User) -> None:
    _start(store, user)
    [(user_id, detail)] = _audit(store, "session.started")
    assert user_id == user.id
    assert detail["amr"] == ["sms"]


def test_start_audit_event_names_the_session(store: Store, user: User) -> None:
    new = _start(store, user)
    [(_, detail)] = _audit(store, "session.started")
    assert detail["sid"] == new.session.id


def test_start_is_part_of_the_callers_transaction(store: Store, user: User) -> None:
    with store() as db:
        sessions.start(db, user, ["sms"])
        # no commit
    assert _session_rows(store) == []
    assert _audit(store, "session.started") == []


# --- find -------------------------------------------------------------------------------


def test_find_by_cookie_returns_the_session_and_user(store: Store, user: User) -> None:
    new = _start(store, user)
    found = signed_in(store, new.cookie_value)
    assert found is not None
    assert found.session.id == new.session.id
    assert found.user.id == user.id
    assert found.user.name == "Zhang San"


@pytest.mark.parametrize("cookie", [None, "", "unknown-cookie", "x" * 201])
def test_find_with_unknown_or_missing_cookie_is_none(
    store: Store, user: User, cookie: str | None
) -> None:
    _start(store, user)
    assert signed_in(store, cookie) is None


def test_find_with_the_stored_hash_instead_of_the_cookie_is_none(store: Store, user: User) -> None:
    _start(store, user)
    assert signed_in(store, _session_rows(store)[0]["token_hash"]) is None


def test_expired_session_is_none(store: Store, user: User) -> None:
    new = _start(store, user)
    _set_session(store, new.session.id, expires_at=utcnow() - timedelta(seconds=1))
    assert signed_in(store, new.cookie_value) is None


def test_session_expires_after_twelve_hours(store: Store, user: User, clock: Clock) -> None:
    new = _start(store, user)
    clock.advance(hours=11, minutes=59)
    assert signed_in(store, new.cookie_value) is not None
    clock.advance(minutes=2)
    assert signed_in(store, new.cookie_value) is None


def test_session_of_disabled_user_is_none(store: Store, user: User) -> None:
    new = _start(store, user)
    with store() as db:
        row = db.get(User, user.id)
        assert row is not None
        row.status = "disabled"
        db.commit()
    assert signed_in(store, new.cookie_value) is None


def test_find_touches_last_seen_only_after_five_minutes(
    store: Store, user: User, clock: Clock
) -> None:
    new = _start(store, user)
    started = _session_rows(store)[0]["last_seen_at"]
    clock.advance(minutes=4)
    signed_in(store, new.cookie_value)
    assert _session_rows(store)[0]["last_seen_at"] == started
    clock.advance(minutes=2)
    signed_in(store, new.cookie_value)
    assert _session_rows(store)[0]["last_seen_at"] == clock.now


# --- renew ------------------------------------------------------------------------------


def test_renew_keeps_the_sid_but_changes_the_cookie(store: Store, user: User, clock: Clock) -> None:
    old = _start(store, user)
    clock.advance(hours=1)
    with store() as db:
        renewed = sessions.renew(db, old.session, ["sms"])
        db.commit()
    assert renewed.session.id == old.session.id
    assert renewed.cookie_value != old.cookie_value
    assert signed_in(store, old.cookie_value) is None
    found = signed_in(store, renewed.cookie_value)
    assert found is not None and found.session.auth_time == clock.now


# --- end --------------------------------------------------------------------------------


def test_end_deletes_the_session(store: Store, user: User) -> None:
    new = _start(store, user)
    in_unit(store, sessions.end, new.session.id)
    assert _session_rows(store) == []
    assert signed_in(store, new.cookie_value) is None


def test_end_revokes_the_tokens_of_that_session_only(store: Store, user: User) -> None:
    client_id = in_unit(
        store, clients.create_client, "CRM", ["https://crm.example.com/cb"]
    ).client.client_id
    ended, kept = _start(store, user), _start(store, user)
    _add_tokens(store, user, client_id, ended.session.id, "ended")
    _add_tokens(store, user, client_id, kept.session.id, "kept")
    _add_tokens(store, user, client_id, None, "nosid")
    in_unit(store, sessions.end, ended.session.id)
    assert _revoked(store) == {
        "refresh:family-ended": True,
        "access:jti-ended": True,
        "refresh:family-kept": False,
        "access:jti-kept": False,
        "refresh:family-nosid": False,
        "access:jti-nosid": False,
    }
    assert [row["id"] for row in _session_rows(store)] == [kept.session.id]


def test_end_does_not_move_an_earlier_revocation(store: Store, user: User) -> None:
    client_id = in_unit(
        store, clients.create_client, "CRM", ["https://crm.example.com/cb"]
    ).client.client_id
    new = _start(store, user)
    _add_tokens(store, user, client_id, new.session.id, "t")
    earlier = utcnow().replace(microsecond=0) - timedelta(hours=1)
    with store() as db:
        token = db.get(AccessToken, "jti-t")
        assert token is not None
        token.revoked_at = earlier
        db.commit()
    in_unit(store, sessions.end, new.session.id)
    with store() as db:
        token = db.get(AccessToken, "jti-t")
        assert token is not None and token.revoked_at == earlier


def test_end_records_an_audit_event(store: Store, user: User) -> None:
    new = _start(store, user)
    in_unit(store, sessions.end, new.session.id, ip="203.0.113.9", reason="logout")
    assert _audit(store, "session.ended") == [
        (user.id, {"sid": new.session.id, "reason": "logout"})
    ]


def test_end_of_unknown_session_changes_nothing(store: Store, user: User) -> None:
    new = _start(store, user)
    in_unit(store, sessions.end, "00000000-0000-0000-0000-000000000000")
    assert len(_session_rows(store)) == 1
    assert signed_in(store, new.cookie_value) is not None
    assert _audit(store, "session.ended") == []
