"""Core login: a phone number proven by an SMS code opens a new SSO session."""

from __future__ import annotations

from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import audit, otp, sessions
from iam.services.phones import mask_phone
from iam.services.users import find_user_by_phone, mark_phone_verified


def sign_in_with_phone(
    store: Store,
    box: SecretBox,
    raw_phone: str,
    code: str,
    *,
    previous_cookie: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> sessions.NewSession:
    """Verify the code, then give the browser a new session cookie (no session fixation): the
    same person's session is renewed, another person's is ended. Failures raise `OtpError`."""
    phone = otp.verify_code(store, box, raw_phone, "login", code, ip=ip)
    previous = sessions.find(store, previous_cookie)
    with store() as db:
        user = find_user_by_phone(db, phone)
        if user is None or not user.is_active:
            # Codes are never sent to such numbers, so this is a forged or stale request.
            audit.record(db, "login.failed", outcome="failure", ip=ip, phone=mask_phone(phone))
            db.commit()
            raise otp.OtpError(otp.NO_LIVE_CODE)
        mark_phone_verified(db, user)
        same_person = previous is not None and previous.user.id == user.id
        if previous is not None and same_person:
            new = sessions.renew(db, previous.session, ["sms"], ip=ip)
        else:
            new = sessions.start(db, user, ["sms"], ip=ip, user_agent=user_agent)
        audit.record(
            db, "login.succeeded", user_id=user.id, ip=ip, method="sms", sid=new.session.id
        )
        db.commit()
    if previous is not None and not same_person:
        sessions.end(store, previous.session.id, ip=ip, reason="another person signed in")
    return new
