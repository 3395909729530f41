"""Signing in: a phone number proven by an SMS code, or an outside login, opens a session."""

from __future__ import annotations

from sqlalchemy.orm import Session

from iam.db.models import User
from iam.db.store import Store
from iam.db.unit import in_one_unit
from iam.federation.connector import Identity
from iam.secretbox import SecretBox
from iam.services import accounts, audit, otp, sessions
from iam.services.attempts import Attempt
from iam.services.users import find_user_by_phone, mark_phone_verified


def sign_in_with_phone(
    store: Store,
    box: SecretBox,
    raw_phone: str,
    code: str,
    *,
    attempt: Attempt,
    previous_cookie: str | None = None,
) -> sessions.NewSession:
    """Check the code of the attempt's browser, then give the browser a new session cookie (no
    session fixation): the same person's session is renewed, another person's is ended.

    One unit of work: the code used up, the phone marked verified, the session opened and the
    previous one ended commit together or not at all. A failed check (`OtpError`) commits only
    what it spent: its try and its audit event."""

    def work(db: Session, first_try: bool) -> sessions.NewSession:
        def person() -> User:
            phone = otp.check_code(
                db, box, raw_phone, "login", code, attempt=attempt.counted_on(first_try)
            )
            user = find_user_by_phone(db, phone)
            if user is None or not user.is_active:
                # Codes are never sent to such numbers, so this is a forged or stale request.
                otp.record_refusal(db, "login.failed", attempt, phone)
                raise otp.OtpError(otp.NO_LIVE_CODE)
            return user

        user = otp.checked_or_committed(db, person)
        mark_phone_verified(db, user)
        return open_session(db, user, ["sms"], attempt=attempt, previous_cookie=previous_cookie)

    return in_one_unit(store, work)


def sign_in_by_binding(
    store: Store,
    box: SecretBox,
    token: str,
    raw_phone: str,
    code: str,
    *,
    attempt: Attempt,
    previous_cookie: str | None = None,
) -> tuple[sessions.NewSession, accounts.Bound] | accounts.PendingIdentity:
    """Finish an on-demand binding: check the code of the attempt's browser, bind the identity
    waiting for it to the person with that phone (made if there is none), and open a session
    whose context is that identity; (the new session, the binding: it says where to go next).
    When that person's name is not the member's, nothing is bound and no session opened: the
    binding, now waiting for the person to confirm, is the answer (`confirm_binding`).

    One unit of work: the code used up, the person and the link made, the binding spent (or
    moved to its next stage) and the session opened commit together or not at all. A wrong
    code commits only what it spent."""

    def work(
        db: Session, first_try: bool
    ) -> tuple[sessions.NewSession, accounts.Bound] | accounts.PendingIdentity:
        bound = accounts.bind_with_code(
            db, box, token, raw_phone, code, attempt=attempt.counted_on(first_try)
        )
        if isinstance(bound, accounts.PendingIdentity):
            return bound
        return _open_bound(db, bound, attempt, previous_cookie), bound

    return in_one_unit(store, work)


def confirm_binding(
    store: Store, token: str, *, attempt: Attempt, previous_cookie: str | None = None
) -> tuple[sessions.NewSession, accounts.Bound]:
    """The person confirmed the linking question: bind the identity to the person it named and
    open a session whose context is that identity (the same person's session is renewed).

    One unit of work: the link made, the binding spent and the session opened commit together
    or not at all."""

    def work(db: Session, _first_try: bool) -> tuple[sessions.NewSession, accounts.Bound]:
        previous = sessions.find_in(db.connection(), previous_cookie)
        bound = accounts.confirm_binding(
            db,
            token,
            attempt=attempt,
            signed_in_user_id=previous.user.id if previous is not None else None,
        )
        return _open_bound(db, bound, attempt, previous_cookie), bound

    return in_one_unit(store, work)


def _open_bound(
    db: Session, bound: accounts.Bound, attempt: Attempt, previous_cookie: str | None
) -> sessions.NewSession:
    return open_session(
        db,
        bound.linked.user,
        [bound.pending.identity.provider],
        attempt=attempt,
        context_link_id=bound.linked.link.id,
        previous_cookie=previous_cookie,
    )


def sign_in_with_identity(
    store: Store,
    identity: Identity,
    flow_id: str | None,
    *,
    attempt: Attempt,
    link_to: str | None = None,
    return_to: str | None = None,
    previous_cookie: str | None = None,
) -> sessions.NewSession | accounts.NeedsBinding:
    """After a provider vouched for someone: sign in through their link (made now for a person
    who asked to link one, or from a trusted mobile), with that identity as the session's
    context; or hold the identity for the attempt's browser, for a binding to finish by SMS
    (`NeedsBinding`, which keeps `return_to` for when it is done).

    One unit of work: the link refreshed or made, the person made, the binding held, the
    session opened and another person's session ended commit together or not at all."""

    def work(db: Session, _first_try: bool) -> sessions.NewSession | accounts.NeedsBinding:
        outcome = accounts.resolve_identity(
            db, identity, flow_id, attempt=attempt, link_to=link_to, return_to=return_to
        )
        if isinstance(outcome, accounts.NeedsBinding):
            return outcome
        return open_session(
            db,
            outcome.user,
            [identity.provider],
            attempt=attempt,
            context_link_id=outcome.link.id,
            previous_cookie=previous_cookie,
        )

    return in_one_unit(store, work)


def open_session(
    db: Session,
    user: User,
    amr: list[str],
    *,
    attempt: Attempt,
    context_link_id: str | None = None,
    previous_cookie: str | None = None,
) -> sessions.NewSession:
    """A new session cookie for a person who just proved who they are (no session fixation),
    in the caller's transaction: the same person's session is renewed with this login's
    context, another person's is ended. The session keeps the attempt's address and user agent
    (a renewed one keeps the user agent it was started with)."""
    ip = attempt.ip
    previous = sessions.find_in(db.connection(), previous_cookie)
    same_person = previous is not None and previous.user.id == user.id
    if previous is not None and same_person:
        new = sessions.renew(db, previous.session, amr, ip=ip, context_link_id=context_link_id)
    else:
        new = sessions.start(
            db, user, amr, ip=ip, user_agent=attempt.user_agent, context_link_id=context_link_id
        )
    audit.record(
        db.connection(),
        "login.succeeded",
        user_id=user.id,
        ip=ip,
        method=amr[0],
        sid=new.session.id,
        context_link_id=context_link_id,
    )
    if previous is not None and not same_person:
        sessions.end(db, previous.session.id, ip=ip, reason="another person signed in")
    return new
