"""Services work in the caller's unit of work (issue #12): they take its session and never
commit, so a use case whose later step fails keeps nothing of its earlier ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session
from support.units import in_unit

from iam.db.models import Admin, AdminSession, AuditEvent, Base, SigningKey, UpstreamLogin
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import admins, audit, otp, signing_keys, upstream
from iam.services.attempts import Attempt
from iam.services.sms import new_message

PASSWORD = "correct horse battery"


class LaterStepFailed(Exception):
    """What a use case's step after the service raises."""


def _count(store: Store, model: type[Base]) -> int:
    with store() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _then_fail(service: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Session], Any]:
    """A use case: the service, then a step that fails."""

    def use_case(db: Session) -> None:
        service(db, *args, **kwargs)
        raise LaterStepFailed

    return use_case


def test_admin_sign_in_keeps_nothing_when_its_audit_event_fails(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit event of a sign-in fails after the session was made: the unit rolls the
    session back, and the failed-login counter's reset with it."""
    in_unit(store, admins.create_admin, "ops", PASSWORD)
    with store() as db:
        db.execute(Admin.__table__.update().values(failed_logins=2))
        db.commit()
    real_record = audit.record

    def record(connection: Connection, event: str, **fields: Any) -> None:
        if event == "admin.login":
            raise RuntimeError("the audit trail is unreachable")
        real_record(connection, event, **fields)

    monkeypatch.setattr(audit, "record", record)
    with pytest.raises(RuntimeError):
        in_unit(
            store,
            lambda db: admins.refusal_counted(db, lambda: admins.sign_in(db, "ops", PASSWORD)),
        )
    assert _count(store, AdminSession) == 0
    with store() as db:
        assert db.scalar(select(Admin.failed_logins)) == 2


def test_admin_sign_in_commits_nothing_of_its_own(store: Store) -> None:
    """Fails if `sign_in` committed: its session row would outlive the unit."""
    in_unit(store, admins.create_admin, "ops", PASSWORD)
    events = _count(store, AuditEvent)
    with pytest.raises(LaterStepFailed):
        in_unit(store, _then_fail(admins.sign_in, "ops", PASSWORD))
    assert _count(store, AdminSession) == 0
    assert _count(store, AuditEvent) == events


BOX = SecretBox("a-secret-key-for-the-unit-tests-" + "x" * 16)


@pytest.mark.parametrize(
    ("service", "args", "model"),
    [
        (admins.create_admin, ("ops", PASSWORD), Admin),
        (signing_keys.ensure_key, (BOX,), SigningKey),
        (signing_keys.rotate, (BOX,), SigningKey),
        (upstream.start_login, ("browser", "wecom", "corp", None), UpstreamLogin),
        (upstream.record_failure, ("wecom", "corp", "upstream.denied", "no"), AuditEvent),
        (
            otp.record_undelivered,
            (new_message("+8613800138000", "123456", "login", 300), "500"),
            AuditEvent,
        ),
    ],
    ids=lambda value: getattr(value, "__qualname__", None) if callable(value) else None,
)
def test_a_converted_service_commits_nothing(
    store: Store, service: Callable[..., Any], args: tuple[Any, ...], model: type[Base]
) -> None:
    rows, events = _count(store, model), _count(store, AuditEvent)
    with pytest.raises(LaterStepFailed):
        in_unit(store, _then_fail(service, *args))
    assert (_count(store, model), _count(store, AuditEvent)) == (rows, events)


def test_the_code_leaves_only_when_the_unit_commits(store: Store) -> None:
    sent: list[Any] = []

    class Sender:
        def send(self, message: Any) -> None:
            sent.append(message)

    bind = ("+8613800138000", "bind")
    with pytest.raises(LaterStepFailed):
        in_unit(store, _then_fail(otp.request_code, BOX, Sender(), *bind, attempt=Attempt("b")))
    assert sent == []
    in_unit(store, otp.request_code, BOX, Sender(), *bind, attempt=Attempt("b"))
    assert [message.phone for message in sent] == ["+8613800138000"]
