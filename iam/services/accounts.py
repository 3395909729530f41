"""Outside identities and core users: find the link of an identity, or bind it on demand to the
core user with a proven phone number (made if there is none yet)."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import IdentityLink, PendingBinding, User, new_id
from iam.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from iam.federation.connector import Identity
from iam.secretbox import SecretBox, digest
from iam.services import audit, directory, otp
from iam.services.attempts import Attempt
from iam.services.phones import display_phone, mask_phone, normalize_phone
from iam.services.rows import keep_for_browser, kept_for_browser
from iam.services.users import MAX_NAME, find_user_by_phone

BINDING_LIFETIME = timedelta(minutes=10)
#: How long a proven phone waits for the person to confirm linking to a differently named
#: account, and a new account's notice stays readable.
AFTERWARDS_LIFETIME = timedelta(minutes=5)
#: The stages of a held binding after the phone step, kept in its row's JSON under this key
#: (next to the identity, so that no schema change was needed): `confirm` (a person with
#: another name waits to be confirmed: `user_id`, `method` of the proof) and `created` (bound
#: to a person made for it: the notice to show).
STAGE_KEY = "_stage"
CONFIRM = "confirm"
CREATED = "created"


@dataclass(frozen=True)
class Linked:
    """A core user and the link this login came through; `new_user`: made by this binding."""

    user: User
    link: IdentityLink
    new_user: bool = False


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
    confirm_for: str | None = None,
) -> str:
    """Keep an unbound identity for this browser while the person proves a phone number; the
    returned token names it (only its digest is stored). `return_to`: where to go once bound
    when no authorization request waits (a workbench launch). `confirm_for`: a signed-in
    person who asked to link it, whose name is not the member's: held at the linking question."""
    token = secrets.token_urlsafe(24)
    row = keep_for_browser(
        db,
        PendingBinding,
        digest(token),
        browser_id,
        BINDING_LIFETIME,
        identity={**asdict(identity), "metadata": dict(identity.metadata)},
        flow_id=flow_id,
        return_to=return_to,
    )
    if confirm_for is not None:
        _advance(row, CONFIRM, confirm_for, "session")
    return token


@dataclass(frozen=True)
class PendingIdentity:
    """An identity waiting to be bound, the authorization request it came for, and where to
    go when none waits; past the phone step, its `stage` (`confirm`, `created`), the person
    (`user_id`) and how they proved it (`method`: `sms`, `session`)."""

    identity: Identity
    flow_id: str | None
    return_to: str | None = None
    stage: str | None = None
    user_id: str | None = None
    method: str | None = None


def _held(db: Session, token: str, browser_id: str) -> PendingBinding:
    key = digest(token) if token and len(token) <= 64 else ""
    row = kept_for_browser(db, PendingBinding, key, browser_id)
    if row is None:
        raise NotFoundError("This binding has expired or is not yours.")
    return row


def _pending_of(row: PendingBinding) -> PendingIdentity:
    fields: dict[str, Any] = dict(row.identity)
    stage: dict[str, str] = fields.pop(STAGE_KEY, None) or {}
    return PendingIdentity(
        Identity(**fields),
        row.flow_id,
        row.return_to,
        stage=stage.get("stage"),
        user_id=stage.get("user_id"),
        method=stage.get("method"),
    )


def _advance(row: PendingBinding, stage: str, user_id: str, method: str) -> None:
    """Move a held binding past the phone step, for a few minutes at most."""
    row.identity = {
        **row.identity,
        STAGE_KEY: {"stage": stage, "user_id": user_id, "method": method},
    }
    row.expires_at = min(row.expires_at, utcnow() + AFTERWARDS_LIFETIME)


def pending_binding(db: Session, token: str, browser_id: str) -> PendingIdentity:
    """The identity waiting under `token` for this browser; else `NotFoundError`."""
    return _pending_of(_held(db, token, browser_id))


def same_name(one: str, other: str) -> bool:
    """Whether two names name one person for the linking question: equal once width, case and
    spaces are ignored, or one is a word of the other (张三 and 张三 Zhang San)."""

    def words(name: str) -> list[str]:
        return unicodedata.normalize("NFKC", name).casefold().replace("·", " ").split()

    a, b = words(one), words(other)
    return bool(a and b) and ("".join(a) == "".join(b) or " ".join(a) in b or " ".join(b) in a)


@dataclass(frozen=True)
class Confirmation:
    """What the linking question shows: the member, and the person it would be linked to."""

    pending: PendingIdentity
    person_name: str
    person_phone: str | None


def confirmation(db: Session, token: str, browser_id: str) -> Confirmation:
    """The linking question of a binding at its `confirm` or `created` stage (`NotFoundError`
    at another stage or for a person gone meanwhile)."""
    pending = pending_binding(db, token, browser_id)
    user = db.get(User, pending.user_id) if pending.user_id else None
    if pending.stage not in (CONFIRM, CREATED) or user is None:
        raise NotFoundError("This binding waits for no confirmation.")
    return Confirmation(pending, user.name, display_phone(user.phone) if user.phone else None)


@dataclass(frozen=True)
class Bound:
    """A finished binding: the link, and the binding it finished (where to go next)."""

    linked: Linked
    pending: PendingIdentity


