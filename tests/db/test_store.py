"""iam/db/store.py: a pooled PostgreSQL connection is tested only after it sat idle, and one
the server dropped meanwhile is replaced before a request sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from iam.db import store as store_module
from iam.db.store import create_db_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_server_url: str) -> Iterator[Engine]:
    engine = create_db_engine(postgres_server_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the dialect's pings (the one `pool_pre_ping` would make on every checkout)."""
    made: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        made.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return made


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_in_steady_use_is_not_pinged(engine: Engine, pings: list[int]) -> None:
    first = backend_pid(engine)
    for _ in range(5):
        assert backend_pid(engine) == first  # the same pooled connection, used again at once
    assert pings == []


def test_a_connection_idle_too_long_is_pinged_once_per_checkout(
    engine: Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_pid(engine)
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    backend_pid(engine)
    assert pings == [1]


def test_an_idle_connection_the_server_dropped_is_replaced(
    engine: Engine, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = backend_pid(engine)
    admin = create_db_engine(postgres_server_url)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
        connection.commit()
    admin.dispose()
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert backend_pid(engine) != dropped  # no error: the dead connection was swapped
