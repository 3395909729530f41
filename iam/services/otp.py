"""SMS one-time codes: 6 digits, 5 minutes, 5 wrong tries, 60 s between sends, 10 a day.

Codes are stored as keyed digests. A code is "sent" for unknown numbers too (the challenge is
made and counted, only no SMS leaves), so the answer never tells whether an account exists.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from iam.clock import utcnow
from iam.db.models import OtpChallenge, new_id
from iam.db.store import Store
from iam.errors import IamError, RateLimitedError, ValidationError
from iam.secretbox import SecretBox
from iam.services import audit
from iam.services.phones import mask_phone, normalize_phone
from iam.services.sms import SmsSender, new_message
from iam.services.users import find_user_by_phone

CODE_LIFETIME = timedelta(minutes=5)
MAX_FAILED_ATTEMPTS = 5
RESEND_AFTER = timedelta(seconds=60)
DAILY_LIMIT = 10
PURPOSES = ("login", "bind")
NO_LIVE_CODE = "The code is wrong or has expired. Ask for a new one."
_CODE = re.compile(r"^\d{6}$", re.ASCII)


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


def request_code(
    store: Store,
    box: SecretBox,
    sender: SmsSender,
    raw_phone: str,
    purpose: str,
    *,
    ip: str | None = None,
) -> CodeSent:
    """Make a challenge and send its code; refused within 60 s of the last or past 10 a day."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown OTP purpose {purpose!r}")
    phone = normalize_phone(raw_phone)
    now = utcnow()
    with store() as session:
        last_sent = session.scalar(
            select(func.max(OtpChallenge.created_at)).where(OtpChallenge.phone == phone)
        )
        if last_sent is not None and now - last_sent < RESEND_AFTER:
            wait = int((RESEND_AFTER - (now - last_sent)).total_seconds()) + 1
            raise RateLimitedError(f"Wait {wait} seconds before asking for another code.", wait)
        sent_today = session.scalar(
            select(func.count())
            .select_from(OtpChallenge)
            .where(OtpChallenge.phone == phone, OtpChallenge.created_at > now - timedelta(days=1))
        )
        if (sent_today or 0) >= DAILY_LIMIT:
            raise RateLimitedError(
                "Too many codes for this number today. Try again tomorrow.", 24 * 3600
            )
        code = f"{secrets.randbelow(10**6):06d}"
        challenge_id = new_id()
        session.add(
            OtpChallenge(
                id=challenge_id,
                phone=phone,
                purpose=purpose,
                code_hash=box.mac(challenge_id, code),
                created_at=now,
                expires_at=now + CODE_LIFETIME,
            )
        )
        user = find_user_by_phone(session, phone)
        deliver = purpose == "bind" or (user is not None and user.is_active)
        audit.record(
            session,
            "otp.sent" if deliver else "otp.withheld",
            user_id=user.id if user else None,
            ip=ip,
            phone=mask_phone(phone),
            purpose=purpose,
        )
        if deliver:
            # Sent before the commit: a failed send leaves no challenge behind to wait out.
            sender.send(new_message(phone, code, purpose, int(CODE_LIFETIME.total_seconds())))
        session.commit()
    return CodeSent(phone, int(CODE_LIFETIME.total_seconds()), int(RESEND_AFTER.total_seconds()))


def verify_code(
    store: Store,
    box: SecretBox,
    raw_phone: str,
    purpose: str,
    code: str,
    *,
    ip: str | None = None,
) -> str:
    """The phone (E.164) whose latest live code this is; it is used up. Else `OtpError`."""
    phone = normalize_phone(raw_phone)
    code = unicodedata.normalize("NFKC", code or "").strip()
    if not _CODE.match(code):
        raise ValidationError("code", "Enter the 6-digit code from the SMS.")
    now = utcnow()
    with store() as session:
        challenge = session.scalar(
            select(OtpChallenge)
            .where(OtpChallenge.phone == phone, OtpChallenge.purpose == purpose)
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
            audit.record(
                session,
                "otp.rejected",
                outcome="failure",
                ip=ip,
                phone=mask_phone(phone),
                reason="no live code",
            )
            session.commit()
            raise OtpError(NO_LIVE_CODE)
        # Take one try before checking, atomically: concurrent guesses cannot exceed the limit.
        taken = session.execute(
            update(OtpChallenge)
            .where(
                OtpChallenge.id == challenge.id,
                OtpChallenge.consumed_at.is_(None),
                OtpChallenge.failed_attempts < MAX_FAILED_ATTEMPTS,
            )
            .values(failed_attempts=OtpChallenge.failed_attempts + 1)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise OtpError(NO_LIVE_CODE)
        if not box.verify_mac(challenge.code_hash, challenge.id, code):
            session.refresh(challenge)
            left = MAX_FAILED_ATTEMPTS - challenge.failed_attempts
            audit.record(
                session,
                "otp.rejected",
                outcome="failure",
                ip=ip,
                phone=mask_phone(phone),
                reason="wrong code",
                tries_left=left,
            )
            session.commit()
            if left <= 0:
                raise OtpError("Too many wrong codes. Ask for a new one.")
            raise OtpError(f"The code is wrong. {left} tries left.", tries_left=left)
        # The right code gives its try back and is used up. The row is ours since the UPDATE
        # above (locked until commit), so no concurrent request can use it as well.
        session.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == challenge.id)
            .values(consumed_at=now, failed_attempts=OtpChallenge.failed_attempts - 1)
        )
        session.commit()
    return phone
