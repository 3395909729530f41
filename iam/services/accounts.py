"""Outside identities and core users: find the link of an identity, or bind it on demand to the
core user with a proven phone number (made if there is none yet)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import IdentityLink, PendingBinding, User, new_id
from iam.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from iam.federation.connector import Identity
from iam.secretbox import SecretBox, digest
from iam.services import audit, directory, otp
from iam.services.attempts import Attempt
from iam.services.phones import mask_phone, normalize_phone
from iam.services.rows import keep_for_browser, kept_for_browser
from iam.services.users import MAX_NAME, find_user_by_phone

BINDING_LIFETIME = timedelta(minutes=10)


@dataclass(frozen=True)
class Linked:
    """A core user and the link this login came through."""

    user: User
    link: IdentityLink


def active_links(db: Session, user_id: str) -> list[IdentityLink]:
    """The user's usable identities, oldest first (the selector's order)."""
    return list(
        db.scalars(
            select(IdentityLink)
            .where(IdentityLink.user_id == user_id, IdentityLink.status == "active")
            .order_by(IdentityLink.created_at, IdentityLink.id)
        )
    )


def active_link_ids(db: Session, user_id: str) -> tuple[str, ...]:
    """Ids of `active_links`, for the pre-flight check (one indexed query)."""
    return tuple(
        db.scalars(
            select(IdentityLink.id)
            .where(IdentityLink.user_id == user_id, IdentityLink.status == "active")
            .order_by(IdentityLink.created_at, IdentityLink.id)
        )
    )


def _link_of(db: Session, identity: Identity) -> IdentityLink | None:
    return db.scalar(
        select(IdentityLink).where(
            IdentityLink.provider == identity.provider,
            IdentityLink.provider_user_key == identity.subject_key,
        )
    )


def _usable(db: Session, link: IdentityLink) -> Linked:
    """The link's person, for a sign-in through the provider. A link disabled because its
    member left comes back: the provider has just signed them in, so they are a member again
    (`directory.enable_link`); one disabled for another reason stays disabled."""
    user = db.get(User, link.user_id)
    if user is None or not user.is_active:
        raise ForbiddenError("The account of this identity is disabled.")
    if link.status != "active" and link.disabled_reason == directory.LEFT:
        directory.enable_link(db, link, actor="login")
    if link.status != "active":
        raise ForbiddenError("This identity is disabled here.")
    return Linked(user, link)


def find_linked(
    db: Session, identity: Identity, *, ip: str | None = None, owner_id: str | None = None
) -> Linked | None:
    """The link of this identity, with its metadata refreshed from this login; None if unbound.
    A disabled link or user raises `ForbiddenError`; a link of someone other than `owner_id`
    (when given) raises `ConflictError`, before anything is touched."""
    link = _link_of(db, identity)
    if link is None:
        return None
    if owner_id is not None and link.user_id != owner_id:
        raise ConflictError(f"{identity.subject} is linked to another account.")
    linked = _usable(db, link)
    link.link_metadata = dict(identity.metadata)
    link.provider_user_id = identity.subject
    link.last_login_at = utcnow()
    directory.link_event(db, "link.used", link, ip=ip)
    return linked


def hold_for_binding(
    db: Session,
    browser_id: str,
    identity: Identity,
    flow_id: str | None,
    *,
    return_to: str | None = None,
) -> str:
    """Keep an unbound identity for this browser while the person proves a phone number; the
    returned token names it (only its digest is stored). `return_to`: where to go once bound
    when no authorization request waits (a workbench launch)."""
    token = secrets.token_urlsafe(24)
    keep_for_browser(
        db,
        PendingBinding,
        digest(token),
        browser_id,
        BINDING_LIFETIME,
        identity={**asdict(identity), "metadata": dict(identity.metadata)},
        flow_id=flow_id,
        return_to=return_to,
    )
    return token


@dataclass(frozen=True)
class PendingIdentity:
    """An identity waiting to be bound, the authorization request it came for, and where to
    go when none waits."""

    identity: Identity
    flow_id: str | None
    return_to: str | None = None


def pending_binding(db: Session, token: str, browser_id: str) -> PendingIdentity:
    """The identity waiting under `token` for this browser; else `NotFoundError`."""
    key = digest(token) if token and len(token) <= 64 else ""
    row = kept_for_browser(db, PendingBinding, key, browser_id)
    if row is None:
        raise NotFoundError("This binding has expired or is not yours.")
    fields: dict[str, Any] = dict(row.identity)
    return PendingIdentity(Identity(**fields), row.flow_id, row.return_to)


def bind_with_code(
    db: Session,
    box: SecretBox,
    token: str,
    raw_phone: str,
    code: str,
    *,
    attempt: Attempt,
) -> tuple[Linked, PendingIdentity]:
    """Check the SMS code for the phone, bind the identity waiting for the attempt's browser to
    the person with that phone (made if there is none) and spend the binding, in the caller's
    transaction. A wrong code commits only what it spent (`otp.checked_or_committed`)."""
    pending = pending_binding(db, token, attempt.browser)
    phone = otp.checked_or_committed(
        db, lambda: otp.check_code(db, box, raw_phone, "bind", code, attempt=attempt)
    )
    owner = _owner_by_phone(pending.identity, phone, attempt.ip, unproven=False)
    linked = _bind_in(db, pending.identity, owner, method="sms", ip=attempt.ip)
    db.execute(delete(PendingBinding).where(PendingBinding.id == digest(token)))
    return linked, pending


class _SmsRequiredError(Exception):
    """A trusted mobile names a person who is known through another source: only an SMS code
    may bind to them (the mobile is whatever one corporation's admin typed in)."""

    def __init__(self, user_id: str, linked_elsewhere: list[str]) -> None:
        super().__init__(f"user {user_id} has active links elsewhere: {linked_elsewhere}")
        self.user_id = user_id
        self.linked_elsewhere = linked_elsewhere


def bind_trusted_mobile(db: Session, identity: Identity, *, ip: str | None = None) -> Linked | None:
    """Bind without the SMS step when the provider is trusted for mobiles and gave one we can
    read; None when it cannot be done that way.

    A trusted corporation vouches for its own members only: the person with that phone may not
    hold an active link anywhere else (another corporation, another provider), or any admin of
    the trusted corporation could take them over by typing their number into a member's
    profile. Such a person proves the phone by SMS code at /bind instead (audited here)."""
    if not identity.phone_trusted or not identity.phone:
        return None
    try:
        phone = normalize_phone(identity.phone)
    except ValidationError:
        return None
    owner = _owner_by_phone(identity, phone, ip, unproven=True)
    try:
        # Refused before anything is written: the unit of work goes on (to hold the binding).
        return _bind_in(db, identity, owner, method="trusted_mobile", ip=ip)
    except _SmsRequiredError as refused:
        audit.record(
            db.connection(),
            "link.trusted_mobile_refused",
            outcome="failure",
            user_id=refused.user_id,
            ip=ip,
            subject=identity.subject,
            phone=mask_phone(phone),
            reason="active_link_elsewhere",
            linked_elsewhere=refused.linked_elsewhere,
            next="sms",
        )
        return None


def bind(db: Session, identity: Identity, phone: str, *, method: str, ip: str | None) -> Linked:
    """Link the identity to the core user with this (proven) phone, made if there is none.

    Two first logins of one member at once end with one link: the unique constraint refuses
    the second insert, and the retry finds the first one's link."""
    owner = _owner_by_phone(identity, phone, ip, unproven=False)
    return _bind_in(db, identity, owner, method=method, ip=ip)


def _owner_by_phone(
    identity: Identity, phone: str, ip: str | None, *, unproven: bool
) -> Callable[[Session], User]:
    """The core user with this phone, made if there is none. `unproven`: the phone was only
    asserted by the provider, so `_SmsRequiredError` for a person with links elsewhere (checked
    in the binding's own transaction, just before the link is made)."""

    def owner(db: Session) -> User:
        user = find_user_by_phone(db, phone)
        if user is None:
            user = User(
                id=new_id(),
                name=(identity.display_name or identity.subject)[:MAX_NAME],
                phone=phone,
                phone_verified_at=utcnow(),
                email=identity.email if identity.email and len(identity.email) <= 320 else None,
            )
            db.add(user)
            db.flush()  # the link refers to it (no ORM relationship orders the inserts)
            audit.record(
                db.connection(), "user.created", user_id=user.id, ip=ip, via=identity.provider
            )
            return user
        if not user.is_active:
            raise ForbiddenError("The account with this phone number is disabled.")
        if unproven:
            elsewhere = _active_links_elsewhere(db, user.id, identity)
            if elsewhere:
                raise _SmsRequiredError(user.id, elsewhere)
        if user.phone_verified_at is None:
            user.phone_verified_at = utcnow()
        return user

    return owner


def _source_of(provider: str, key: str) -> tuple[str, str]:
    """Where an identity comes from: its provider and the part of its key before the first
    `/` (for WeCom the corp id). A key without `/` is a source of its own."""
    return provider, key.partition("/")[0]


def _active_links_elsewhere(db: Session, user_id: str, identity: Identity) -> list[str]:
    """The user's active links that do not come from the identity's own source (corporation)."""
    here = _source_of(identity.provider, identity.subject_key)
    return [
        link.provider_user_id
        for link in active_links(db, user_id)
        if _source_of(link.provider, link.provider_user_key) != here
    ]


def bind_to_user(db: Session, identity: Identity, user_id: str, *, ip: str | None) -> Linked:
    """Link the identity to the signed-in person who asked to link one (the linking offer):
    they proved both who they are here and the identity at the provider, in one browser."""

    def owner(db: Session) -> User:
        user = db.get(User, user_id)
        if user is None or not user.is_active:
            raise ForbiddenError("The account to link to is disabled.")
        return user

    linked = _bind_in(db, identity, owner, method="session", ip=ip)
    if linked.user.id != user_id:
        raise ConflictError(f"{identity.subject} is linked to another account.")
    return linked


def _bind_in(
    db: Session,
    identity: Identity,
    owner: Callable[[Session], User],
    *,
    method: str,
    ip: str | None,
) -> Linked:
    """Link the identity to `owner`'s user in the caller's transaction (or find its link)."""
    existing = _link_of(db, identity)
    if existing is not None:
        return _usable(db, existing)  # bound meanwhile (another tab, the same person)
    now = utcnow()
    user = owner(db)
    link = IdentityLink(
        id=new_id(),
        user_id=user.id,
        provider=identity.provider,
        provider_user_id=identity.subject,
        provider_user_key=identity.subject_key,
        link_metadata=dict(identity.metadata),
        status="active",
        last_login_at=now,
    )
    db.add(link)
    directory.link_event(db, "link.created", link, ip=ip, method=method)
    return Linked(user, link)


@dataclass(frozen=True)
class NeedsBinding:
    """No link yet: the person must prove a phone number at /bind (token names the identity)."""

    token: str


def resolve_identity(
    db: Session,
    identity: Identity,
    flow_id: str | None,
    *,
    attempt: Attempt,
    link_to: str | None = None,
    return_to: str | None = None,
) -> Linked | NeedsBinding:
    """After a provider vouched for someone: their link (refreshed); for a signed-in person who
    asked to link an identity (`link_to`), a link made at once from a trusted mobile (only for
    a new person or one with no active link elsewhere); or else a binding to finish by SMS, held
    for the attempt's browser."""
    ip = attempt.ip
    linked = find_linked(db, identity, ip=ip, owner_id=link_to)
    if linked is None and link_to is not None:
        linked = bind_to_user(db, identity, link_to, ip=ip)
    linked = linked or bind_trusted_mobile(db, identity, ip=ip)
    if linked is not None:
        return linked
    return NeedsBinding(
        hold_for_binding(db, attempt.browser, identity, flow_id, return_to=return_to)
    )


def is_linked(db: Session, identity: Identity) -> bool:
    """Whether this identity has a link (active or not): a known member of its provider."""
    return _link_of(db, identity) is not None
