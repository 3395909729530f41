"""iam/services/login.py: signing in with an SMS code, and finishing an on-demand binding, are
each one unit of work. The code used up, the person and link made, the phone marked verified,
the session opened and another person's session ended commit together; a failure at any step
leaves none of it behind (the same code still works)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from support.units import in_unit, signed_in

from iam.db.models import AuditEvent, IdentityLink, OtpChallenge, PendingBinding, SsoSession, User
from iam.db.store import Store
from iam.federation.connector import Identity
from iam.federation.wecom.connector import subject_of
from iam.secretbox import SecretBox, digest
from iam.services import accounts, audit, otp, sessions, users
from iam.services import login as login_service
from iam.services.attempts import Attempt
from iam.services.sms import ConsoleSms

PHONE = "+8613800138000"
BROWSER = "the-browser-that-asked"
ATTEMPT = Attempt(BROWSER)


class InjectedError(Exception):
    """The failure a test makes one step of the use case raise."""


@pytest.fixture
def person(store: Store) -> User:
    return in_unit(store, users.create_user, "Zhang San", PHONE)


@pytest.fixture
def someone_else(store: Store) -> str:
    """The cookie of another person's live session in the same browser."""
    other = in_unit(store, users.create_user, "Li Si", "+8613900139000")
    with store() as db:
        new = sessions.start(db, other, ["sms"])
        db.commit()
    return new.cookie_value


def _code(store: Store, box: SecretBox, sms: ConsoleSms) -> str:
    in_unit(store, otp.request_code, box, sms, PHONE, "login", attempt=ATTEMPT)
    return sms.messages()[0].code


def _sign_in(store: Store, box: SecretBox, code: str, cookie: str) -> sessions.NewSession:
    return login_service.sign_in_with_phone(
        store, box, PHONE, code, attempt=ATTEMPT, previous_cookie=cookie
    )


def _state(store: Store, user_id: str) -> dict[str, Any]:
    with store() as db:
        challenge = db.scalars(select(OtpChallenge)).one()
        user = db.get(User, user_id)
        assert user is not None
        return {
            "code used": challenge.consumed_at is not None,
            "tries spent": challenge.failed_attempts,
            "phone verified": user.phone_verified_at is not None,
            "sessions": db.scalar(select(func.count()).select_from(SsoSession)),
            "logins": db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event == "login.succeeded")
            ),
        }


def _fail_audit_of(event: str, monkeypatch: pytest.MonkeyPatch) -> None:
    record = audit.record

    def failing(db: Any, name: str, **fields: Any) -> None:
        if name == event:
            raise InjectedError(name)
        record(db, name, **fields)

    monkeypatch.setattr(audit, "record", failing)


def _raise(*args: Any, **kwargs: Any) -> None:
    raise InjectedError


STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "mark the phone verified": lambda mp: mp.setattr(login_service, "mark_phone_verified", _raise),
    "start the session": lambda mp: mp.setattr(sessions, "start", _raise),
    "audit the login": lambda mp: _fail_audit_of("login.succeeded", mp),
    "end the other person's session": lambda mp: mp.setattr(sessions, "end", _raise),
    "audit the ended session": lambda mp: _fail_audit_of("session.ended", mp),
}


def test_a_right_code_signs_in_and_ends_the_other_persons_session(
    store: Store, box: SecretBox, sms: ConsoleSms, person: User, someone_else: str
) -> None:
    new = _sign_in(store, box, _code(store, box, sms), someone_else)
    assert new.session.user_id == person.id
    assert signed_in(store, someone_else) is None
    assert _state(store, person.id) == {
        "code used": True,
        "tries spent": 0,
        "phone verified": True,
        "sessions": 1,
        "logins": 1,
    }


@pytest.mark.parametrize("step", list(STEPS))
def test_a_failure_at_any_step_leaves_nothing_half_made(
    store: Store,
    box: SecretBox,
    sms: ConsoleSms,
    person: User,
    someone_else: str,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    code = _code(store, box, sms)
    with monkeypatch.context() as patched:
        STEPS[step](patched)
        with pytest.raises(InjectedError):
            _sign_in(store, box, code, someone_else)
    assert _state(store, person.id) == {
        "code used": False,
        "tries spent": 0,
        "phone verified": False,
        "sessions": 1,  # the other person's, still live
        "logins": 0,
    }
    assert signed_in(store, someone_else) is not None
    # Nothing was spent: the same code signs in once the failure is gone.
    assert _sign_in(store, box, code, someone_else).session.user_id == person.id


def test_a_wrong_code_commits_only_the_try_it_spent(
    store: Store, box: SecretBox, sms: ConsoleSms, person: User, someone_else: str
) -> None:
    code = _code(store, box, sms)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(otp.OtpError):
        _sign_in(store, box, wrong, someone_else)
    assert _state(store, person.id) == {
        "code used": False,
        "tries spent": 1,
        "phone verified": False,
        "sessions": 1,
        "logins": 0,
    }
    with store() as db:
        rejected = db.scalars(select(AuditEvent).where(AuditEvent.event == "otp.rejected")).one()
    assert rejected.detail["reason"] == "wrong code"


# --- finishing an on-demand binding --------------------------------------------------------

NEW_PHONE = "+8613700137000"  # nobody has it yet: binding makes the person


def _member() -> Identity:
    subject, key = subject_of("wwcorpa", "zhangsan_A")
    return Identity(
        provider="wecom", subject=subject, subject_key=key, display_name="张三", metadata={}
    )


def _bind_state(store: Store, token: str) -> dict[str, Any]:
    with store() as db:
        challenge = db.scalars(select(OtpChallenge)).one()

        def count(model: Any) -> int:
            return db.scalar(select(func.count()).select_from(model)) or 0

        return {
            "code used": challenge.consumed_at is not None,
            "people": count(User),
            "links": count(IdentityLink),
            "binding held": db.get(PendingBinding, digest(token)) is not None,
            "sessions": count(SsoSession),
        }


BINDING_STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "audit the new person": lambda mp: _fail_audit_of("user.created", mp),
    "audit the new link": lambda mp: _fail_audit_of("link.created", mp),
    "start the session": lambda mp: mp.setattr(sessions, "start", _raise),
    "audit the login": lambda mp: _fail_audit_of("login.succeeded", mp),
}


