"""Core users and their identity links.

Every function here works in the caller's unit of work (`db`, an ORM session): it never opens a
transaction and never commits, so what it changes and the audit row that says so are written
together or not at all (`iam.db.unit.one_unit`, `in_worker`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import (
    AccessToken,
    IdentityLink,
    RefreshToken,
    SsoSession,
    User,
    new_id,
)
from iam.db.store import rowcount
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.services import audit, backchannel
from iam.services.phones import normalize_phone
from iam.services.rows import found

WECOM = "wecom"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CORP_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_WECOM_USERID = re.compile(r"^[A-Za-z0-9_\-.@]{1,64}$")
MAX_NAME = 200


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError("name", f"A name of 1 to {MAX_NAME} characters is required.")
    return name


def _check_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    email = email.strip()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValidationError("email", f"Not an email address: {email!r}")
    return email


def create_user(db: Session, name: str, phone: str, email: str | None = None) -> User:
    """A new core user; the phone must not belong to anyone yet. The insert is flushed here, so
    a concurrent one of the same phone fails now (`IntegrityError`): the unit of work runs
    again from the start and this check then finds that person (a `ConflictError`)."""
    user = User(
        id=new_id(),  # known before the flush, so the audit event can name it
        name=_check_name(name),
        phone=normalize_phone(phone),
        email=_check_email(email),
    )
    if db.scalar(select(User.id).where(User.phone == user.phone)):
        raise ConflictError(f"A user with phone {user.phone} already exists.")
    db.add(user)
    db.flush()
    audit.record(db.connection(), "user.created", user_id=user.id, actor="cli")
    return user


def get_user(db: Session, user_id: str) -> User:
    return found(db, User, user_id, "user")


def find_user_by_phone(db: Session, phone: str) -> User | None:
    return db.scalar(select(User).where(User.phone == phone))


def wecom_subject(corp_id: str, userid: str) -> tuple[str, str]:
    """(provider_user_id, provider_user_key): the id as WeCom spells it, and the lookup key
    (WeCom userids are case-insensitive)."""
    if not _CORP_ID.match(corp_id or ""):
        raise ValidationError("corp_id", f"Not a WeCom corp id: {corp_id!r}")
    if not _WECOM_USERID.match(userid or ""):
        raise ValidationError("userid", f"Not a WeCom userid: {userid!r}")
    return f"{corp_id}/{userid}", f"{corp_id}/{userid.lower()}"


def link_wecom(
    db: Session,
    user_id: str,
    corp_id: str,
    userid: str,
    metadata: Mapping[str, Any] | None = None,
) -> IdentityLink:
    """Bind the WeCom member `corp_id/userid` to a core user; one member, one user. Flushed
    here (the link has its id and times when this returns); a concurrent link of the same
    member fails the flush, and the unit run again finds it (a `ConflictError`)."""
    provider_user_id, key = wecom_subject(corp_id, userid)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError("metadata", "Link metadata must be a JSON object.")
    get_user(db, user_id)
    existing = db.scalar(
        select(IdentityLink).where(
            IdentityLink.provider == WECOM, IdentityLink.provider_user_key == key
        )
    )
    if existing is not None:
        raise ConflictError(
            f"WeCom member {existing.provider_user_id} is already linked "
            f"to user {existing.user_id}."
        )
    link = IdentityLink(
        user_id=user_id,
        provider=WECOM,
        provider_user_id=provider_user_id,
        provider_user_key=key,
        link_metadata=dict(metadata or {}),
        status="active",
    )
    db.add(link)
    db.flush()
    audit.record(
        db.connection(), "link.created", user_id=user_id, actor="cli", link=provider_user_id
    )
    return link


def mark_phone_verified(db: Session, user: User) -> None:
    if user.phone_verified_at is None:
        user.phone_verified_at = utcnow()


# --- looking after users (the admin console and API) -----------------------------------------

#: Ids are uuid4 strings; anything else names nobody (and never reaches the database).
MAX_ID = 36
MAX_QUERY = 200


def _plausible_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and "\x00" not in value


def _get_user(db: Session, user_id: str) -> User:
    if not _plausible_id(user_id):
        raise NotFoundError(f"No user {user_id!r}.")
    return get_user(db, user_id)


@dataclass(frozen=True)
class UserSummary:
    """A row of the users table: the person and how many identities they hold."""

    user: User
    link_count: int


def search_users(db: Session, query: str | None, *, limit: int, offset: int) -> list[UserSummary]:
    """Users whose name, email, phone or linked WeCom userid contains `query` (literally: `%`
    and `_` are no wildcards; case-insensitive), oldest first. A phone may be typed as the
    person would (`138 0013 8000`). One statement: the link count is a correlated subquery."""
    query = (query or "").strip()
    if len(query) > MAX_QUERY:
        raise ValidationError("q", f"Search for at most {MAX_QUERY} characters.")
    if "\x00" in query:  # matches nothing, and PostgreSQL refuses NUL in text
        return []
    link_count = (
        select(func.count(IdentityLink.id))
        .where(IdentityLink.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    statement = (
        select(User, link_count).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    if query:
        needle = query.lower()
        matches_link = (
            select(IdentityLink.id)
            .where(
                IdentityLink.user_id == User.id,
                or_(
                    IdentityLink.provider_user_key.contains(needle, autoescape=True),
                    func.lower(IdentityLink.provider_user_id).contains(needle, autoescape=True),
                ),
            )
            .correlate(User)
            .exists()
        )
        conditions = [
            func.lower(User.name).contains(needle, autoescape=True),
            func.lower(User.email).contains(needle, autoescape=True),
            User.phone.contains(query, autoescape=True),
            matches_link,
        ]
        with suppress(ValidationError):  # not a phone number: the other keys still apply
            conditions.append(User.phone == normalize_phone(query))
        statement = statement.where(or_(*conditions))
    return [UserSummary(user, count) for user, count in db.execute(statement)]


@dataclass(frozen=True)
class UserDetail:
    """A person with every link and their live sessions, as the admin's user page shows them."""

    user: User
    links: tuple[IdentityLink, ...]
    sessions: tuple[SsoSession, ...]


