"""iam/services/admins.py: admin console accounts with argon2 password hashes."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import func, select
from support.app import CHEAP_PASSWORD_HASHER
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import Admin, AuditEvent
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.services import admins

PASSWORD = "correct horse battery"
#: Made by the code before argon2-cffi, with passlib's `passlib.hash.argon2.hash` (libpass
#: 1.9.4), for PASSWORD and for a password outside ASCII (both encode it as UTF-8).
PASSLIB_HASHES = {
    PASSWORD: "$argon2id$v=19$m=65536,t=3,p=4$917LuRfCuBcC4DznHMNYiw"
    "$3yQIjISbok/3RLKZ62tmasqxW2vX74Ni8i/9dtoXZD8",
    "管理员的密码也要足够长": "$argon2id$v=19$m=65536,t=3,p=4$V0qpNaaUkrJWijFm7J0z5g"
    "$ZnC17g4dwGEvtEEEy7N+a/skmq1rdqkukWvwjCR171A",
}


def _sign_in(store: Store, username: str, password: str) -> admins.AdminSignedIn:
    """Sign in as the console's use case does: one unit of work, a refusal committed (it
    counts) before its error goes on."""
    return in_unit(
        store,
        lambda db: admins.refusal_counted(db, lambda: admins.sign_in(db, username, password)),
    )


def _admin_rows(store: Store) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(select(Admin)).all()
        return [{"username": row.username, "password_hash": row.password_hash} for row in rows]


def test_password_is_stored_as_an_argon2_hash(store: Store) -> None:
    in_unit(store, admins.create_admin, "ops@example.com", PASSWORD)
    [row] = _admin_rows(store)
    assert row["username"] == "ops@example.com"
    assert row["password_hash"].startswith("$argon2id$v=19$")
    assert PASSWORD not in row["password_hash"]
    assert CHEAP_PASSWORD_HASHER.verify(row["password_hash"], PASSWORD)
    with pytest.raises(VerifyMismatchError):
        CHEAP_PASSWORD_HASHER.verify(row["password_hash"], PASSWORD + "!")


def test_the_production_cost_is_rfc_9106_low_memory_as_passlib_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.undo()  # the real admins.PASSWORD_HASHER
    assert admins.PASSWORD_HASHER.hash("x").startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert all(not admins.PASSWORD_HASHER.check_needs_rehash(h) for h in PASSLIB_HASHES.values())


@pytest.mark.parametrize("password", sorted(PASSLIB_HASHES))
def test_a_hash_stored_by_passlib_still_signs_in(store: Store, password: str) -> None:
    with store() as db:
        db.add(Admin(username="ops", password_hash=PASSLIB_HASHES[password]))
        db.commit()
    with pytest.raises(admins.AdminLoginError):
        _sign_in(store, "ops", password + "!")
    assert _sign_in(store, "ops", password).admin.username == "ops"


def test_a_stored_value_that_is_no_argon2_hash_is_a_wrong_login(store: Store) -> None:
    with store() as db:
        db.add(Admin(username="ops", password_hash="not a hash"))
        db.commit()
    with pytest.raises(admins.AdminLoginError, match=admins.WRONG):
        _sign_in(store, "ops", "not a hash")


def test_an_unknown_username_costs_a_verify_of_a_hash_as_costly_as_a_real_one(
    monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    """The timing defence: no admin, but still one argon2 verify, against a throwaway hash made
    with the same parameters as real ones."""
    verified: list[str] = []

    class Spy(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(str(hash))
            return super().verify(hash, password)

    spy = Spy.from_parameters(profiles.CHEAPEST)
    monkeypatch.setattr(admins, "PASSWORD_HASHER", spy)
    in_unit(store, admins.create_admin, "ops", PASSWORD)
    [row] = _admin_rows(store)
    with pytest.raises(admins.AdminLoginError, match=admins.WRONG):
        _sign_in(store, "nobody", PASSWORD)
    [dummy] = verified
    assert dummy != row["password_hash"]
    assert dummy.rsplit("$", 2)[0] == row["password_hash"].rsplit("$", 2)[0]  # same parameters


def test_same_password_gets_a_different_salt(store: Store) -> None:
    in_unit(store, admins.create_admin, "alice", PASSWORD)
    in_unit(store, admins.create_admin, "bob", PASSWORD)
    hashes = [row["password_hash"] for row in _admin_rows(store)]
    assert hashes[0] != hashes[1]


def test_password_of_exactly_twelve_characters_is_accepted(store: Store) -> None:
    in_unit(store, admins.create_admin, "alice", "x" * 12)
    assert len(_admin_rows(store)) == 1


@pytest.mark.parametrize("password", ["", "short", "x" * 11])
def test_weak_password_is_refused(store: Store, password: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(store, admins.create_admin, "alice", password)
    assert caught.value.field == "password"
    assert _admin_rows(store) == []


@pytest.mark.parametrize("username", ["", "ab", "has space", "x" * 101, "name;drop", "管理员"])
def test_bad_username_is_refused(store: Store, username: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(store, admins.create_admin, username, PASSWORD)
    assert caught.value.field == "username"
    assert _admin_rows(store) == []


def test_duplicate_username_is_a_conflict(store: Store) -> None:
    in_unit(store, admins.create_admin, "alice", PASSWORD)
    with pytest.raises(ConflictError):
        in_unit(store, admins.create_admin, "alice", "another long password")
    [row] = _admin_rows(store)
    assert CHEAP_PASSWORD_HASHER.verify(row["password_hash"], PASSWORD)


def test_create_admin_writes_an_audit_event_without_the_password(store: Store) -> None:
    in_unit(store, admins.create_admin, "alice", PASSWORD)
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == "admin.created")).all()
        assert [(row.actor, dict(row.detail)) for row in rows] == [("cli", {"username": "alice"})]
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_set_password_replaces_it_lifts_the_lock_and_ends_sessions(store: Store) -> None:
    in_unit(store, admins.create_admin, "ops", "first long password")
    for _ in range(admins.MAX_FAILED_LOGINS):
        with pytest.raises(admins.AdminLoginError):
            _sign_in(store, "ops", "wrong")
    in_unit(store, admins.set_password, "ops", "second long password", actor="demo")
    signed_in = _sign_in(store, "ops", "second long password")
    with pytest.raises(admins.AdminLoginError):
        _sign_in(store, "ops", "first long password")
    assert in_unit(store, admins.find_session, signed_in.cookie_value) is not None
    in_unit(store, admins.set_password, "ops", "third long password")
    assert in_unit(store, admins.find_session, signed_in.cookie_value) is None


def test_refused_sign_ins_count_and_lock_the_account(store: Store) -> None:
    in_unit(store, admins.create_admin, "ops", PASSWORD)
    for _ in range(admins.MAX_FAILED_LOGINS):
        with pytest.raises(admins.AdminLoginError, match=admins.WRONG):
            _sign_in(store, "ops", "wrong")
    with pytest.raises(admins.AdminLoginError) as locked:
        _sign_in(store, "ops", PASSWORD)
    assert locked.value.locked_for > 0
    with store() as db:
        failed = db.scalars(select(AuditEvent).where(AuditEvent.event == "admin.login_failed"))
        assert len(failed.all()) == admins.MAX_FAILED_LOGINS + 1


def test_set_password_checks_length_and_the_account(store: Store) -> None:
    with pytest.raises(ValidationError):
        in_unit(store, admins.set_password, "ops", "short")
    with pytest.raises(NotFoundError):
        in_unit(store, admins.set_password, "nobody", "a long enough password")


def test_an_idle_admin_session_ends(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    in_unit(store, admins.create_admin, "ops", "first long password")
    signed_in = _sign_in(store, "ops", "first long password")
    later = utcnow() + admins.ADMIN_IDLE_TIMEOUT + timedelta(seconds=1)
    monkeypatch.setattr(admins, "utcnow", lambda: later)
    assert in_unit(store, admins.find_session, signed_in.cookie_value) is None


def test_an_unknown_username_first_in_a_fresh_process_is_a_wrong_login(tmp_path) -> None:
    """The first sign-in of a new server, with an unknown username (the dummy hash made on first
    use), must be an ordinary refusal: it was a 500 once, when passlib loaded its argon2 backend
    lazily. Run at the real cost, in a process of its own."""
    script = f"""
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.db.unit import one_unit
from iam.services import admins
engine = create_db_engine("sqlite:///{tmp_path}/iam.db")
migrate.upgrade(engine)
try:
    one_unit(Store(engine), lambda db: admins.sign_in(db, "nobody", "a wrong password"))
except admins.AdminLoginError as error:
    print("refused:", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"refused: {admins.WRONG}"
