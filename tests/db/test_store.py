"""iam/db/store.py: a pooled PostgreSQL connection is tested only after it sat idle, and one
the server dropped meanwhile is replaced before a request sees it; a SQLite file is private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from iam.db import store as store_module
from iam.db.store import create_db_engine


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


@pytest.mark.postgres
def test_a_connection_in_steady_use_is_not_pinged(engine: Engine, pings: list[int]) -> None:
    first = backend_pid(engine)
    for _ in range(5):
        assert backend_pid(engine) == first  # the same pooled connection, used again at once
    assert pings == []


@pytest.mark.postgres
def test_a_connection_idle_too_long_is_pinged_once_per_checkout(
    engine: Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_pid(engine)
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    backend_pid(engine)
    assert pings == [1]


@pytest.mark.postgres
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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It holds sessions, token digests and the audit trail; a umask of 022 must not matter."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "var" / "iam.db"
        engine = create_db_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        files = [path, *path.parent.glob("iam.db-*")]
        assert {_mode(file) for file in files} == {0o600}, [(f.name, oct(_mode(f))) for f in files]
        engine.dispose()
    finally:
        os.umask(previous)


def test_an_existing_sqlite_database_readable_by_others_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "iam.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    create_db_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o600
