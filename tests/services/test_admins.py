"""iam/services/admins.py: admin console accounts with argon2 password hashes."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from passlib.hash import argon2
from sqlalchemy import func, select

from iam.clock import utcnow
from iam.db.models import Admin, AuditEvent
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.services import admins

PASSWORD = "correct horse battery"


def _admin_rows(store: Store) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(select(Admin)).all()
        return [{"username": row.username, "password_hash": row.password_hash} for row in rows]


def test_password_is_stored_as_an_argon2_hash(store: Store) -> None:
    admins.create_admin(store, "ops@example.com", PASSWORD)
    [row] = _admin_rows(store)
    assert row["username"] == "ops@example.com"
    assert row["password_hash"].startswith("$argon2")
    assert PASSWORD not in row["password_hash"]
    assert argon2.verify(PASSWORD, row["password_hash"])
    assert not argon2.verify(PASSWORD + "!", row["password_hash"])


def test_same_password_gets_a_different_salt(store: Store) -> None:
    admins.create_admin(store, "alice", PASSWORD)
    admins.create_admin(store, "bob", PASSWORD)
    hashes = [row["password_hash"] for row in _admin_rows(store)]
    assert hashes[0] != hashes[1]


def test_password_of_exactly_twelve_characters_is_accepted(store: Store) -> None:
    admins.create_admin(store, "alice", "x" * 12)
    assert len(_admin_rows(store)) == 1


@pytest.mark.parametrize("password", ["", "short", "x" * 11])
def test_weak_password_is_refused(store: Store, password: str) -> None:
    with pytest.raises(ValidationError) as caught:
        admins.create_admin(store, "alice", password)
    assert caught.value.field == "password"
    assert _admin_rows(store) == []


@pytest.mark.parametrize("username", ["", "ab", "has space", "x" * 101, "name;drop", "管理员"])
def test_bad_username_is_refused(store: Store, username: str) -> None:
    with pytest.raises(ValidationError) as caught:
        admins.create_admin(store, username, PASSWORD)
    assert caught.value.field == "username"
    assert _admin_rows(store) == []


def test_duplicate_username_is_a_conflict(store: Store) -> None:
    admins.create_admin(store, "alice", PASSWORD)
    with pytest.raises(ConflictError):
        admins.create_admin(store, "alice", "another long password")
    [row] = _admin_rows(store)
    assert argon2.verify(PASSWORD, row["password_hash"])


def test_create_admin_writes_an_audit_event_without_the_password(store: Store) -> None:
    admins.create_admin(store, "alice", PASSWORD)
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == "admin.created")).all()
        assert [(row.actor, dict(row.detail)) for row in rows] == [("cli", {"username": "alice"})]
        assert db.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_set_password_replaces_it_lifts_the_lock_and_ends_sessions(store: Store) -> None:
    admins.create_admin(store, "ops", "first long password")
    for _ in range(admins.MAX_FAILED_LOGINS):
        with pytest.raises(admins.AdminLoginError):
            admins.sign_in(store, "ops", "wrong")
    admins.set_password(store, "ops", "second long password", actor="demo")
    signed_in = admins.sign_in(store, "ops", "second long password")
    with pytest.raises(admins.AdminLoginError):
        admins.sign_in(store, "ops", "first long password")
    assert admins.find_session(store, signed_in.cookie_value) is not None
    admins.set_password(store, "ops", "third long password")
    assert admins.find_session(store, signed_in.cookie_value) is None


def test_set_password_checks_length_and_the_account(store: Store) -> None:
    with pytest.raises(ValidationError):
        admins.set_password(store, "ops", "short")
    with pytest.raises(NotFoundError):
        admins.set_password(store, "nobody", "a long enough password")


def test_an_idle_admin_session_ends(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    admins.create_admin(store, "ops", "first long password")
    signed_in = admins.sign_in(store, "ops", "first long password")
    later = utcnow() + admins.ADMIN_IDLE_TIMEOUT + timedelta(seconds=1)
    monkeypatch.setattr(admins, "utcnow", lambda: later)
    assert admins.find_session(store, signed_in.cookie_value) is None


def test_an_unknown_username_first_in_a_fresh_process_is_a_wrong_login(tmp_path) -> None:
    """passlib loads its argon2 backend at the first use: the first sign-in of a new server,
    with an unknown username, must be an ordinary refusal (it was a 500 once)."""
    script = f"""
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.services import admins
engine = create_db_engine("sqlite:///{tmp_path}/iam.db")
migrate.upgrade(engine)
try:
    admins.sign_in(Store(engine), "nobody", "a wrong password")
except admins.AdminLoginError as error:
    print("refused:", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"refused: {admins.WRONG}"
