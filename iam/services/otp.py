"""SMS one-time codes: 6 digits, 5 minutes, 5 wrong tries, 60 s between sends, 10 a day.

Codes are stored as keyed digests. A code is "sent" for unknown numbers too (the challenge is
made and counted, only no SMS leaves, and the sender queues rather than waits), so neither the
answer nor its time tells whether an account exists.

A code belongs to the browser that asked for it: only that browser can check it, and every limit
of a number is counted per number and browser. A stranger who types the owner's number reaches
no code of the owner's and spends none of the owner's allowance; only attempts that were really
made count, and a refused one spends nothing.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import OtpChallenge, new_id
from iam.db.store import rowcount
from iam.errors import IamError, RateLimitedError, ValidationError
from iam.secretbox import SecretBox, digest
from iam.services import audit
from iam.services.attempts import Attempt
from iam.services.phones import mask_phone, normalize_phone
from iam.services.sms import SmsMessage, SmsSender, new_message
from iam.services.users import find_user_by_phone

CODE_LIFETIME = timedelta(minutes=5)
MAX_FAILED_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)
DAILY_LIMIT = 10
PURPOSES = ("login", "bind")
NO_LIVE_CODE = "The code is wrong or has expired. Ask for a new one."
_CODE = re.compile(r"^\d{6}$", re.ASCII)
T = TypeVar("T")


class OtpError(IamError):
    """The code is wrong (`tries_left` > 0), or dead: expired, used up, or never sent."""

    def __init__(self, message: str, tries_left: int = 0) -> None:
        super().__init__(message)
        self.tries_left = tries_left


@dataclass(frozen=True)
class CodeSent:
    phone: str
    expires_in: int
    resend_after: int


@dataclass(frozen=True)
class CodeStep:
    """The code a browser is waiting for: where it went (E.164), how many seconds until
    another may be asked for (0: now), and how many wrong tries it still takes."""

    phone: str
    resend_in: int
    tries_left: int


def _resend_in(last_sent: datetime | None, now: datetime) -> int:
    """Seconds until the next code may be sent (0: now), by the 60 s rule of `request_code`."""
    if last_sent is None or now - last_sent >= RESEND_AFTER:
        return 0
    return int((RESEND_AFTER - (now - last_sent)).total_seconds()) + 1


def code_step(db: Session, browser_id: str, purpose: str) -> CodeStep | None:
    """The live code (unexpired, not used up) this browser last asked for `purpose`, or None:
    what the code step of a page shows, so that the phone never travels in a URL."""
    browser_hash = digest(browser_id)
    now = utcnow()
    challenge = db.scalar(
        select(OtpChallenge)
        .where(OtpChallenge.browser_hash == browser_hash, OtpChallenge.purpose == purpose)
        .order_by(OtpChallenge.created_at.desc())
        .limit(1)
    )
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= now
        or challenge.failed_attempts >= MAX_FAILED_ATTEMPTS
    ):
        return None
    last_sent = db.scalar(
        select(func.max(OtpChallenge.created_at)).where(
            OtpChallenge.phone == challenge.phone, OtpChallenge.browser_hash == browser_hash
        )
    )
    return CodeStep(
        challenge.phone,
        _resend_in(last_sent, now),
        MAX_FAILED_ATTEMPTS - challenge.failed_attempts,
    )


def _spend(attempt: Attempt, action: str, key: str | None) -> None:
    """Count the attempt against its limits, if it has any (`RateLimitedError` past a limit; a
    refused attempt spends nothing)."""
    if attempt.limits is not None:
        attempt.limits.check(action, key=key, ip=attempt.ip)


def request_code(
    db: Session,
    box: SecretBox,
    sender: SmsSender,
    raw_phone: str,
    purpose: str,
    *,
    attempt: Attempt,
) -> CodeSent:
    """Make a challenge for the attempt's browser, in the caller's transaction, and send its
    code once that transaction commits; refused within 60 s of this browser's last code for the
    number, past 10 a day, or past the attempt's rate limits."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown OTP purpose {purpose!r}")
    phone = normalize_phone(raw_phone)
    browser_hash = digest(attempt.browser)
    now = utcnow()
    mine = (OtpChallenge.phone == phone, OtpChallenge.browser_hash == browser_hash)
    last_sent = db.scalar(select(func.max(OtpChallenge.created_at)).where(*mine))
    wait = _resend_in(last_sent, now)
    if wait:
        raise RateLimitedError(f"Wait {wait} seconds before asking for another code.", wait)
    sent_today = db.scalar(
        select(func.count())
        .select_from(OtpChallenge)
        .where(*mine, OtpChallenge.created_at > now - timedelta(days=1))
    )
    if (sent_today or 0) >= DAILY_LIMIT:
        raise RateLimitedError(
            "Too many codes for this number today. Try again tomorrow.", 24 * 3600
        )
    _spend(attempt, "otp_send", f"{phone} {browser_hash}")
    code = f"{secrets.randbelow(10**6):06d}"
    challenge_id = new_id()
    db.add(
        OtpChallenge(
            id=challenge_id,
            phone=phone,
            browser_hash=browser_hash,
            purpose=purpose,
            code_hash=box.mac(challenge_id, code),
            created_at=now,
            expires_at=now + CODE_LIFETIME,
        )
    )
    user = find_user_by_phone(db, phone)
    deliver = purpose == "bind" or (user is not None and user.is_active)
    audit.record(
        db.connection(),
        "otp.sent" if deliver else "otp.withheld",
        user_id=user.id if user else None,
        ip=attempt.ip,
        phone=mask_phone(phone),
        purpose=purpose,
    )
    if deliver:
        message = new_message(phone, code, purpose, int(CODE_LIFETIME.total_seconds()))
        _send_when_committed(db, sender, message)
    return CodeSent(phone, int(CODE_LIFETIME.total_seconds()), int(RESEND_AFTER.total_seconds()))


