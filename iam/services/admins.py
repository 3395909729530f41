"""Admin console accounts and their sessions; passwords hashed with argon2id (argon2-cffi),
lock-out after repeated failures."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import Admin, AdminSession
from iam.errors import ConflictError, IamError, NotFoundError, ValidationError
from iam.secretbox import digest
from iam.services import audit

T = TypeVar("T")
MIN_PASSWORD = 12
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-@]{3,100}$")

#: argon2id with argon2-cffi's defaults, RFC 9106's second recommended ("low memory") profile:
#: t=3, m=64 MiB, p=4, 16-byte salt, 32-byte hash. passlib (libpass), used before, hashed with
#: exactly these, so the PHC strings it stored (`$argon2id$v=19$m=65536,t=3,p=4$...`) verify
#: unchanged. Tests may swap in a cheap hasher: `verify` reads the cost from each hash itself.
PASSWORD_HASHER = PasswordHasher()


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise ValidationError("password", f"The password needs at least {MIN_PASSWORD} characters.")


def create_admin(db: Session, username: str, password: str) -> Admin:
    """A new admin account, in the caller's transaction."""
    if not _USERNAME.match(username or ""):
        raise ValidationError("username", "A username is 3-100 letters, digits or _ . - @.")
    _check_password(password)
    admin = Admin(username=username, password_hash=PASSWORD_HASHER.hash(password))
    taken = ConflictError(f"An admin {username!r} already exists.")
    if db.scalar(select(Admin.id).where(Admin.username == username)):
        raise taken
    db.add(admin)
    try:
        db.flush()
    except IntegrityError:  # created meanwhile by someone else
        raise taken from None
    audit.record(db.connection(), "admin.created", actor="cli", username=username)
    return admin


def set_password(db: Session, username: str, password: str, *, actor: str = "cli") -> None:
    """A new password (and the lock lifted); every session of that admin ends (in the caller's
    transaction)."""
    _check_password(password)
    admin = db.scalar(select(Admin).where(Admin.username == username))
    if admin is None:
        raise NotFoundError(f"No admin {username!r}.")
    admin.password_hash = PASSWORD_HASHER.hash(password)
    admin.failed_logins = 0
    admin.locked_until = None
    db.execute(delete(AdminSession).where(AdminSession.admin_id == admin.id))
    audit.record(db.connection(), "admin.password_set", actor=actor, username=username)


class AdminLoginError(IamError):
    """Wrong username or password (one message for both), or the account is locked."""

    def __init__(self, message: str, locked_for: int = 0) -> None:
        super().__init__(message)
        self.locked_for = locked_for


@dataclass(frozen=True)
class AdminSignedIn:
    cookie_value: str
    admin: Admin


#: Wrong passwords in a row before the account is locked, and for how long.
MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=15)
#: An admin session ends this long after sign-in, or after this long without a request.
ADMIN_SESSION_LIFETIME = timedelta(hours=8)
ADMIN_IDLE_TIMEOUT = timedelta(minutes=30)
WRONG = "Wrong username or password."


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Hashed once per hasher, at the first sign-in rather than at import (every CLI command
    imports this), so that an unknown username costs as much time as a wrong password."""
    return hasher.hash(secrets.token_urlsafe(16))


def _password_matches(password: str, stored: str) -> bool:
    """argon2-cffi raises on a wrong password (VerifyMismatchError, a VerificationError) and on a
    stored value that is no argon2 hash (InvalidHashError): both are a refusal here."""
    try:
        return PASSWORD_HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _record_refusal(db: Session, username: str, reason: str, ip: str | None) -> None:
    audit.record(
        db.connection(),
        "admin.login_failed",
        outcome="failure",
        ip=ip,
        actor=username,
        reason=reason,
    )


def sign_in(db: Session, username: str, password: str, *, ip: str | None = None) -> AdminSignedIn:
    """Check the password (argon2), count failures, lock after MAX_FAILED_LOGINS, and open an
    admin session, in the caller's transaction. Every attempt is audited. A refused attempt
    raises `AdminLoginError` after recording the failure in that transaction: the use case
    commits it before passing the error on (`refusal_counted`), so that a wrong password
    counts."""
    now = utcnow()
    username = (username or "")[:100]
    admin = db.scalar(select(Admin).where(Admin.username == username))
    if admin is not None and admin.locked_until is not None and admin.locked_until > now:
        wait = int((admin.locked_until - now).total_seconds()) + 1
        _record_refusal(db, username, "locked", ip)
        raise AdminLoginError("Too many failed sign-ins: the account is locked.", wait)
    # An unknown username still verifies, against a throwaway hash of the same cost, so the
    # answer's timing does not tell which usernames exist.
    stored = admin.password_hash if admin else _dummy_hash(PASSWORD_HASHER)
    valid = _password_matches(password or "", stored)
    if admin is None or not valid:
        if admin is not None:
            db.execute(
                update(Admin)
                .where(Admin.id == admin.id)
                .values(failed_logins=Admin.failed_logins + 1)
            )
            db.refresh(admin)
            if admin.failed_logins >= MAX_FAILED_LOGINS:
                admin.locked_until = now + LOCK_DURATION
                admin.failed_logins = 0
        _record_refusal(db, username, "wrong", ip)
        raise AdminLoginError(WRONG)
    admin.failed_logins = 0
    admin.locked_until = None
    cookie_value = secrets.token_urlsafe(32)
    db.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    db.add(
        AdminSession(
            id=digest(cookie_value),
            admin_id=admin.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + ADMIN_SESSION_LIFETIME,
            ip=ip,
        )
    )
    audit.record(db.connection(), "admin.login", ip=ip, actor=username)
    return AdminSignedIn(cookie_value, admin)


def refusal_counted(db: Session, attempt: Callable[[], T]) -> T:
    """Run a sign-in attempt (`sign_in`) in the caller's unit of work, for the use case: if it
    is refused (`AdminLoginError`), commit what the refusal recorded (a failed try, the lock,
    the audit event: a wrong password must count) and raise it again. Any other failure
    leaves the unit to roll back."""
    try:
        return attempt()
    except AdminLoginError:
        db.commit()
        raise


def find_session(db: Session, cookie_value: str | None) -> Admin | None:
    """The admin behind a live, recently used admin session cookie, or None (its last use is
    touched in the caller's transaction)."""
    if not cookie_value or len(cookie_value) > 200:
        return None
    now = utcnow()
    row = db.execute(
        select(AdminSession, Admin)
        .join(Admin, Admin.id == AdminSession.admin_id)
        .where(AdminSession.id == digest(cookie_value))
    ).first()
    if row is None:
        return None
    session, admin = row
    if session.expires_at <= now or now - session.last_seen_at > ADMIN_IDLE_TIMEOUT:
        return None
    if now - session.last_seen_at > timedelta(minutes=1):
        session.last_seen_at = now
    return admin


def sign_out(db: Session, cookie_value: str | None, *, ip: str | None = None) -> None:
    """End the admin session behind the cookie, in the caller's transaction."""
    if not cookie_value:
        return
    admin_id = db.scalar(
        select(AdminSession.admin_id).where(AdminSession.id == digest(cookie_value))
    )
    db.execute(delete(AdminSession).where(AdminSession.id == digest(cookie_value)))
    if admin_id is not None:
        audit.record(db.connection(), "admin.logout", ip=ip, actor=admin_id)
