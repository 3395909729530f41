"""The protocol endpoints' own statements find their rows through an index, on both databases:
none of them may read a whole table, which grows with every code and token issued (the nonce
check once did, and each authorization got slower as codes piled up)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Delete, Executable, Select, Update, event, text
from support.units import in_unit

from iam.db import fastpath
from iam.db.store import Store
from iam.services import audit

#: Every statement of `iam.db.fastpath` that reads or changes rows found by a condition (the
#: INSERTs find nothing), with parameters.
HOT_STATEMENTS = {
    "client by id": (fastpath.CLIENT_BY_ID, {"client_id": "c"}),
    "live session": (fastpath.LIVE_SESSION, {"sid": "s", "now": datetime(2026, 1, 1)}),
    "live code with nonce": (
        fastpath.LIVE_CODE_WITH_NONCE,
        {"client_id": "c", "nonce": "n", "user_id": "u", "now": datetime(2026, 1, 1)},
    ),
    "code and its user": (fastpath.CODE_AND_USER, {"code_hash": "h"}),
    "consume code": (fastpath.CONSUME_CODE, {"code_id": "i", "now": None}),
    "rotate refresh token": (fastpath.ROTATE_REFRESH_TOKEN, {"token_id": "i", "now": None}),
    "user by id": (fastpath.USER_BY_ID, {"user_id": "u"}),
    "presented access token": (fastpath.PRESENTED_TOKEN, {"jti": "j"}),
    "session and user": (fastpath.SESSION_AND_USER, {"token_hash": "h"}),
    "touch session": (fastpath.TOUCH_SESSION, {"sid": "s", "now": None}),
}


def test_every_statement_that_finds_rows_is_held_here() -> None:
    """A new hot-path SELECT or UPDATE gets a line above (the rule of docs/architecture.md)."""
    held = {id(statement) for statement, _ in HOT_STATEMENTS.values()}
    finders = {
        name
        for name, value in vars(fastpath).items()
        if name.isupper() and isinstance(value, Select | Update | Delete)
    }
    assert {name for name in finders if id(getattr(fastpath, name)) not in held} == set()


def _uses_no_scan(store: Store, plan: str) -> bool:
    if store.engine.dialect.name == "sqlite":
        return not [line for line in plan.splitlines() if line.startswith("SCAN ")]
    return "Seq Scan" not in plan


def _explain(store: Store, sql: str, params: object) -> str:
    """The database's plan for `sql` with `params` in the driver's own parameter style."""
    with store.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
            return "\n".join(str(row[-1]) for row in rows)
        # Tiny tables are cheapest to scan: forbid scans, so only a missing index makes one.
        connection.execute(text("SET enable_seqscan = off"))
        rows = connection.exec_driver_sql("EXPLAIN " + sql, params)
        return "\n".join(str(row[0]) for row in rows)


def _plan(store: Store, statement: Executable, params: dict[str, object]) -> str:
    compiled = statement.compile(store.engine)
    bound = compiled.construct_params(params)
    if compiled.positiontup:  # SQLite's qmark style
        return _explain(store, str(compiled), tuple(bound[name] for name in compiled.positiontup))
    return _explain(store, str(compiled), bound)


@pytest.mark.parametrize("name", HOT_STATEMENTS)
def test_the_statement_uses_an_index(store: Store, name: str) -> None:
    statement, params = HOT_STATEMENTS[name]
    plan = _plan(store, statement, params)
    assert _uses_no_scan(store, plan), plan


def test_the_audit_trail_of_one_app_is_read_from_an_index(store: Store) -> None:
    """The admin console's filter by app, as `audit.search` sends it."""
    sent: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, sql: str, params: object, *_: object) -> None:
        sent.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        in_unit(store, audit.search, client_id="c")
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    ((sql, params),) = [(sql, params) for sql, params in sent if "audit_events" in sql]
    plan = _explain(store, sql, params)
    # the app's events are found through the index, not by filtering the whole trail
    if store.engine.dialect.name == "sqlite":
        assert "USING INDEX ix_audit_events_client_id_id (client_id=?)" in plan, plan
    else:
        assert "Index Cond: ((client_id)" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # pages come in index order
