"""iam/db/prepared.py: the hot path's statements, run on the driver's cursor, read and write
exactly what SQLAlchemy's own execution reads and writes, in the caller's transaction, on both
databases; a driver's error is SQLAlchemy's error."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from iam.db import fastpath, prepared
from iam.db.models import AccessToken, AuditEvent, AuthorizationCode, Client, User
from iam.db.store import Store

WHEN = datetime(2026, 12, 6, 9, 30, 15, 123456)


def _seed(store: Store) -> None:
    with store() as db:
        db.add(User(id="u1", name="张三", email="zs@example.com", phone_verified_at=WHEN))
        db.add(
            Client(
                client_id="crm",
                name="CRM",
                redirect_uris=["https://crm.example/cb"],
                grant_types=["authorization_code", "refresh_token"],
                allowed_origins=["https://crm.example"],
                jwks={"keys": [{"kty": "oct"}]},
                secret_rotated_at=WHEN,
            )
        )
        db.commit()


def _code(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "code_hash": "h" * 64,
        "client_id": "crm",
        "user_id": "u1",
        "redirect_uri": "https://crm.example/cb",
        "scope": "openid",
        "nonce": "n-1",
        "sid": None,
        "auth_time": WHEN,
        "amr": ["sms"],
        "expires_at": WHEN + timedelta(minutes=10),
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(
    ("statement", "values"),
    [
        (fastpath.CLIENT_BY_ID, {"client_id": "crm"}),
        (fastpath.USER_BY_ID, {"user_id": "u1"}),
        (fastpath.CODE_AND_USER, {"code_hash": "h" * 64}),
        (
            fastpath.LIVE_CODE_WITH_NONCE,
            {"client_id": "crm", "nonce": "n-1", "user_id": "u1", "now": WHEN},
        ),
    ],
    ids=["client", "user", "code and user", "nonce (a LIMIT of its own)"],
)
def test_a_row_reads_as_sqlalchemy_reads_it(
    store: Store, statement: object, values: dict[str, object]
) -> None:
    """Every converted type: JSON lists and objects, booleans, datetimes with microseconds."""
    _seed(store)
    with store.engine.begin() as connection:
        connection.execute(insert(AuthorizationCode), _code())
    with store.engine.connect() as connection:
        expected = connection.execute(statement, values).first()  # type: ignore[call-overload]
        got = prepared.first(connection, statement, values)  # type: ignore[arg-type]
    assert expected is not None
    assert got == tuple(expected)
    assert [type(value) for value in got] == [type(value) for value in expected]


def test_a_row_that_is_not_there_is_none(store: Store) -> None:
    with store.engine.connect() as connection:
        assert prepared.first(connection, fastpath.CLIENT_BY_ID, {"client_id": "nobody"}) is None


def test_an_insert_fills_the_python_defaults_the_caller_left_out(store: Store) -> None:
    """id, amr and issued_at come from the model's defaults; what the caller gives wins."""
    _seed(store)
    with store.engine.connect() as connection:
        written = prepared.change(connection, fastpath.INSERT_CODE, _code(amr=["pwd", "sms"]))
        connection.commit()
    assert written == 1
    with store() as db:
        code = db.scalars(select(AuthorizationCode)).one()
    assert len(code.id) == 36 and code.amr == ["pwd", "sms"]
    assert abs(code.issued_at - datetime.now()) < timedelta(minutes=5)  # noqa: DTZ005 (naive UTC)


def test_an_insert_fills_a_plain_default_value(store: Store) -> None:
    """access_tokens.scope defaults to "" (a value, not a function)."""
    _seed(store)
    token = {"jti": "j1", "client_id": "crm", "issued_at": WHEN, "expires_at": WHEN}
    with store.engine.begin() as connection:
        prepared.change(connection, fastpath.INSERT_ACCESS_TOKEN, token)
    with store() as db:
        assert db.scalars(select(AccessToken.scope)).one() == ""


def test_each_insert_gets_its_own_generated_id(store: Store) -> None:
    _seed(store)
    with store.engine.begin() as connection:
        for n in range(2):
            prepared.change(connection, fastpath.INSERT_CODE, _code(code_hash=str(n) * 64))
    with store() as db:
        assert len(set(db.scalars(select(AuthorizationCode.id)))) == 2


def test_an_audit_event_is_written_as_the_orm_writes_it(store: Store) -> None:
    """The autoincrement id is the database's; the JSON detail reads back as an object."""
    event = {"event": "e", "outcome": "success", "user_id": None, "client_id": "crm"}
    with store.engine.begin() as connection:
        prepared.change(connection, fastpath.INSERT_AUDIT_EVENT, {**event, "detail": {"k": "值"}})
        prepared.change(connection, fastpath.INSERT_AUDIT_EVENT, {**event, "detail": {}})
    with store() as db:
        rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [row.detail for row in rows] == [{"k": "值"}, {}]
    assert rows[0].id < rows[1].id and rows[0].actor is None


def test_an_update_counts_the_rows_it_matched(store: Store) -> None:
    _seed(store)
    with store.engine.begin() as connection:
        prepared.change(connection, fastpath.INSERT_CODE, _code(id="c1"))
    with store.engine.begin() as connection:
        consume = {"code_id": "c1", "now": WHEN}
        assert prepared.change(connection, fastpath.CONSUME_CODE, consume) == 1
        assert prepared.change(connection, fastpath.CONSUME_CODE, consume) == 0  # consumed


def test_the_callers_rollback_undoes_it(store: Store) -> None:
    """The statement runs in the connection's transaction, begun for it when none was: nothing
    is written unless the caller commits (a unit whose last step fails writes nothing)."""
    _seed(store)
    with store.engine.connect() as connection:
        assert not connection.in_transaction()
        prepared.change(connection, fastpath.INSERT_CODE, _code())
        assert connection.in_transaction()
        connection.rollback()
    with store.engine.connect() as connection:
        assert connection.execute(select(AuthorizationCode)).first() is None


def test_a_refused_write_is_sqlalchemys_integrity_error(store: Store) -> None:
    """And the connection stays usable once rolled back."""
    _seed(store)
    with store.engine.connect() as connection:
        prepared.change(connection, fastpath.INSERT_CODE, _code(id="c1"))
        with pytest.raises(IntegrityError):
            prepared.change(connection, fastpath.INSERT_CODE, _code(id="c1"))
        connection.rollback()
        assert prepared.first(connection, fastpath.CLIENT_BY_ID, {"client_id": "crm"})


def test_a_missing_parameter_is_a_clear_error(store: Store) -> None:
    with store.engine.connect() as connection, pytest.raises(KeyError, match="client_id"):
        prepared.first(connection, fastpath.CLIENT_BY_ID, {})


def test_an_update_with_onupdate_defaults_is_refused() -> None:
    """users.updated_at changes on every UPDATE through SQLAlchemy: a statement that would skip
    that is refused when compiled, not silently run."""
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    statement = update(User.__table__).values(name="x")
    with engine.connect() as connection, pytest.raises(NotImplementedError, match="onupdate"):
        prepared.change(connection, statement, {})


def test_a_lost_connection_is_invalidated(store: Store) -> None:
    """PostgreSQL: the server ends the connection; the error says so and the pool drops it."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file cannot go away")
    with store.engine.connect() as connection:
        pid = connection.execute(text("select pg_backend_pid()")).scalar()
        connection.rollback()
        with store.engine.connect() as killer:
            killer.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            prepared.first(connection, fastpath.CLIENT_BY_ID, {"client_id": "crm"})
        assert raised.value.connection_invalidated
        assert connection.invalidated
