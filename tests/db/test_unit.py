"""iam/db/unit.py: a protocol request's unit of work is one transaction, whether its hooks
write with plain statements on the connection, through an ORM session opened later on it, or
both."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from iam.db.models import AuditEvent, Client
from iam.db.store import Store
from iam.db.unit import (
    UnitOfWork,
    bind,
    current_connection,
    current_session,
    rollback_current,
    unbind,
)


def audit_rows(store: Store) -> int:
    with store() as db:
        return int(db.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def plain_insert(unit: UnitOfWork, event: str) -> None:
    unit.connection.execute(insert(AuditEvent.__table__), {"event": event, "detail": {}})


def test_plain_statements_are_committed_without_a_session(store: Store) -> None:
    with store.engine.connect() as connection:
        unit = UnitOfWork(connection)
        plain_insert(unit, "a")
        unit.commit()
        unit.close()
    assert audit_rows(store) == 1


def test_a_session_opened_later_joins_the_same_transaction(store: Store) -> None:
    with store.engine.connect() as connection:
        unit = UnitOfWork(connection)
        plain_insert(unit, "a")
        # the session sees the plain insert: same connection, same transaction
        assert unit.session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        unit.session.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        unit.commit()
        unit.close()
    assert audit_rows(store) == 1
    with store() as db:
        assert db.get(Client, "c1") is not None


def test_a_rollback_undoes_both_kinds_of_writes_and_work_goes_on(store: Store) -> None:
    with store.engine.connect() as connection:
        unit = UnitOfWork(connection)
        plain_insert(unit, "undone")
        unit.session.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        unit.session.flush()
        unit.rollback()
        plain_insert(unit, "kept")  # e.g. the audit row of the failure
        unit.commit()
        unit.close()
    with store() as db:
        assert list(db.scalars(select(AuditEvent.event))) == ["kept"]
        assert db.get(Client, "c1") is None


def test_nothing_is_kept_when_the_work_is_not_committed(store: Store) -> None:
    with store.engine.connect() as connection:
        unit = UnitOfWork(connection)
        plain_insert(unit, "a")
        unit.session.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        unit.close()
    assert audit_rows(store) == 0


def test_the_accessors_give_the_bound_unit_and_only_while_it_is_bound(store: Store) -> None:
    with store.engine.connect() as connection:
        unit = UnitOfWork(connection)
        token = bind(unit)
        try:
            assert current_connection() is connection
            assert current_session() is unit.session
            plain_insert(unit, "undone")
            rollback_current()
            plain_insert(unit, "kept")
            unit.commit()
        finally:
            unbind(token)
            unit.close()
    with pytest.raises(LookupError):
        current_connection()
    with store() as db:
        assert list(db.scalars(select(AuditEvent.event))) == ["kept"]
