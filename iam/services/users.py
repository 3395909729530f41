"""Core users and their identity links.

Every function here works in the caller's unit of work (`db`, an ORM session): it never opens a
transaction and never commits, so what it changes and the audit row that says so are written
together or not at all (`iam.db.unit.one_unit`, `in_worker`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    delete,
    false,
    func,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
from iam.federation.connector import Identity
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


class PhoneTakenError(ConflictError):
    """The phone belongs to another person, `user_id` (a page may name them)."""

    def __init__(self, phone: str, user_id: str) -> None:
        super().__init__(f"A user with phone {phone} already exists.")
        self.user_id = user_id


class LinkTakenError(ConflictError):
    """The identity is linked already, to `user_id` (this person or someone else)."""

    def __init__(self, subject: str, user_id: str) -> None:
        super().__init__(f"WeCom member {subject} is already linked to user {user_id}.")
        self.user_id = user_id


def invalid_details(name: str, phone: str, email: str, *, phone_required: bool) -> list[str]:
    """The fields of a person's details (name, phone, email) that are malformed, all of them
    at once, so a form can mark each; the use cases below check them again."""
    checks: list[tuple[str, Callable[[], object]]] = [
        ("name", partial(_check_name, name)),
        ("phone", partial(_check_phone, phone, required=phone_required)),
        ("email", partial(_check_email, email)),
    ]
    invalid = []
    for field, check in checks:
        try:
            check()
        except ValidationError:
            invalid.append(field)
    return invalid


def _check_phone(phone: str | None, *, required: bool) -> str | None:
    if not required and not (phone or "").strip():
        return None
    return normalize_phone(phone or "")


def _phone_free(db: Session, phone: str | None, user_id: str | None = None) -> None:
    """Refuse a phone that belongs to someone else (one phone, one person)."""
    if phone is None:
        return
    owner = db.scalar(select(User.id).where(User.phone == phone))
    if owner is not None and owner != user_id:
        raise PhoneTakenError(phone, owner)


def create_user(
    db: Session,
    name: str,
    phone: str,
    email: str | None = None,
    *,
    actor: str = "cli",
    ip: str | None = None,
) -> User:
    """A new core user; the phone must not belong to anyone yet. The insert is flushed here, so
    a concurrent one of the same phone fails now (`IntegrityError`): the unit of work runs
    again from the start and this check then finds that person (a `PhoneTakenError`)."""
    user = User(
        id=new_id(),  # known before the flush, so the audit event can name it
        name=_check_name(name),
        phone=normalize_phone(phone),
        email=_check_email(email),
    )
    _phone_free(db, user.phone)
    db.add(user)
    db.flush()
    audit.record(db.connection(), "user.created", user_id=user.id, actor=actor, ip=ip)
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
    member fails the flush, and the unit run again finds it (a `LinkTakenError`)."""
    provider_user_id, key = wecom_subject(corp_id, userid)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError("metadata", "Link metadata must be a JSON object.")
    get_user(db, user_id)
    return _add_link(db, user_id, WECOM, provider_user_id, key, metadata or {}, actor="cli")


def link_member(
    db: Session, user_id: str, identity: Identity, *, actor: str, ip: str | None = None
) -> IdentityLink:
    """Link by hand an identity the provider has just vouched for (an admin typed a WeCom
    userid and the corporation's directory knows them): its spelling and metadata are the
    provider's. One identity, one person, as `link_wecom`."""
    user = _get_user(db, user_id)
    return _add_link(
        db,
        user.id,
        identity.provider,
        identity.subject,
        identity.subject_key,
        identity.metadata,
        actor=actor,
        ip=ip,
    )