def bind_with_code(
    db: Session,
    box: SecretBox,
    token: str,
    raw_phone: str,
    code: str,
    *,
    attempt: Attempt,
) -> Bound | PendingIdentity:
    """Check the SMS code for the phone, then bind the identity waiting for the attempt's
    browser to the person with that phone (made if there is none), in the caller's
    transaction; a binding to a person made now stays as the new account's notice, another is
    spent. When that person's name is not the member's, nothing is bound: the binding waits
    for the person to confirm (the answer is it, at its `confirm` stage). A wrong code commits
    only what it spent (`otp.checked_or_committed`)."""
    row = _held(db, token, attempt.browser)
    pending = _pending_of(row)
    if pending.stage is not None:
        raise NotFoundError("This binding is past its phone step.")
    phone = otp.checked_or_committed(
        db, lambda: otp.check_code(db, box, raw_phone, "bind", code, attempt=attempt)
    )
    known = find_user_by_phone(db, phone)
    if (
        known is not None
        and known.is_active
        and _link_of(db, pending.identity) is None
        and not same_name(known.name, pending.identity.display_name)
    ):
        _advance(row, CONFIRM, known.id, "sms")
        return _pending_of(row)
    linked = _bind_in(
        db,
        pending.identity,
        _owner_by_phone(pending.identity, phone, attempt.ip, unproven=False),
        method="sms",
        ip=attempt.ip,
    )
    _finish(db, row, linked)
    return Bound(linked, pending)


def _finish(db: Session, row: PendingBinding, linked: Linked) -> None:
    """Spend a held binding once bound; one that made a person stays, as its notice."""
    if linked.new_user:
        _advance(row, CREATED, linked.user.id, "sms")
    else:
        db.delete(row)


def confirm_binding(
    db: Session, token: str, *, attempt: Attempt, signed_in_user_id: str | None
) -> Bound:
    """The person confirmed the linking question: bind the identity to the person it named and
    spend the binding, in the caller's transaction. Only the browser that proved the person,
    once, and while the question is live; a link made by a signed-in person's session needs
    that person still signed in. `NotFoundError` else (nothing is touched)."""
    row = _held(db, token, attempt.browser)
    pending = _pending_of(row)
    if pending.stage != CONFIRM or pending.user_id is None:
        raise NotFoundError("This binding waits for no confirmation.")
    if pending.method == "session" and signed_in_user_id != pending.user_id:
        raise NotFoundError("The person who asked to link is no longer signed in here.")
    method = "session" if pending.method == "session" else "sms"
    linked = bind_to_user(db, pending.identity, pending.user_id, ip=attempt.ip, method=method)
    if method == "sms" and linked.user.phone_verified_at is None:
        linked.user.phone_verified_at = utcnow()
    db.delete(row)
    return Bound(linked, pending)


def drop_binding(db: Session, token: str, browser_id: str) -> PendingIdentity:
    """The person cancelled the linking question: the held binding is dropped, nothing is
    linked; the answer says where the sign-in came from."""
    row = _held(db, token, browser_id)
    pending = _pending_of(row)
    db.delete(row)
    return pending


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


#: Finds (or makes) the person a link is for: (the person, whether made now).
Owner = Callable[[Session], tuple[User, bool]]


def _owner_by_phone(identity: Identity, phone: str, ip: str | None, *, unproven: bool) -> Owner:
    """The core user with this phone, made if there is none. `unproven`: the phone was only
    asserted by the provider, so `_SmsRequiredError` for a person with links elsewhere (checked
    in the binding's own transaction, just before the link is made)."""

    def owner(db: Session) -> tuple[User, bool]:
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
            return user, True
        if not user.is_active:
            raise ForbiddenError("The account with this phone number is disabled.")
        if unproven:
            elsewhere = _active_links_elsewhere(db, user.id, identity)
            if elsewhere:
                raise _SmsRequiredError(user.id, elsewhere)
        if user.phone_verified_at is None:
            user.phone_verified_at = utcnow()
        return user, False

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


def bind_to_user(
    db: Session, identity: Identity, user_id: str, *, ip: str | None, method: str = "session"
) -> Linked:
    """Link the identity to a person who proved who they are here: the signed-in person who
    asked to link one (the linking offer), or the one whose phone was proven by SMS and who
    confirmed the linking question; `ConflictError` if it is linked to someone else."""

    def owner(db: Session) -> tuple[User, bool]:
        user = db.get(User, user_id)
        if user is None or not user.is_active:
            raise ForbiddenError("The account to link to is disabled.")
        return user, False

    linked = _bind_in(db, identity, owner, method=method, ip=ip)
    if linked.user.id != user_id:
        raise ConflictError(f"{identity.subject} is linked to another account.")
    return linked


def _bind_in(
    db: Session,
    identity: Identity,
    owner: Owner,
    *,
    method: str,
    ip: str | None,
) -> Linked:
    """Link the identity to `owner`'s user in the caller's transaction (or find its link)."""
    existing = _link_of(db, identity)
    if existing is not None:
        return _usable(db, existing)  # bound meanwhile (another tab, the same person)
    now = utcnow()
    user, made = owner(db)
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
    return Linked(user, link, new_user=made)


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
    asked to link an identity (`link_to`), a link made at once, or, when their name is not the
    member's, a binding held at its `confirm` stage (the linking question); a link made at once
    from a trusted mobile (only for a new person or one with no active link elsewhere); or else
    a binding to finish by SMS, held for the attempt's browser."""
    ip = attempt.ip
    linked = find_linked(db, identity, ip=ip, owner_id=link_to)
    if linked is None and link_to is not None:
        asker = db.get(User, link_to)
        if (
            asker is not None
            and asker.is_active
            and not same_name(asker.name, identity.display_name)
        ):
            held = hold_for_binding(
                db, attempt.browser, identity, flow_id, return_to=return_to, confirm_for=link_to
            )
            return NeedsBinding(held)
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
