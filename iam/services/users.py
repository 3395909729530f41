"""Core users and their identity links."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import IdentityLink, User, new_id
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.services import audit
from iam.services.phones import normalize_phone

WECOM = "wecom"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CORP_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_WECOM_USERID = re.compile(r"^[A-Za-z0-9_\-.@]{1,64}$")
MAX_NAME = 200


@dataclass(frozen=True)
class UserWithLinks:
    user: User
    links: tuple[IdentityLink, ...]


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


def create_user(store: Store, name: str, phone: str, email: str | None = None) -> User:
    """A new core user; the phone must not belong to anyone yet."""
    user = User(
        id=new_id(),  # known before the flush, so the audit event can name it
        name=_check_name(name),
        phone=normalize_phone(phone),
        email=_check_email(email),
    )
    with store() as session:
        if session.scalar(select(User.id).where(User.phone == user.phone)):
            raise ConflictError(f"A user with phone {user.phone} already exists.")
        session.add(user)
        audit.record(session, "user.created", user_id=user.id, actor="cli")
        try:
            session.commit()
        except IntegrityError:
            raise ConflictError(f"A user with phone {user.phone} already exists.") from None
    return user


def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"No user {user_id!r}.")
    return user


def show_user(store: Store, user_id: str) -> UserWithLinks:
    with store() as session:
        user = get_user(session, user_id)
        links = session.scalars(
            select(IdentityLink)
            .where(IdentityLink.user_id == user.id)
            .order_by(IdentityLink.created_at)
        ).all()
        return UserWithLinks(user, tuple(links))


def list_users(store: Store, query: str | None = None, limit: int = 100) -> list[User]:
    with store() as session:
        statement = select(User).order_by(User.created_at).limit(limit)
        if query:
            needle = query.lower()  # matched literally: % and _ are escaped
            statement = statement.where(
                or_(
                    func.lower(User.name).contains(needle, autoescape=True),
                    func.lower(User.email).contains(needle, autoescape=True),
                    User.phone.contains(needle, autoescape=True),
                )
            )
        return list(session.scalars(statement))


def find_user_by_phone(session: Session, phone: str) -> User | None:
    return session.scalar(select(User).where(User.phone == phone))


def wecom_subject(corp_id: str, userid: str) -> tuple[str, str]:
    """(provider_user_id, provider_user_key): the id as WeCom spells it, and the lookup key
    (WeCom userids are case-insensitive)."""
    if not _CORP_ID.match(corp_id or ""):
        raise ValidationError("corp_id", f"Not a WeCom corp id: {corp_id!r}")
    if not _WECOM_USERID.match(userid or ""):
        raise ValidationError("userid", f"Not a WeCom userid: {userid!r}")
    return f"{corp_id}/{userid}", f"{corp_id}/{userid.lower()}"


def link_wecom(
    store: Store,
    user_id: str,
    corp_id: str,
    userid: str,
    metadata: Mapping[str, Any] | None = None,
) -> IdentityLink:
    """Bind the WeCom member `corp_id/userid` to a core user; one member, one user."""
    provider_user_id, key = wecom_subject(corp_id, userid)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError("metadata", "Link metadata must be a JSON object.")
    with store() as session:
        get_user(session, user_id)
        existing = session.scalar(
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
        session.add(link)
        audit.record(session, "link.created", user_id=user_id, actor="cli", link=provider_user_id)
        try:
            session.commit()
        except IntegrityError:
            raise ConflictError(f"WeCom member {provider_user_id} is already linked.") from None
        return link


def mark_phone_verified(session: Session, user: User) -> None:
    if user.phone_verified_at is None:
        user.phone_verified_at = utcnow()
