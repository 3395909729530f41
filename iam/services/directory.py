"""Links follow a corporation's WeCom directory (issue #13).

A member who leaves (or is disabled in WeCom) must stop being an identity here at once: the
link is disabled (never offered by the selector, never a session's context, never in a token),
the sessions acting as it lose their context, and the tokens and codes issued with it are
revoked, so a `required` app's refresh token gets `invalid_grant` instead of minting a context
from stale metadata. A renamed userid re-keys the one link (a later login goes straight
through, and the selector never shows the corporation twice). A member whose department,
position or name changed gets fresh metadata, which the next token shows.

Every change is idempotent (an event WeCom sends twice, or one that a reconciliation already
applied, changes nothing the second time) and audited, in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import (
    AccessToken,
    AuthorizationCode,
    DirectoryEvent,
    IdentityLink,
    RefreshToken,
    SsoSession,
)
from iam.db.store import Store, rowcount
from iam.db.unit import one_unit
from iam.errors import IamError, NotFoundError
from iam.federation.connector import ConnectorError, Identity
from iam.federation.wecom.client import WeComApiError
from iam.federation.wecom.connector import PROVIDER, subject_of
from iam.secretbox import SecretBoxError
from iam.services import audit, corps

#: Why a link was disabled: its member left the corporation or was disabled there.
LEFT = "left"


def link_event(
    db: Session,
    event: str,
    link: IdentityLink,
    *,
    actor: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """A link's event in the audit trail: whose, which, the identity it holds now, and who
    or what did it."""
    audit.record(
        db.connection(),
        event,
        user_id=link.user_id,
        actor=actor,
        ip=ip,
        link_id=link.id,
        subject=link.provider_user_id,
        **detail,
    )


def member_link(db: Session, corp_id: str, userid: str) -> IdentityLink | None:
    """The link of the member `corp_id/userid` (userids are case-insensitive), active or not."""
    _subject, key = subject_of(corp_id, userid)
    return db.scalar(
        select(IdentityLink).where(
            IdentityLink.provider == PROVIDER, IdentityLink.provider_user_key == key
        )
    )


def corp_links(db: Session, corp_id: str) -> list[IdentityLink]:
    """The active links of one corporation's members, oldest first."""
    return list(
        db.scalars(
            select(IdentityLink)
            .where(
                IdentityLink.provider == PROVIDER,
                IdentityLink.provider_user_key.startswith(f"{corp_id}/", autoescape=True),
                IdentityLink.status == "active",
            )
            .order_by(IdentityLink.created_at, IdentityLink.id)
        )
    )