def _send_when_committed(db: Session, sender: SmsSender, message: SmsMessage) -> None:
    """Hand the message to the sender when the caller's transaction commits, so the code can
    be checked once it arrives; a unit that rolls back sends nothing. The sender queues it (the
    gateway's time and failures never show in the use case's answer)."""
    event.listen(db, "after_commit", lambda _db: sender.send(message), once=True)


def record_undelivered(db: Session, message: SmsMessage, reason: str) -> None:
    """The gateway never took a code (all retries failed): the audit trail says so (in the
    caller's transaction)."""
    user = find_user_by_phone(db, message.phone)
    audit.record(
        db.connection(),
        "otp.undelivered",
        outcome="failure",
        user_id=user.id if user else None,
        phone=mask_phone(message.phone),
        purpose=message.purpose,
        reason=reason,
    )


def checked_or_committed(db: Session, check: Callable[[], T]) -> T:
    """Run a check in the caller's unit of work; if it fails with `OtpError`, commit what the
    failure spent (a try, an audit event: a wrong guess must count) and raise it again."""
    try:
        return check()
    except OtpError:
        db.commit()
        raise


def record_refusal(db: Session, event: str, attempt: Attempt, phone: str, **detail: Any) -> None:
    """A refused attempt on a number in the audit trail: who tried from where, the number
    masked, and why (`detail`)."""
    audit.record(
        db.connection(),
        event,
        outcome="failure",
        ip=attempt.ip,
        phone=mask_phone(phone),
        **detail,
    )


def check_code(
    db: Session,
    box: SecretBox,
    raw_phone: str,
    purpose: str,
    code: str,
    *,
    attempt: Attempt,
) -> str:
    """The phone (E.164) whose latest live code for the attempt's browser this is; it is used
    up, in the caller's transaction (nothing is committed here). Else `OtpError`, after
    recording the failure in that transaction (see `checked_or_committed`). A check that
    reaches no live code counts against the address only; one that reaches a code counts
    against the number and browser too."""
    phone = normalize_phone(raw_phone)
    code = unicodedata.normalize("NFKC", code or "").strip()
    if not _CODE.match(code):
        raise ValidationError("code", "Enter the 6-digit code from the SMS.")
    browser_hash = digest(attempt.browser)
    now = utcnow()
    challenge = db.scalar(
        select(OtpChallenge)
        .where(
            OtpChallenge.phone == phone,
            OtpChallenge.browser_hash == browser_hash,
            OtpChallenge.purpose == purpose,
        )
        .order_by(OtpChallenge.created_at.desc())
        .limit(1)
    )
    usable = (
        challenge is not None
        and challenge.consumed_at is None
        and challenge.expires_at > now
        and challenge.failed_attempts < MAX_FAILED_ATTEMPTS
    )
    if not usable or challenge is None:
        _spend(attempt, "otp_verify", None)
        record_refusal(db, "otp.rejected", attempt, phone, reason="no live code")
        raise OtpError(NO_LIVE_CODE)
    _spend(attempt, "otp_verify", f"{phone} {browser_hash}")
    # Take one try before checking, atomically: concurrent guesses cannot exceed the limit.
    taken = db.execute(
        update(OtpChallenge)
        .where(
            OtpChallenge.id == challenge.id,
            OtpChallenge.consumed_at.is_(None),
            OtpChallenge.failed_attempts < MAX_FAILED_ATTEMPTS,
        )
        .values(failed_attempts=OtpChallenge.failed_attempts + 1)
    )
    if rowcount(taken) != 1:  # used up or spent by a concurrent check meanwhile
        raise OtpError(NO_LIVE_CODE)
    if not box.verify_mac(challenge.code_hash, challenge.id, code):
        db.refresh(challenge)
        left = MAX_FAILED_ATTEMPTS - challenge.failed_attempts
        record_refusal(db, "otp.rejected", attempt, phone, reason="wrong code", tries_left=left)
        if left <= 0:
            raise OtpError("Too many wrong codes. Ask for a new one.")
        raise OtpError(f"The code is wrong. {left} tries left.", tries_left=left)
    # The right code gives its try back and is used up. The row is ours since the UPDATE
    # above (locked until the caller commits), so no concurrent request can use it as well.
    db.execute(
        update(OtpChallenge)
        .where(OtpChallenge.id == challenge.id)
        .values(consumed_at=now, failed_attempts=OtpChallenge.failed_attempts - 1)
    )
    return phone