def _add_link(
    db: Session,
    user_id: str,
    provider: str,
    provider_user_id: str,
    key: str,
    metadata: Mapping[str, Any],
    *,
    actor: str,
    ip: str | None = None,
) -> IdentityLink:
    existing = db.scalar(
        select(IdentityLink).where(
            IdentityLink.provider == provider, IdentityLink.provider_user_key == key
        )
    )
    if existing is not None:
        raise LinkTakenError(existing.provider_user_id, existing.user_id)
    link = IdentityLink(
        user_id=user_id,
        provider=provider,
        provider_user_id=provider_user_id,
        provider_user_key=key,
        link_metadata=dict(metadata),
        status="active",
    )
    db.add(link)
    db.flush()
    audit.record(
        db.connection(), "link.created", user_id=user_id, actor=actor, ip=ip, link=provider_user_id
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


def _matching(db: Session, query: str | None) -> ColumnElement[bool] | None:
    """Who a search finds: those whose name, email, phone or linked WeCom userid contains
    `query` (literally: `%` and `_` are no wildcards; case-insensitive); None: everyone. A
    phone may be typed as the person would (`138 0013 8000`).

    Every key is in `users.search_text` (kept by the database: migration 0018), so a search is
    one condition on one table and the planner weighs an index against walking the list in its
    own order by the needle's statistics. On PostgreSQL, three characters and more are
    answered by `ix_users_search_trgm`; one or two by `ix_users_search_chars` (the rows holding
    each of the needle's characters), then the LIKE itself. A link's `provider_user_key` is
    its `provider_user_id` with the userid lowercased, so the lowercased id finds whatever the
    key would.

    On PostgreSQL the rest of the unit is planned for its own values (`plan_cache_mode`): a
    prepared statement's generic plan, made for any needle, would read a broad one through
    the index (seconds) or walk every person for a rare one."""
    query = (query or "").strip()
    if len(query) > MAX_QUERY:
        raise ValidationError("q", f"Search for at most {MAX_QUERY} characters.")
    # NUL: PostgreSQL refuses it in text; the separator would match across two keys.
    if "\x00" in query or SEPARATOR in query:
        return false()
    if not query:
        return None
    needle = query.lower()
    found = User.search_text.contains(needle, autoescape=True)
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        if len(needle) < TRIGRAM:
            characters = func.string_to_array(User.search_text, null(), type_=ARRAY(Text))
            found = and_(characters.contains(sorted(set(needle))), found)
    with suppress(ValidationError):  # a phone number as typed, not as stored
        return or_(found, User.phone == normalize_phone(query))
    return found


#: What stands before each key but the first in `users.search_text`; no search contains it.
SEPARATOR = "\x1f"
#: The shortest search a trigram index answers.
TRIGRAM = 3


@dataclass(frozen=True)
class Cursor:
    """Where a page of the users list starts or ends: a row's place in the list's order
    (`created_at`, then `id`), so the next page is the rows after it whatever was added or
    removed meanwhile (keyset pagination on `ix_users_created_at_id`: a page costs the same
    at the millionth row as at the first). Outside, an opaque string (`text`, `read`)."""

    created_at: datetime
    id: str

    @classmethod
    def of(cls, user: User) -> Cursor:
        return cls(user.created_at, user.id)

    @property
    def text(self) -> str:
        """`<microseconds since 1970>_<id>`: every string of that shape is a place in the list."""
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.id}"

    @classmethod
    def read(cls, text: str, field: str = "after") -> Cursor:
        """The cursor `text` names; a `ValidationError` on `field` for anything else (a cursor
        only says where to start: a forged one shows another page, nothing more)."""
        shape = CURSOR.fullmatch(text)
        if shape is None:
            raise ValidationError(field, f"{field} must be a cursor from a previous page.")
        micros, user_id = shape.groups()
        return cls(_EPOCH + timedelta(microseconds=int(micros)), user_id)


#: A cursor's text: a time (microseconds since 1970, UTC: 16 digits reach 2286) and an id.
CURSOR = re.compile(rf"([0-9]{{1,16}})_([A-Za-z0-9-]{{1,{MAX_ID}}})")
MAX_CURSOR = 16 + 1 + MAX_ID
_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive UTC, as every stored time


