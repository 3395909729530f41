"""The database servers of the tests. Database tests run on SQLite and on PostgreSQL (`store`
is parametrized); PostgreSQL tests skip with the reason when the server is unreachable, and
must run on CI. Redis suites each flush a database of their own on the test server; under
pytest-xdist (`make test` runs two workers) each worker has its own PostgreSQL databases (made
per run) and its own range of Redis database numbers."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from iam.db import migrate
from iam.db.base import Base
from iam.db.store import Store, create_db_engine

POSTGRES_URL = os.environ.get(
    "IAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_REDIS_BASE_URL = os.environ.get("IAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Suites name Redis databases 10-15; worker gwN of pytest-xdist shifts them down by 6*N, so two
# workers (10-15 and 4-9) never flush each other's.
_WORKER_SHIFT = 6 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
if _WORKER_SHIFT > 6:
    raise RuntimeError("the Redis test databases cover two pytest-xdist workers at most")


def _shifted(url: str) -> str:
    parts = urlsplit(url)
    database = int(parts.path.lstrip("/") or 0)
    return parts._replace(path=f"/{database - _WORKER_SHIFT}").geturl()


REDIS_URL = _shifted(_REDIS_BASE_URL)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_unreachable_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means: skip, saying why
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} unreachable: {error}"
    return None


def redis_url(database: int | None = None) -> str:
    """The test Redis server's URL, on `database` (default: the one IAM_TEST_REDIS_URL names)."""
    if database is None:
        return REDIS_URL
    return _shifted(urlsplit(_REDIS_BASE_URL)._replace(path=f"/{database}").geturl())


@contextmanager
def flushed_redis(database: int | None = None) -> Iterator[redis.Redis]:
    """A Redis database of the test server, flushed before and after; each suite names its own,
    so suites never flush each other's. Without a server the test is skipped, but fails on CI."""
    url = redis_url(database)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        parts = urlsplit(url)  # printed without a password
        message = f"Redis not reachable at {parts.hostname}:{parts.port}{parts.path}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the Redis tests)")
        pytest.skip(message)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The admin URL of a reachable PostgreSQL server; on CI it must be there."""
    reason = postgres_unreachable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def fresh_postgres_database(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of empty PostgreSQL databases, all dropped at the end of the run."""
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make() -> str:
        name = f"iam_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(postgres_server_url).set(database=name).render_as_string(False)

    yield make
    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_engine(fresh_postgres_database: Callable[[], str]) -> Iterator[Engine]:
    """One migrated PostgreSQL database for the run; tests empty it between them."""
    engine = create_db_engine(fresh_postgres_database())
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "iam.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def _empty_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        # The audit trail refuses TRUNCATE; tests reset it as the superuser, triggers off.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a migrated, empty database: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "iam.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        engine = request.getfixturevalue("postgres_engine")
        _empty_postgres(engine)
        yield engine.url.render_as_string(False)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = create_db_engine(database_url)
    yield Store(engine)
    engine.dispose()