def disable_link(db: Session, link: IdentityLink, reason: str, *, actor: str) -> bool:
    """Disable the link and everything issued with it; False when it was not active."""
    if link.status != "active":
        return False
    now = utcnow()
    link.status = "disabled"
    link.disabled_at = now
    link.disabled_reason = reason
    lost_context = rowcount(
        db.execute(
            update(SsoSession)
            .where(SsoSession.context_link_id == link.id)
            .values(context_link_id=None, context_set_at=None)
        )
    )
    revoked = 0
    for model in (AccessToken, RefreshToken):
        revoked += rowcount(
            db.execute(
                update(model)
                .where(model.context_link_id == link.id, model.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        )
    # A code not yet exchanged would give a token without the context it was issued for.
    db.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.context_link_id == link.id,
            AuthorizationCode.consumed_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    link_event(
        db,
        "link.disabled",
        link,
        actor=actor,
        reason=reason,
        sessions=lost_context,
        tokens_revoked=revoked,
    )
    return True


def enable_link(db: Session, link: IdentityLink, *, actor: str) -> bool:
    """Make a disabled link work again (its member signed in through WeCom, so WeCom says they
    are active; or an admin re-enabled it); False when it was active."""
    if link.status == "active":
        return False
    link.status = "active"
    link.disabled_at = None
    link.disabled_reason = None
    link_event(db, "link.enabled", link, actor=actor)
    return True


def rekey_link(
    db: Session, link: IdentityLink, corp_id: str, new_userid: str, *, actor: str
) -> bool:
    """The member's userid was renamed in WeCom: the one link now names the new userid. False
    when it already does. A link that already exists for the new userid (the member signed in
    after the rename, before the event came) wins: this one, the old name, is disabled."""
    subject, key = subject_of(corp_id, new_userid)
    if link.provider_user_key == key:
        return False
    taken = member_link(db, corp_id, new_userid)
    if taken is not None:
        return disable_link(db, link, "renamed", actor=actor)
    old = link.provider_user_id
    link.provider_user_id = subject
    link.provider_user_key = key
    link.link_metadata = {**(link.link_metadata or {}), "userid": new_userid}
    link_event(db, "link.rekeyed", link, actor=actor, previous=old)
    return True


def refresh_link(db: Session, link: IdentityLink, identity: Identity, *, actor: str) -> bool:
    """The member as the directory shows them now: the link's metadata (department, position,
    name: what tokens and the selector show). False when nothing changed."""
    fresh = dict(identity.metadata)
    if fresh == dict(link.link_metadata or {}):
        return False
    changed = sorted(
        name
        for name in {*fresh, *(link.link_metadata or {})}
        if fresh.get(name) != (link.link_metadata or {}).get(name)
    )
    link.link_metadata = fresh
    link_event(db, "link.refreshed", link, actor=actor, changed=changed)
    return True


# --- the events WeCom sends ------------------------------------------------------------------


def ciphertext_hash(encrypted: str) -> str:
    return hashlib.sha256(encrypted.encode()).hexdigest()


def store_event(
    db: Session, corp_id: str, encrypted: str, change_type: str, fields: Mapping[str, Any]
) -> int | None:
    """Keep a received event once: its id, or None when the same ciphertext came before
    (WeCom sends again when no answer came within 5 s)."""
    if (
        db.scalar(
            select(DirectoryEvent.id).where(
                DirectoryEvent.ciphertext_hash == ciphertext_hash(encrypted)
            )
        )
        is not None
    ):
        return None
    event = DirectoryEvent(
        corp_id=corp_id,
        ciphertext_hash=ciphertext_hash(encrypted),
        change_type=change_type[:64],
        fields=dict(fields),
        received_at=utcnow(),
    )
    db.add(event)
    # The same event stored meanwhile by another worker fails this insert: the unit of work
    # runs again and finds it above.
    db.flush()
    return event.id


def unhandled_events(db: Session, limit: int = 100) -> list[DirectoryEvent]:
    """Events not handled yet, oldest first."""
    return list(
        db.scalars(
            select(DirectoryEvent)
            .where(DirectoryEvent.handled_at.is_(None))
            .order_by(DirectoryEvent.id)
            .limit(limit)
        )
    )


def mark_handled(db: Session, event_id: int, outcome: str) -> None:
    db.execute(
        update(DirectoryEvent)
        .where(DirectoryEvent.id == event_id)
        .values(handled_at=utcnow(), outcome=outcome[:255])
    )


# --- following the directory -----------------------------------------------------------------

#: The member `userid` of corporation `corp_id` as the directory shows them now; None when
#: they left, were disabled or deleted (WeCom's user/get, through the corporation's connector).
Lookup = Callable[[str, str], Identity | None]
#: Who changes links when the directory says so, in the audit trail.
ACTOR = "wecom"
#: The events that change a corporation's departments.
DEPARTMENT_EVENTS = ("create_party", "update_party", "delete_party")


def follow_member(store: Store, look_up: Lookup, corp_id: str, userid: str) -> str:
    """Make the link of `corp_id/userid` what the directory says now: disabled if the member is
    gone, its metadata refreshed otherwise. The directory is asked with no transaction open (a
    slow WeCom must not hold a pooled connection); the change is one unit. Returns what
    happened, for the event's outcome and the sync's summary."""
    if one_unit(store, lambda db: member_link(db, corp_id, userid)) is None:
        return "no link"
    identity = look_up(corp_id, userid)

    def apply(db: Session) -> str:
        link = member_link(db, corp_id, userid)
        if link is None:
            return "no link"
        if identity is None:
            return "disabled" if disable_link(db, link, LEFT, actor=ACTOR) else "already disabled"
        if link.status != "active":
            return "disabled link kept"  # only a sign-in or an admin brings it back
        return "refreshed" if refresh_link(db, link, identity, actor=ACTOR) else "unchanged"

    return one_unit(store, apply)


def rename_member(store: Store, look_up: Lookup, corp_id: str, old: str, new: str) -> str:
    """WeCom renamed a userid: the link is re-keyed to the new one, then followed."""

    def rekey(db: Session) -> bool:
        link = member_link(db, corp_id, old)
        return link is not None and rekey_link(db, link, corp_id, new, actor=ACTOR)

    rekeyed = one_unit(store, rekey)
    followed = follow_member(store, look_up, corp_id, new)
    return f"rekeyed, {followed}" if rekeyed else followed


def handle_event(store: Store, look_up: Lookup, event_id: int) -> str:
    """Apply one stored event (once: a handled event is skipped) and record its outcome."""
    event = one_unit(store, lambda db: db.get(DirectoryEvent, event_id))
    if event is None or event.handled_at is not None:
        return "already handled"
    fields = event.fields
    userid = str(fields.get("UserID") or "")
    if event.change_type in ("delete_user", "update_user") and userid:
        new = str(fields.get("NewUserID") or "")
        if event.change_type == "update_user" and new and new.lower() != userid.lower():
            outcome = rename_member(store, look_up, event.corp_id, userid, new)
        else:
            # Confirmed with user/get either way: the event may be late, or a member deleted
            # then added again; the directory now is the truth.
            outcome = follow_member(store, look_up, event.corp_id, userid)
    elif event.change_type in DEPARTMENT_EVENTS:
        # The receiver forgot the corporation's department names (`WeComClient`'s cache):
        # the next sign-in of each member reads them again.
        outcome = "departments read again"
    else:
        outcome = "ignored"
    one_unit(store, lambda db: mark_handled(db, event_id, outcome))
    return outcome


def handle_pending(store: Store, look_up: Lookup) -> int:
    """Handle every event not handled yet (oldest first); how many were."""
    handled = 0
    for event in one_unit(store, unhandled_events):
        handle_event(store, look_up, event.id)
        handled += 1
    return handled


# --- reconciliation (`iam corps sync`) -------------------------------------------------------
# Callbacks are the fast path; they get lost (WeCom gives up after a few tries, a URL set after
# 2022-08-15 receives only some fields, a worker dies before handling). The sync walks every
# active link of a corporation and asks the directory about each member, paced and backing off
# when WeCom says it is asked too often.

log = logging.getLogger("iam.directory")

#: Seconds between two members (or two events) of one sync: at most 1,200 user/get calls a
#: minute for a corporation, an eighth of WeCom's 10,000 per API per minute (wecom-api.md 8),
#: leaving the rest to sign-ins and the callbacks' own lookups.
PAUSE = 0.05
#: WeCom's answers to too many calls: 45009 over a rate limit, 45033 too many at once.
THROTTLED = frozenset({45009, 45033})
#: Seconds to wait before each new try of a member WeCom throttled; WeCom blocks a per-minute
#: limit for 60 s (wecom-api.md 8), so the last wait outlasts that block. Then the member fails.
BACKOFF = (5.0, 20.0, 60.0)
#: After this many members in a row failed (WeCom unreachable, the app refused a token, the
#: hourly limit reached), the rest of the corporation is not asked: the next sync does it.
GIVE_UP_AFTER = 5
#: Who the sync's own audit events name.
SYNC_ACTOR = "sync"
#: How a member's sync ended, as the summary counts it.
DISABLED, REFRESHED, UNCHANGED, FAILED = "disabled", "refreshed", "unchanged", "failed"
#: What `follow_member` answered -> what the summary counts. Anything else ("no link",
#: "already disabled", "disabled link kept": the link changed meanwhile) is unchanged.
_COUNTED = {"disabled": DISABLED, "refreshed": REFRESHED, "unchanged": UNCHANGED}
#: A member (or an event) the sync could not finish: WeCom unreachable or refusing
#: (`ConnectorError`, `WeComApiError` included), the corporation gone or disabled meanwhile
#: (`IamError`), its secret no longer decrypting (`SecretBoxError`).
_MEMBER_FAILURES = (ConnectorError, IamError, SecretBoxError)

Sleep = Callable[[float], None]
T = TypeVar("T")


@dataclass(frozen=True)
class MemberSync:
    """One member of a sync: `outcome` is disabled, refreshed, unchanged or failed; `detail`
    what `follow_member` answered, or why the member failed."""

    userid: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class SyncSummary:
    """What one corporation's sync checked and changed."""

    corp_id: str
    checked: int  # active links walked
    disabled: int
    refreshed: int
    unchanged: int
    failed: int  # members WeCom could not be asked about: the next sync tries again
    events: int  # stored events handled first
    events_left: int  # stored events that could not be handled: still stored, unhandled
    members: tuple[MemberSync, ...] = ()

    @classmethod
    def of(
        cls, corp_id: str, members: list[MemberSync], events: int, events_left: int
    ) -> SyncSummary:
        def count(outcome: str) -> int:
            return sum(member.outcome == outcome for member in members)

        return cls(
            corp_id=corp_id,
            checked=len(members),
            disabled=count(DISABLED),
            refreshed=count(REFRESHED),
            unchanged=count(UNCHANGED),
            failed=count(FAILED),
            events=events,
            events_left=events_left,
            members=tuple(members),
        )

    @property
    def failed_userids(self) -> list[str]:
        return [member.userid for member in self.members if member.outcome == FAILED]


def sync_targets(db: Session, corp_id: str | None = None) -> list[str]:
    """The corporations a sync walks: `corp_id` (NotFoundError when unknown, IamError when
    disabled), or every enabled one, oldest first."""
    if corp_id is None:
        return [corp.corp_id for corp in corps.list_corps(db, enabled_only=True)]
    corp = corps.get_corp(db, corp_id) if corps.is_corp_id(corp_id) else None
    if corp is None:
        raise NotFoundError(f"No corporation {corp_id!r}.")
    if not corp.enabled:
        raise IamError(f"Corporation {corp_id!r} is disabled; a disabled one is not synced.")
    return [corp.corp_id]


def corp_unhandled_events(db: Session, corp_id: str, after: int = 0, limit: int = 100) -> list[int]:
    """The ids of one corporation's events not handled yet, after the id `after`, oldest first."""
    return list(
        db.scalars(
            select(DirectoryEvent.id)
            .where(
                DirectoryEvent.corp_id == corp_id,
                DirectoryEvent.handled_at.is_(None),
                DirectoryEvent.id > after,
            )
            .order_by(DirectoryEvent.id)
            .limit(limit)
        )
    )


def _pacer(pause: float, sleep: Sleep) -> Callable[[], None]:
    """Call before each call to WeCom: waits `pause` seconds, except the first time."""
    started = False

    def pace() -> None:
        nonlocal started
        if started and pause > 0:
            sleep(pause)
        started = True

    return pace


def with_backoff(call: Callable[[], T], backoff: tuple[float, ...], sleep: Sleep) -> T:
    """`call()`, tried again after each wait of `backoff` while WeCom answers that it is asked
    too often (45009, 45033); the last such error, or any other, is raised."""
    waits = iter(backoff)
    while True:
        try:
            return call()
        except WeComApiError as error:
            wait = next(waits, None) if error.code in THROTTLED else None
            if wait is None:
                raise
            log.warning(
                "WeCom %s answered %s (asked too often): trying again in %s s",
                error.api,
                error.code,
                wait,
            )
            sleep(wait)


def handle_corp_events(
    store: Store,
    look_up: Lookup,
    corp_id: str,
    *,
    pace: Callable[[], None],
    backoff: tuple[float, ...] = BACKOFF,
    sleep: Sleep = time.sleep,
) -> tuple[int, int]:
    """Handle the corporation's stored events not handled yet (oldest first): (handled, left).
    An event WeCom cannot be asked about now stays unhandled, for the next sync."""
    handled = left = 0
    after = 0
    while batch := one_unit(store, partial(corp_unhandled_events, corp_id=corp_id, after=after)):
        for event_id in batch:
            pace()
            try:
                with_backoff(
                    partial(handle_event, store, look_up, event_id),
                    backoff,
                    sleep,
                )
            except _MEMBER_FAILURES as error:
                log.warning(
                    "WeCom event %s of %s left for the next sync: %s", event_id, corp_id, error
                )
                left += 1
            else:
                handled += 1
        after = batch[-1]
    return handled, left


def reconcile(
    store: Store,
    look_up: Lookup,
    corp_id: str,
    *,
    pause: float = PAUSE,
    backoff: tuple[float, ...] = BACKOFF,
    give_up_after: int = GIVE_UP_AFTER,
    sleep: Sleep = time.sleep,
) -> SyncSummary:
    """Make every active link of `corp_id` what the directory says now. First the
    corporation's stored events not handled yet (a rename is only known from its event), then
    each active link's member through `follow_member` (gone: disabled; changed: refreshed),
    `pause` seconds apart. WeCom's "asked too often" is waited out (`backoff`), then the member
    counts as failed; a member WeCom cannot be asked about counts as failed and the sync goes
    on, until `give_up_after` fail in a row: the rest are not asked. Each change is its own unit
    and audited as the callbacks' are; the summary is audited last (`directory.synced`)."""
    pace = _pacer(pause, sleep)
    events, events_left = handle_corp_events(
        store, look_up, corp_id, pace=pace, backoff=backoff, sleep=sleep
    )
    userids = one_unit(
        store,
        lambda db: [link.provider_user_id.split("/", 1)[1] for link in corp_links(db, corp_id)],
    )
    members: list[MemberSync] = []
    in_a_row = 0
    for userid in userids:
        if in_a_row >= give_up_after:
            members.append(MemberSync(userid, FAILED, "not asked: too many failures in a row"))
            continue
        pace()
        try:
            said = with_backoff(
                partial(follow_member, store, look_up, corp_id, userid),
                backoff,
                sleep,
            )
        except _MEMBER_FAILURES as error:
            in_a_row += 1
            log.warning("sync of %s: member %s not checked: %s", corp_id, userid, error)
            members.append(MemberSync(userid, FAILED, str(error)))
            continue
        in_a_row = 0
        members.append(MemberSync(userid, _COUNTED.get(said, UNCHANGED), said))
    summary = SyncSummary.of(corp_id, members, events, events_left)
    one_unit(
        store,
        lambda db: audit.record(
            db.connection(),
            "directory.synced",
            outcome="success" if not summary.failed and not events_left else "failure",
            actor=SYNC_ACTOR,
            corp_id=corp_id,
            checked=summary.checked,
            disabled=summary.disabled,
            refreshed=summary.refreshed,
            unchanged=summary.unchanged,
            failed=summary.failed,
            events=events,
            events_left=events_left,
        ),
    )
    log.info(
        "sync of %s: %s checked, %s disabled, %s refreshed, %s failed; %s events handled",
        corp_id,
        summary.checked,
        summary.disabled,
        summary.refreshed,
        summary.failed,
        events,
    )
    return summary


def reconcile_all(
    store: Store,
    look_up: Lookup,
    corp_id: str | None = None,
    *,
    pause: float = PAUSE,
    backoff: tuple[float, ...] = BACKOFF,
    sleep: Sleep = time.sleep,
) -> list[SyncSummary]:
    """`reconcile` each corporation of `sync_targets(corp_id)` in turn (the whole list is
    checked before any is synced: an unknown or disabled `corp_id` syncs nothing)."""
    targets = one_unit(store, lambda db: sync_targets(db, corp_id))
    return [
        reconcile(store, look_up, target, pause=pause, backoff=backoff, sleep=sleep)
        for target in targets
    ]