def search_users(
    db: Session,
    query: str | None,
    *,
    limit: int,
    offset: int = 0,
    after: Cursor | None = None,
    before: Cursor | None = None,
) -> list[UserSummary]:
    """Users a search finds (`_matching`), oldest first: the first `limit` after `offset` rows
    (deep offsets read every row skipped), after the row `after` names, or the last `limit`
    before the row `before` names (in the same order). One statement: the link count is a
    correlated subquery."""
    matching = _matching(db, query)
    link_count = (
        select(func.count(IdentityLink.id))
        .where(IdentityLink.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    place = tuple_(User.created_at, User.id)
    statement = select(User, link_count).limit(limit).offset(offset)
    if matching is not None:
        statement = statement.where(matching)
    if after is not None:
        statement = statement.where(place > tuple_(literal(after.created_at), literal(after.id)))
    if before is not None:
        statement = statement.where(place < tuple_(literal(before.created_at), literal(before.id)))
        statement = statement.order_by(User.created_at.desc(), User.id.desc())
        return [UserSummary(user, count) for user, count in reversed(db.execute(statement).all())]
    statement = statement.order_by(User.created_at, User.id)
    return [UserSummary(user, count) for user, count in db.execute(statement)]


#: Past this many, a search's total is not counted on ("more than 10,000"): counting every
#: match of a broad search is a scan. The whole list's total is then PostgreSQL's estimate.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Total:
    """How many users a search finds: `exact`, `about` (the planner's estimate of the whole
    table) or `more_than` (at least `value` + 1: counting stopped there)."""

    value: int
    kind: Literal["exact", "about", "more_than"] = "exact"


def count_users(db: Session, query: str | None) -> Total:
    """How many users a search finds in all, for "1–50 of 1,234". On PostgreSQL counted up to
    `COUNT_CAP` (an index-only scan of that many entries at most); past it, "about" the table's
    size as PostgreSQL last measured it (`pg_class.reltuples`, kept by autovacuum's ANALYZE) for
    the whole list, or "more than" the cap for a search: COUNT(*) of a million rows reads them
    all (some 100 ms), on every page view. SQLite, for small deployments, counts the whole list
    exactly and a search up to the cap as well."""
    matching = _matching(db, query)
    postgres = db.get_bind().dialect.name == "postgresql"
    if matching is None and not postgres:
        return Total(db.scalar(select(func.count()).select_from(User)) or 0)
    capped = select(literal(1)).select_from(User).limit(COUNT_CAP + 1)
    if matching is not None:
        capped = capped.where(matching)
    found = db.scalar(select(func.count()).select_from(capped.subquery())) or 0
    if found <= COUNT_CAP:
        return Total(found)
    if matching is None:
        estimate = db.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'users'::regclass"))
        if estimate is not None and estimate > COUNT_CAP:
            return Total(int(estimate), "about")
    return Total(COUNT_CAP, "more_than")


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


def _end_sessions(
    db: Session, user: User, now: datetime, *, every_token: bool, sid: str | None = None
) -> int:
    """Revoke the user's tokens (those bound to a session, or `every_token`), then delete every
    session of theirs (or only `sid`); how many live sessions ended. The apps those sessions
    gave tokens to that asked to be told get a logout token (`backchannel`), queued in the
    same unit."""
    which = SsoSession.user_id == user.id
    if sid is not None:
        which = which & (SsoSession.id == sid)
    of_user = select(SsoSession.id).where(which)
    reason = "user disabled" if every_token else "sessions ended by an admin"
    backchannel.enqueue(db, db.scalars(of_user).all(), reason)
    live = db.scalar(
        select(func.count()).select_from(SsoSession).where(which, SsoSession.expires_at > now)
    )
    for table in (RefreshToken, AccessToken):
        bound = table.user_id == user.id if every_token else table.sid.in_(of_user)
        db.execute(update(table).where(bound, table.revoked_at.is_(None)).values(revoked_at=now))
    db.execute(delete(SsoSession).where(which))
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


def end_user_session(
    db: Session, user_id: str, sid: str, *, actor: str, ip: str | None = None
) -> None:
    """End one live session of a person (one browser) and revoke the tokens bound to it, in
    the caller's unit with its audit row; a session that is not theirs, or not live, is not
    found."""
    user = _get_user(db, user_id)
    live = db.get(SsoSession, sid) if _plausible_id(sid) else None
    if live is None or live.user_id != user.id or live.expires_at <= utcnow():
        raise NotFoundError(f"User {user.id} has no live session {sid!r}.")
    _end_sessions(db, user, utcnow(), every_token=False, sid=sid)
    audit.record(
        db.connection(), "user.session_ended", user_id=user.id, actor=actor, ip=ip, sid=sid
    )


#: The fields of a person an admin may change, in the order a form shows them.
DETAILS = ("name", "phone", "email")


def update_user(
    db: Session,
    user_id: str,
    *,
    name: str,
    phone: str,
    email: str,
    actor: str,
    ip: str | None = None,
) -> list[str]:
    """Change a person's name, phone and email (an empty phone or email removes it), in the
    caller's unit with its audit row `user.updated`, which names the fields changed, never
    their values. A phone that belongs to someone else is refused (`PhoneTakenError`); a new
    phone is not verified until the person signs in with it. Returns the fields changed (none:
    nothing is written)."""
    user = _get_user(db, user_id)
    wanted = {
        "name": _check_name(name),
        "phone": _check_phone(phone, required=False),
        "email": _check_email(email),
    }
    changed = [field for field in DETAILS if getattr(user, field) != wanted[field]]
    if not changed:
        return []
    if "phone" in changed:
        _phone_free(db, wanted["phone"], user.id)
        user.phone_verified_at = None
    for field in changed:
        setattr(user, field, wanted[field])
    db.flush()  # a concurrent taker of the phone fails here; the rerun finds them
    audit.record(
        db.connection(), "user.updated", user_id=user.id, actor=actor, ip=ip, fields=changed
    )
    return changed