@pytest.mark.parametrize("step", list(BINDING_STEPS))
def test_a_binding_that_fails_at_any_step_leaves_nothing_half_made(
    store: Store, box: SecretBox, sms: ConsoleSms, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    token = in_unit(store, accounts.hold_for_binding, BROWSER, _member(), "flow-1")
    in_unit(store, otp.request_code, box, sms, NEW_PHONE, "bind", attempt=ATTEMPT)
    code = sms.messages()[0].code

    def finish() -> Any:
        return login_service.sign_in_by_binding(store, box, token, NEW_PHONE, code, attempt=ATTEMPT)

    with monkeypatch.context() as patched:
        BINDING_STEPS[step](patched)
        with pytest.raises(InjectedError):
            finish()
    assert _bind_state(store, token) == {
        "code used": False,
        "people": 0,
        "links": 0,
        "binding held": True,
        "sessions": 0,
    }
    new, bound = finish()  # nothing was spent: the same code finishes it
    assert bound.pending.flow_id == "flow-1" and new.session.context_link_id is not None
    assert bound.linked.new_user
    assert _bind_state(store, token) == {
        "code used": True,
        "people": 1,
        "links": 1,
        "binding held": True,  # as the new account's notice
        "sessions": 1,
    }
    assert in_unit(store, accounts.pending_binding, token, BROWSER).stage == accounts.CREATED


CONFIRM_STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "audit the new link": lambda mp: _fail_audit_of("link.created", mp),
    "start the session": lambda mp: mp.setattr(sessions, "start", _raise),
    "audit the login": lambda mp: _fail_audit_of("login.succeeded", mp),
}


@pytest.mark.parametrize("step", list(CONFIRM_STEPS))
def test_a_confirmed_binding_that_fails_at_any_step_leaves_nothing_half_made(
    store: Store,
    box: SecretBox,
    sms: ConsoleSms,
    monkeypatch: pytest.MonkeyPatch,
    person: User,
    step: str,
) -> None:
    """Zhang San's phone, proven for the member 张三 (another name): the code leaves the binding
    waiting for the answer; the answer links, or, failing at any step, leaves the question."""
    token = in_unit(store, accounts.hold_for_binding, BROWSER, _member(), "flow-1")
    in_unit(store, otp.request_code, box, sms, PHONE, "bind", attempt=ATTEMPT)
    code = sms.messages()[0].code
    waiting = login_service.sign_in_by_binding(store, box, token, PHONE, code, attempt=ATTEMPT)
    assert isinstance(waiting, accounts.PendingIdentity) and waiting.stage == accounts.CONFIRM
    assert waiting.user_id == person.id

    def confirm() -> tuple[sessions.NewSession, accounts.Bound]:
        return login_service.confirm_binding(store, token, attempt=ATTEMPT)

    with monkeypatch.context() as patched:
        CONFIRM_STEPS[step](patched)
        with pytest.raises(InjectedError):
            confirm()
    asked = {"code used": True, "people": 1, "links": 0, "binding held": True, "sessions": 0}
    assert _bind_state(store, token) == asked
    assert in_unit(store, accounts.pending_binding, token, BROWSER).stage == accounts.CONFIRM
    new, bound = confirm()
    assert bound.linked.user.id == person.id and new.session.context_link_id == bound.linked.link.id
    done = {"code used": True, "people": 1, "links": 1, "binding held": False, "sessions": 1}
    assert _bind_state(store, token) == done


# --- signing in through an outside identity (the WeCom callback) -----------------------------


def _trusted_member() -> Identity:
    """A member whose corporation is trusted for mobiles: signing in makes the person."""
    subject, key = subject_of("wwcorpa", "zhangsan_A")
    return Identity(
        provider="wecom",
        subject=subject,
        subject_key=key,
        display_name="张三",
        phone=NEW_PHONE,
        phone_trusted=True,
        metadata={},
    )


def _made(store: Store) -> dict[str, int]:
    with store() as db:

        def count(model: Any) -> int:
            return db.scalar(select(func.count()).select_from(model)) or 0

        return {"people": count(User), "links": count(IdentityLink), "sessions": count(SsoSession)}


IDENTITY_STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "audit the new person": lambda mp: _fail_audit_of("user.created", mp),
    "audit the new link": lambda mp: _fail_audit_of("link.created", mp),
    "start the session": lambda mp: mp.setattr(sessions, "start", _raise),
    "audit the login": lambda mp: _fail_audit_of("login.succeeded", mp),
}


@pytest.mark.parametrize("step", list(IDENTITY_STEPS))
def test_an_outside_sign_in_that_fails_at_any_step_leaves_nothing_half_made(
    store: Store, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    def sign_in() -> Any:
        return login_service.sign_in_with_identity(store, _trusted_member(), None, attempt=ATTEMPT)

    with monkeypatch.context() as patched:
        IDENTITY_STEPS[step](patched)
        with pytest.raises(InjectedError):
            sign_in()
    assert _made(store) == {"people": 0, "links": 0, "sessions": 0}
    new = sign_in()
    assert isinstance(new, sessions.NewSession) and new.session.context_link_id is not None
    assert _made(store) == {"people": 1, "links": 1, "sessions": 1}