def user_detail(db: Session, user_id: str) -> UserDetail:
    """The person, their links (oldest first) and their live sessions (newest first)."""
    now = utcnow()
    user = _get_user(db, user_id)
    links = db.scalars(
        select(IdentityLink)
        .where(IdentityLink.user_id == user.id)
        .order_by(IdentityLink.created_at, IdentityLink.id)
    ).all()
    live = db.scalars(
        select(SsoSession)
        .where(SsoSession.user_id == user.id, SsoSession.expires_at > now)
        .order_by(SsoSession.created_at.desc(), SsoSession.id)
    ).all()
    return UserDetail(user, tuple(links), tuple(live))


def _end_sessions(db: Session, user: User, now: datetime, *, every_token: bool) -> int:
    """Revoke the user's tokens (those bound to a session, or `every_token`), then delete every
    session of theirs; how many live sessions ended. The apps those sessions gave tokens to
    that asked to be told get a logout token (`backchannel`), queued in the same unit."""
    of_user = select(SsoSession.id).where(SsoSession.user_id == user.id)
    reason = "user disabled" if every_token else "sessions ended by an admin"
    backchannel.enqueue(db, db.scalars(of_user).all(), reason)
    live = db.scalar(
        select(func.count())
        .select_from(SsoSession)
        .where(SsoSession.user_id == user.id, SsoSession.expires_at > now)
    )
    for table in (RefreshToken, AccessToken):
        bound = table.user_id == user.id if every_token else table.sid.in_(of_user)
        db.execute(update(table).where(bound, table.revoked_at.is_(None)).values(revoked_at=now))
    db.execute(delete(SsoSession).where(SsoSession.user_id == user.id))
    return live or 0


def set_user_status(
    db: Session, user_id: str, enabled: bool, *, actor: str, ip: str | None = None
) -> User:
    """Enable or disable a person. Disabling also ends every session and revokes every refresh
    and access token they hold, in the caller's unit with its audit row, so nothing they had
    keeps working and nothing changes unrecorded. Setting the status a user already has changes
    (and records) nothing."""
    now = utcnow()
    status = "active" if enabled else "disabled"
    user = _get_user(db, user_id)
    if user.status == status:
        return user
    user.status = status
    detail: dict[str, Any] = {}
    if not enabled:
        detail["sessions_ended"] = _end_sessions(db, user, now, every_token=True)
    event = "user.enabled" if enabled else "user.disabled"
    audit.record(db.connection(), event, user_id=user.id, actor=actor, ip=ip, **detail)
    return user


def remove_link(
    db: Session, user_id: str, link_id: str, *, actor: str, ip: str | None = None
) -> None:
    """Unbind one identity from its user, in the caller's unit with its audit row. Sessions
    whose context was that link keep going without a context (the pre-flight check asks
    again); tokens lose it through the foreign keys' ON DELETE SET NULL."""
    user = _get_user(db, user_id)
    link = db.get(IdentityLink, link_id) if _plausible_id(link_id) else None
    if link is None or link.user_id != user.id:
        raise NotFoundError(f"User {user.id} has no link {link_id!r}.")
    cleared = rowcount(
        db.execute(
            update(SsoSession)
            .where(SsoSession.context_link_id == link.id)
            .values(context_link_id=None, context_set_at=None)
        )
    )
    db.delete(link)
    audit.record(
        db.connection(),
        "link.removed",
        user_id=user.id,
        actor=actor,
        ip=ip,
        link_id=link.id,
        provider=link.provider,
        subject=link.provider_user_id,
        sessions_cleared=cleared,
    )


def end_user_sessions(db: Session, user_id: str, *, actor: str, ip: str | None = None) -> int:
    """Sign a person out everywhere: every session ends, the tokens bound to them are revoked,
    in the caller's unit with its audit row. Returns how many sessions ended."""
    user = _get_user(db, user_id)
    ended = _end_sessions(db, user, utcnow(), every_token=False)
    audit.record(
        db.connection(), "user.sessions_ended", user_id=user.id, actor=actor, ip=ip, count=ended
    )
    return ended
