"""iam/services/otp.py: SMS one-time codes, their limits, and what they reveal (nothing)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.clocks import Clock
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import AuditEvent, OtpChallenge, User
from iam.db.store import Store
from iam.errors import RateLimitedError, ValidationError
from iam.secretbox import SecretBox, digest
from iam.services import otp, users
from iam.services.attempts import Attempt
from iam.services.rate_limits import MemoryCounter, RateLimits, parse_rules
from iam.services.sms import ConsoleSms
from iam.services.sms import new_message as sms_message

KNOWN = "+8613800138000"
UNKNOWN = "+8613900139000"

BROWSER = "the-browser-that-asked"
ATTEMPT = Attempt(BROWSER)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock().install(monkeypatch, otp)


@pytest.fixture
def known_user(store: Store) -> User:
    return in_unit(store, users.create_user, "Zhang San", "13800138000")


def _request(
    store: Store,
    box: SecretBox,
    sms: Any,
    phone: str = KNOWN,
    purpose: str = "login",
    *,
    attempt: Attempt = ATTEMPT,
) -> otp.CodeSent:
    return in_unit(store, otp.request_code, box, sms, phone, purpose, attempt=attempt)


def verify_code(store: Store, box: SecretBox, *args: Any, **kwargs: Any) -> str:
    """`otp.check_code` as the sign-in and binding use cases run it: in a unit of work whose
    failure still commits what the check spent (`otp.checked_or_committed`)."""

    def check(db: Session) -> str:
        return otp.checked_or_committed(db, lambda: otp.check_code(db, box, *args, **kwargs))

    return in_unit(store, check)


def _last_code(sms: ConsoleSms) -> str:
    return sms.messages()[0].code


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def _challenges(store: Store, phone: str) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(
            select(OtpChallenge)
            .where(OtpChallenge.phone == phone)
            .order_by(OtpChallenge.created_at)
        ).all()
        return [
            {column.key: getattr(row, column.key) for column in OtpChallenge.__table__.columns}
            for row in rows
        ]


def _add_past_challenges(store: Store, phone: str, ages: list[timedelta]) -> None:
    now = utcnow()
    with store() as db:
        for age in ages:
            db.add(
                OtpChallenge(
                    phone=phone,
                    browser_hash=digest(BROWSER),
                    purpose="login",
                    code_hash="0" * 64,
                    created_at=now - age,
                    expires_at=now - age + otp.CODE_LIFETIME,
                )
            )
        db.commit()


def _audit(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(row.event, row.outcome, dict(row.detail)) for row in rows]


# --- sending ----------------------------------------------------------------------------


def test_code_is_sent_to_a_known_phone(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    sent = _request(store, box, sms, "138 0013 8000")
    assert sent == otp.CodeSent(phone=KNOWN, expires_in=300, resend_after=60)
    [message] = sms.messages()
    assert message.phone == KNOWN
    assert message.purpose == "login"
    assert message.expires_in == 300
    assert len(message.code) == 6 and message.code.isdigit()


def test_unknown_phone_gets_no_sms_but_the_same_answer(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    for_known = _request(store, box, sms, KNOWN)
    sms_count = len(sms.messages())
    for_unknown = _request(store, box, sms, UNKNOWN)
    assert len(sms.messages()) == sms_count
    assert type(for_unknown) is type(for_known)
    assert dataclasses.replace(for_unknown, phone=KNOWN) == for_known
    assert for_unknown.phone == UNKNOWN


def test_unknown_phone_challenge_is_counted(store: Store, box: SecretBox, sms: ConsoleSms) -> None:
    _request(store, box, sms, UNKNOWN)
    assert len(_challenges(store, UNKNOWN)) == 1
    with pytest.raises(RateLimitedError):
        _request(store, box, sms, UNKNOWN)


def test_disabled_user_gets_no_sms(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    with store() as db:
        row = db.get(User, known_user.id)
        assert row is not None
        row.status = "disabled"
        db.commit()
    _request(store, box, sms, KNOWN)
    assert sms.messages() == []


def test_bind_code_is_sent_to_a_phone_without_account(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    _request(store, box, sms, UNKNOWN, purpose="bind")
    [message] = sms.messages()
    assert (message.phone, message.purpose) == (UNKNOWN, "bind")


def test_unknown_purpose_is_refused(store: Store, box: SecretBox, sms: ConsoleSms) -> None:
    with pytest.raises(ValueError, match="purpose"):
        _request(store, box, sms, KNOWN, purpose="reset")


def test_bad_phone_is_refused(store: Store, box: SecretBox, sms: ConsoleSms) -> None:
    with pytest.raises(ValidationError) as caught:
        _request(store, box, sms, "12345")
    assert caught.value.field == "phone"


def test_audit_tells_sent_from_withheld_without_the_full_number(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms, KNOWN)
    _request(store, box, sms, UNKNOWN)
    events = [
        (event, detail.get("phone"))
        for event, _, detail in _audit(store)
        if event.startswith("otp.")
    ]
    assert events == [("otp.sent", "+86138****8000"), ("otp.withheld", "+86139****9000")]
    assert KNOWN not in str(_audit(store)) and UNKNOWN not in str(_audit(store))


# --- storage ----------------------------------------------------------------------------


def test_code_is_stored_only_as_a_keyed_digest(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    code = _last_code(sms)
    [row] = _challenges(store, KNOWN)
    assert row["code_hash"] == box.mac(row["id"], code)
    assert row["code_hash"] != digest(code)
    text_values = [value for value in row.values() if isinstance(value, str)]
    assert not any(code in value for value in text_values)


# --- verifying --------------------------------------------------------------------------


def test_right_code_verifies_once(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    code = _last_code(sms)
    assert verify_code(store, box, "13800138000", "login", code, attempt=ATTEMPT) == KNOWN
    assert _challenges(store, KNOWN)[0]["consumed_at"] is not None
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "login", code, attempt=ATTEMPT)


def test_code_for_one_purpose_does_not_serve_another(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms, purpose="login")
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "bind", _last_code(sms), attempt=ATTEMPT)


def test_code_for_another_phone_fails(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    with pytest.raises(otp.OtpError):
        verify_code(store, box, UNKNOWN, "login", _last_code(sms), attempt=ATTEMPT)


def test_no_code_requested_fails(store: Store, box: SecretBox) -> None:
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "login", "123456", attempt=ATTEMPT)


def test_wrong_code_counts_down(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    wrong = _wrong(_last_code(sms))
    tries_left = []
    for _ in range(4):
        with pytest.raises(otp.OtpError) as caught:
            verify_code(store, box, KNOWN, "login", wrong, attempt=ATTEMPT)
        tries_left.append(caught.value.tries_left)
    assert tries_left == [4, 3, 2, 1]
    assert _challenges(store, KNOWN)[0]["failed_attempts"] == 4


def test_after_five_wrong_tries_even_the_right_code_fails(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    code = _last_code(sms)
    for _ in range(otp.MAX_FAILED_ATTEMPTS):
        with pytest.raises(otp.OtpError):
            verify_code(store, box, KNOWN, "login", _wrong(code), attempt=ATTEMPT)
    with pytest.raises(otp.OtpError) as caught:
        verify_code(store, box, KNOWN, "login", code, attempt=ATTEMPT)
    assert caught.value.tries_left == 0
    assert _challenges(store, KNOWN)[0]["consumed_at"] is None


def test_four_wrong_tries_still_allow_the_right_code(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    code = _last_code(sms)
    for _ in range(otp.MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(otp.OtpError):
            verify_code(store, box, KNOWN, "login", _wrong(code), attempt=ATTEMPT)
    assert verify_code(store, box, KNOWN, "login", code, attempt=ATTEMPT) == KNOWN


def test_expired_code_fails(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    clock.advance(minutes=5, seconds=1)
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "login", _last_code(sms), attempt=ATTEMPT)


def test_code_just_before_expiry_works(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    clock.advance(minutes=4, seconds=59)
    assert verify_code(store, box, KNOWN, "login", _last_code(sms), attempt=ATTEMPT) == KNOWN


def test_only_the_newest_code_counts(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    first = _last_code(sms)
    clock.advance(seconds=61)
    _request(store, box, sms)
    second = _last_code(sms)
    if first == second:
        pytest.skip("both random codes happened to be equal")
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "login", first, attempt=ATTEMPT)
    assert verify_code(store, box, KNOWN, "login", second, attempt=ATTEMPT) == KNOWN


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 345", "12345x"])
def test_malformed_code_is_refused(store: Store, box: SecretBox, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        verify_code(store, box, KNOWN, "login", code, attempt=ATTEMPT)
    assert caught.value.field == "code"


def test_malformed_code_does_not_use_up_a_try(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    with pytest.raises(ValidationError):
        verify_code(store, box, KNOWN, "login", "abc", attempt=ATTEMPT)
    assert _challenges(store, KNOWN)[0]["failed_attempts"] == 0


def test_full_width_digits_are_the_same_code(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    full_width = _last_code(sms).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert verify_code(store, box, KNOWN, "login", full_width, attempt=ATTEMPT) == KNOWN
    assert _challenges(store, KNOWN)[0]["failed_attempts"] == 0


# --- rate limits ------------------------------------------------------------------------


def test_resend_within_sixty_seconds_is_refused(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    clock.advance(seconds=20)
    with pytest.raises(RateLimitedError) as caught:
        _request(store, box, sms)
    assert 39 <= caught.value.retry_after <= 41
    assert len(sms.messages()) == 1
    assert len(_challenges(store, KNOWN)) == 1


def test_resend_after_sixty_seconds_is_allowed(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    clock.advance(seconds=61)
    _request(store, box, sms)
    assert len(sms.messages()) == 2


def test_resend_limit_is_per_phone(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms, KNOWN)
    _request(store, box, sms, UNKNOWN, purpose="bind")
    assert len(sms.messages()) == 2


def test_eleventh_code_within_a_day_is_refused(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _add_past_challenges(store, KNOWN, [timedelta(hours=2 * hours + 1) for hours in range(10)])
    with pytest.raises(RateLimitedError) as caught:
        _request(store, box, sms)
    assert caught.value.retry_after > 3600
    assert sms.messages() == []


def test_tenth_code_within_a_day_is_allowed(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _add_past_challenges(store, KNOWN, [timedelta(hours=2 * hours + 1) for hours in range(9)])
    _request(store, box, sms)
    assert len(sms.messages()) == 1


def test_codes_older_than_a_day_do_not_count(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _add_past_challenges(store, KNOWN, [timedelta(hours=25 + hours) for hours in range(10)])
    _request(store, box, sms)
    assert len(sms.messages()) == 1


def test_daily_limit_applies_to_unknown_phones_too(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    _add_past_challenges(store, UNKNOWN, [timedelta(hours=hours + 1) for hours in range(10)])
    with pytest.raises(RateLimitedError):
        _request(store, box, sms, UNKNOWN)


# --- a failing SMS gateway --------------------------------------------------------------


def test_the_challenge_is_committed_before_the_message_is_handed_over(
    store: Store, box: SecretBox, known_user: User
) -> None:
    """The code must be checkable when the SMS arrives: it is handed over after the commit."""
    seen: list[int] = []

    class Counting:
        def send(self, message: Any) -> None:
            seen.append(len(_challenges(store, KNOWN)))

    _request(store, box, Counting())
    assert seen == [1]


def test_an_undelivered_code_is_audited(store: Store, box: SecretBox, known_user: User) -> None:
    message = sms_message(KNOWN, "123456", "login", 300)
    in_unit(store, otp.record_undelivered, message, "the gateway answered 500")
    event, outcome, detail = _audit(store)[-1]
    assert (event, outcome) == ("otp.undelivered", "failure")
    assert detail["reason"] == "the gateway answered 500"
    assert detail["phone"] != KNOWN and KNOWN not in str(detail)


# --- a code belongs to the browser that asked for it --------------------------------------

STRANGER = "a-strangers-browser"


def _limits(text: str = "") -> RateLimits:
    return RateLimits(MemoryCounter(), parse_rules(text))


def test_a_code_cannot_be_checked_from_another_browser(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms)
    code = _last_code(sms)
    for guess in (code, _wrong(code), _wrong(_wrong(code))):
        with pytest.raises(otp.OtpError) as refused:
            verify_code(store, box, KNOWN, "login", guess, attempt=Attempt(STRANGER))
        assert refused.value.tries_left == 0
    assert _challenges(store, KNOWN)[0]["failed_attempts"] == 0
    assert verify_code(store, box, KNOWN, "login", code, attempt=ATTEMPT) == KNOWN


def test_a_strangers_wrong_guesses_leave_the_owners_code_alive(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock, rate_clock
) -> None:
    """The review's repro: a stranger asks for codes and guesses; the owner still gets in."""
    limits = _limits()
    owner, stranger = Attempt(BROWSER, limits=limits), Attempt(STRANGER, limits=limits)
    _request(store, box, sms)
    owners = _last_code(sms)
    _request(store, box, sms, attempt=stranger)
    for _ in range(5):
        with pytest.raises(RateLimitedError):
            _request(store, box, sms, attempt=stranger)
        clock.advance(seconds=1)
    for _ in range(11):
        with pytest.raises((otp.OtpError, RateLimitedError)):
            verify_code(store, box, KNOWN, "login", _wrong(owners), attempt=stranger)
    assert verify_code(store, box, KNOWN, "login", owners, attempt=owner) == KNOWN


