"""iam/services/retention.py (`iam db prune`): what has expired goes, what may still be used
stays, and a used code stays while its family's tokens live (a replay must still revoke them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from support.units import in_unit
from support.world import World

from iam.clock import utcnow
from iam.db.base import Base
from iam.db.models import (
    AccessToken,
    AuditEvent,
    AuthorizationCode,
    OtpChallenge,
    RefreshToken,
    SsoSession,
    new_id,
)
from iam.db.store import Store
from iam.secretbox import digest
from iam.services import retention

NOW = utcnow().replace(microsecond=0)
PAST, FUTURE = NOW - timedelta(minutes=1), NOW + timedelta(hours=1)


def code(world: World, expires_at: datetime) -> AuthorizationCode:
    return AuthorizationCode(
        id=new_id(),
        code_hash=digest(new_id()),
        client_id=world.rp.client.client_id,
        user_id=world.user.id,
        redirect_uri=None,
        scope="openid",
        auth_time=NOW,
        amr=["sms"],
        expires_at=expires_at,
        consumed_at=NOW,
    )


def refresh_token(
    world: World, family_id: str, expires_at: datetime, **more: object
) -> RefreshToken:
    return RefreshToken(
        token_hash=digest(new_id()),
        family_id=family_id,
        client_id=world.rp.client.client_id,
        user_id=world.user.id,
        scope="openid",
        auth_time=NOW,
        amr=["sms"],
        expires_at=expires_at,
        **more,
    )


def access_token(world: World, family_id: str | None, expires_at: datetime) -> AccessToken:
    return AccessToken(
        jti=new_id(),
        client_id=world.rp.client.client_id,
        user_id=world.user.id,
        family_id=family_id,
        scope="openid",
        expires_at=expires_at,
    )


def session(world: World, expires_at: datetime) -> SsoSession:
    return SsoSession(
        token_hash=digest(new_id()),
        user_id=world.user.id,
        amr=["sms"],
        auth_time=NOW,
        expires_at=expires_at,
    )


def otp(created_at: datetime) -> OtpChallenge:
    return OtpChallenge(
        phone="+8613800138000",
        purpose="login",
        code_hash="x" * 64,
        created_at=created_at,
        expires_at=created_at + timedelta(minutes=5),
    )


def add(store: Store, *rows: Base) -> None:
    with store() as db:
        db.add_all(rows)
        db.commit()


def ids(store: Store, model: type[Base]) -> set[str]:
    key = next(iter(model.__table__.primary_key.columns))
    with store() as db:
        return set(db.scalars(select(key)))


def test_expired_rows_go_and_live_ones_stay(store: Store, world: World) -> None:
    live = [access_token(world, None, FUTURE), session(world, FUTURE), otp(NOW)]
    dead = [access_token(world, None, PAST), session(world, PAST), otp(NOW - timedelta(days=2))]
    add(store, *live, *dead)
    deleted = in_unit(store, retention.prune, now=NOW)
    assert deleted["access_tokens"] == 1 and deleted["sso_sessions"] == 1
    assert deleted["otp_challenges"] == 1
    assert ids(store, AccessToken) == {live[0].jti}
    assert ids(store, SsoSession) == {live[1].id}
    assert ids(store, OtpChallenge) == {live[2].id}


def test_a_code_sent_today_stays_for_the_daily_limit(store: Store, world: World) -> None:
    add(store, otp(NOW - timedelta(hours=2)))  # expired, but still counted by the daily limit
    assert in_unit(store, retention.prune, now=NOW)["otp_challenges"] == 0


def test_a_used_code_stays_while_a_token_of_its_family_lives(store: Store, world: World) -> None:
    with_refresh, with_access, orphan = (code(world, PAST) for _ in range(3))
    add(store, with_refresh, with_access, orphan)
    add(
        store,
        refresh_token(world, with_refresh.id, FUTURE),
        access_token(world, with_access.id, FUTURE),
        refresh_token(world, orphan.id, FUTURE, rotated_at=NOW),  # used: dead
        refresh_token(world, orphan.id, FUTURE, revoked_at=NOW),  # revoked: dead
    )
    assert in_unit(store, retention.prune, now=NOW)["authorization_codes"] == 1
    assert ids(store, AuthorizationCode) == {with_refresh.id, with_access.id}
    later = FUTURE + timedelta(seconds=1)  # every token has expired
    assert in_unit(store, retention.prune, now=later)["authorization_codes"] == 2
    assert ids(store, AuthorizationCode) == set()


def test_a_code_not_yet_expired_stays(store: Store, world: World) -> None:
    add(store, code(world, FUTURE))
    assert in_unit(store, retention.prune, now=NOW)["authorization_codes"] == 0


def test_expired_refresh_tokens_go_even_when_rotated(store: Store, world: World) -> None:
    family = code(world, FUTURE)
    add(store, family)
    add(
        store,
        refresh_token(world, family.id, PAST, rotated_at=NOW - timedelta(days=1)),
        refresh_token(world, family.id, FUTURE),
    )
    assert in_unit(store, retention.prune, now=NOW)["refresh_tokens"] == 1
    with store() as db:
        assert db.scalar(select(func.count()).select_from(RefreshToken)) == 1


def test_a_second_run_finds_nothing(store: Store, world: World) -> None:
    add(store, access_token(world, None, PAST), session(world, PAST))
    assert sum(in_unit(store, retention.prune, now=NOW).values()) == 2
    assert sum(in_unit(store, retention.prune, now=NOW).values()) == 0


def test_the_audit_trail_is_left_alone(store: Store, world: World) -> None:
    def events() -> int:
        with store() as db:
            return int(db.scalar(select(func.count()).select_from(AuditEvent)) or 0)

    before = events()
    assert before > 0  # the world's user and apps were audited
    in_unit(store, retention.prune, now=FUTURE + timedelta(days=3650))
    assert events() == before


def test_every_table_pruned_is_listed_in_order() -> None:
    assert tuple(retention._statements(NOW)) == retention.TABLES


def test_a_unit_prunes_only_the_tables_it_is_given(store: Store, world: World) -> None:
    add(store, access_token(world, None, PAST), session(world, PAST))
    assert in_unit(store, retention.prune, NOW, tables=["sso_sessions"]) == {"sso_sessions": 1}
    assert ids(store, SsoSession) == set() and len(ids(store, AccessToken)) == 1