def test_the_resend_wait_and_daily_cap_are_per_browser(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    """A stranger who burns the number's codes for the day does not lock the owner out."""
    now = utcnow()
    with store() as db:
        for hours in range(otp.DAILY_LIMIT):
            db.add(
                OtpChallenge(
                    phone=KNOWN,
                    browser_hash=digest(STRANGER),
                    purpose="login",
                    code_hash="0" * 64,
                    created_at=now - timedelta(minutes=hours),
                    expires_at=now + otp.CODE_LIFETIME,
                )
            )
        db.commit()
    with pytest.raises(RateLimitedError):
        _request(store, box, sms, attempt=Attempt(STRANGER))
    _request(store, box, sms)
    assert verify_code(store, box, KNOWN, "login", _last_code(sms), attempt=ATTEMPT) == KNOWN


def test_a_refused_send_spends_none_of_the_budget(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock, rate_clock
) -> None:
    """Sends refused by the 60 s rule do not count towards the 5 per 10 minutes."""
    counted = Attempt(BROWSER, limits=_limits("otp_send.key=2/600"))
    for _ in range(2):
        _request(store, box, sms, attempt=counted)
        for _ in range(5):
            with pytest.raises(RateLimitedError) as refused:
                _request(store, box, sms, attempt=counted)
            assert refused.value.retry_after <= 61  # the 60 s rule, not the budget
        clock.advance(seconds=61)
    with pytest.raises(RateLimitedError) as refused:
        _request(store, box, sms, attempt=counted)
    assert refused.value.retry_after > 61
    assert len(sms.messages()) == 2


def test_checks_without_a_live_code_spend_only_the_address_budget(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, rate_clock
) -> None:
    limits = _limits("otp_verify.key=1/600,otp_verify.ip=5/600")
    first_address = Attempt(BROWSER, ip="10.0.0.1", limits=limits)
    for _ in range(3):  # no code yet: counted against the address, not the number
        with pytest.raises(otp.OtpError):
            verify_code(store, box, KNOWN, "login", "123456", attempt=first_address)
    _request(store, box, sms)
    code = _last_code(sms)
    other_address = Attempt(BROWSER, ip="10.0.0.2", limits=limits)
    assert verify_code(store, box, KNOWN, "login", code, attempt=other_address) == KNOWN


# --- the code step a page shows -----------------------------------------------------------


def _step(store: Store, purpose: str = "login", browser: str = BROWSER) -> otp.CodeStep | None:
    with store() as db:
        return otp.code_step(db, browser, purpose)


def test_no_code_asked_for_is_no_code_step(store: Store) -> None:
    assert _step(store) is None


def test_the_code_step_names_the_number_the_wait_and_the_tries(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms, "138 0013 8000")
    assert _step(store) == otp.CodeStep(phone=KNOWN, resend_in=61, tries_left=5)
    clock.advance(seconds=45)
    with pytest.raises(otp.OtpError):
        verify_code(store, box, KNOWN, "login", _wrong(_last_code(sms)), attempt=ATTEMPT)
    assert _step(store) == otp.CodeStep(phone=KNOWN, resend_in=16, tries_left=4)
    clock.advance(seconds=20)
    assert _step(store) == otp.CodeStep(phone=KNOWN, resend_in=0, tries_left=4)


def test_the_code_step_is_per_purpose_and_per_browser(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User
) -> None:
    _request(store, box, sms, purpose="bind")
    assert _step(store, "login") is None
    assert _step(store, "bind", browser="another-browser") is None
    step = _step(store, "bind")
    assert step is not None and step.phone == KNOWN


def test_a_used_expired_or_spent_code_is_no_code_step(
    store: Store, box: SecretBox, sms: ConsoleSms, known_user: User, clock: Clock
) -> None:
    _request(store, box, sms)
    verify_code(store, box, KNOWN, "login", _last_code(sms), attempt=ATTEMPT)
    assert _step(store) is None  # used
    clock.advance(seconds=61)
    _request(store, box, sms)
    clock.advance(minutes=5, seconds=1)
    assert _step(store) is None  # expired
    _request(store, box, sms)
    for _ in range(otp.MAX_FAILED_ATTEMPTS):
        with pytest.raises(otp.OtpError):
            verify_code(store, box, KNOWN, "login", _wrong(_last_code(sms)), attempt=ATTEMPT)
    assert _step(store) is None  # spent
