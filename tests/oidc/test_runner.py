"""Where a protocol unit of work runs (`iam.oidc.runner.Runner`): on the event loop for a
local database (SQLite, one process, no Redis), in a worker thread otherwise and for a request
that may wait on the network; committed whole or not at all either way."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from starlette.testclient import TestClient
from support.constants import ISSUER
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.db import fastpath
from iam.db.models import AuditEvent, User
from iam.db.store import UNIT_THREADS, Store
from iam.db.unit import current_connection, current_session
from iam.metrics import MULTIPROC_DIR_VARIABLE
from iam.oidc import runner as runner_module
from iam.oidc.runner import Runner
from iam.services import audit, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")


def _thread_of_unit(runner: Runner, *, local: bool) -> tuple[int, int]:
    """(the event loop's thread, the thread the unit ran in)."""

    async def main() -> tuple[int, int]:
        ran_in = await runner(threading.get_ident, local=local)
        return threading.get_ident(), ran_in

    return anyio.run(main)


@pytest.fixture
def runner_on(store: Store) -> Iterator[Callable[[bool], Runner]]:
    """Runners on `store` (`local_database` or not), whose loop connection is given back at the
    end, as the app's shutdown gives its runner's."""
    made: list[Runner] = []

    def make(local_database: bool) -> Runner:
        made.append(Runner(store, local_database=local_database))
        return made[-1]

    yield make
    for runner in made:
        runner.close()


@pytest.mark.parametrize(
    ("local_database", "local", "inline"),
    [
        (True, True, True),
        (True, False, False),  # e.g. a client assertion: its keys may be at a jwks_uri
        (False, True, False),
    ],
)
def test_a_unit_runs_on_the_loop_only_for_a_local_request_on_a_local_database(
    runner_on: Callable[[bool], Runner], local_database: bool, local: bool, inline: bool
) -> None:
    loop_thread, unit_thread = _thread_of_unit(runner_on(local_database), local=local)
    assert (unit_thread == loop_thread) is inline


def _audited(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.mark.parametrize("local_database", [True, False])
def test_a_unit_whose_last_step_fails_leaves_nothing_on_the_loop_or_in_a_thread(
    store: Store, runner_on: Callable[[bool], Runner], local_database: bool
) -> None:
    def writes_then_fails() -> None:
        audit.record(current_connection(), "token.issued", client_id="half-made")
        raise RuntimeError("the last step fails")

    async def main() -> None:
        await runner_on(local_database)(writes_then_fails)

    with pytest.raises(RuntimeError):
        anyio.run(main)
    assert _audited(store) == 0

    async def succeeds() -> None:
        def work() -> None:
            audit.record(current_connection(), "token.issued", client_id="whole")

        await runner_on(local_database)(work)

    anyio.run(succeeds)
    assert _audited(store) == 1


def _each_as_a_unit(runner: Runner, *works: Callable[[], object]) -> list[object]:
    """Each of `works` as its own unit, one after the other, as the loop's requests run."""

    async def main() -> list[object]:
        return [await runner(work) for work in works]

    return anyio.run(main)


def _name_of_user(user_id: str) -> str | None:
    user = fastpath.user_by_id(current_connection(), user_id)
    return user.name if user else None


ON_THE_LOOP_AND_ON_UNIT_THREADS = pytest.mark.parametrize(
    "local_database", [True, False], ids=["on the loop", "on a unit thread"]
)


@ON_THE_LOOP_AND_ON_UNIT_THREADS
def test_units_keep_their_connection_and_see_every_commit(
    store: Store, runner_on: Callable[[bool], Runner], local_database: bool
) -> None:
    """No connection is checked out per request (the loop's own, or a unit thread's), and what
    another connection committed meanwhile (the console renaming someone) is read by the next
    unit, not a snapshot of the last one."""
    user = in_unit(store, users.create_user, "张三", "13800138000", None)
    runner = runner_on(local_database)

    def rename() -> None:
        with store() as db:
            row = db.get(User, user.id)
            assert row is not None
            row.name = "张三丰"
            db.commit()

    def seen() -> tuple[int, int, str | None]:
        """The unit's thread, its connection, and the name it reads (plainly and by the ORM)."""
        by_orm = current_session().scalar(select(User.name).where(User.id == user.id))
        plain = _name_of_user(user.id)
        assert by_orm == plain
        return threading.get_ident(), id(current_connection()), plain

    before = _each_as_a_unit(runner, *[seen] * 12)
    rename()
    after = _each_as_a_unit(runner, *[seen] * 12)
    assert {name for *_, name in before} == {"张三"}
    assert {name for *_, name in after} == {"张三丰"}
    kept = {(thread, connection) for thread, connection, _ in before + after}
    assert len({thread for thread, _ in kept}) == len(kept)  # one connection a thread
    assert len(kept) <= (1 if local_database else UNIT_THREADS)
    runner.close()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@ON_THE_LOOP_AND_ON_UNIT_THREADS
def test_after_a_failed_unit_the_kept_connection_starts_clean(
    store: Store,
    runner_on: Callable[[bool], Runner],
    local_database: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "UNIT_THREADS", 1)  # the next unit: the same connection
    runner = runner_on(local_database)

    def writes_then_fails() -> None:
        audit.record(current_connection(), "token.issued", client_id="half-made")
        raise RuntimeError("the last step fails")

    async def main() -> bool:
        with pytest.raises(RuntimeError):
            await runner(writes_then_fails)
        return await runner(lambda: current_connection().in_transaction())

    assert anyio.run(main) is False
    assert _audited(store) == 0


@ON_THE_LOOP_AND_ON_UNIT_THREADS
def test_a_lost_kept_connection_is_replaced(
    runner_on: Callable[[bool], Runner], local_database: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "UNIT_THREADS", 1)  # the next unit: the same connection
    runner = runner_on(local_database)

    def loses_it() -> int:
        current_connection().invalidate()
        return 0

    answers = _each_as_a_unit(
        runner, lambda: id(current_connection()), loses_it, lambda: _name_of_user("nobody")
    )
    assert answers == [answers[0], 0, None]  # the third unit got a new one (SQLAlchemy reconnects)


def _drop_the_units_connection(store: Store, runner: Runner) -> None:
    """PostgreSQL ends the connection the runner's unit thread keeps (a restart, a firewall)."""
    pid = _each_as_a_unit(
        runner, lambda: current_connection().exec_driver_sql("select pg_backend_pid()").scalar()
    )[0]
    with store.engine.connect() as other:
        other.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.mark.parametrize("idle_longer_than_the_ping_interval", [True, False])
def test_a_unit_threads_connection_dropped_while_idle_is_replaced_unseen(
    store: Store,
    runner_on: Callable[[bool], Runner],
    monkeypatch: pytest.MonkeyPatch,
    idle_longer_than_the_ping_interval: bool,
) -> None:
    """A kept connection idle for longer than the pool's ping interval is pinged before the
    next unit, as the pool pings an idle one: that unit runs on a new connection instead of
    failing. (Within the interval nothing pings: the unit meets the dropped connection.)"""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a SQLite file cannot go away")
    monkeypatch.setattr(runner_module, "UNIT_THREADS", 1)  # the next unit: the same connection
    runner = runner_on(False)
    _drop_the_units_connection(store, runner)
    interval = -1.0 if idle_longer_than_the_ping_interval else 3600.0
    monkeypatch.setattr(runner_module, "PING_AFTER_IDLE_SECONDS", interval)
    if idle_longer_than_the_ping_interval:
        assert _each_as_a_unit(runner, lambda: _name_of_user("nobody")) == [None]
    else:
        with pytest.raises(DBAPIError):
            _each_as_a_unit(runner, lambda: _name_of_user("nobody"))


def test_a_unit_thread_keeps_the_requests_context(runner_on: Callable[[bool], Runner]) -> None:
    """Log lines written inside a unit carry the request's id (a context variable)."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    async def main() -> str:
        request_id.set("r-1")
        return await runner_on(False)(request_id.get)

    assert anyio.run(main) == "r-1"


def test_close_stops_the_unit_threads_and_gives_every_connection_back(store: Store) -> None:
    runner = Runner(store, local_database=False)

    async def main() -> None:
        await asyncio.gather(*(runner(time.sleep, 0.05) for _ in range(4)))  # several threads

    anyio.run(main)
    assert store.engine.pool.checkedout() >= 2  # type: ignore[attr-defined]
    runner.close()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name.startswith("iam-unit")]


def _runner_of(settings: Settings, store: Store, sms: ConsoleSms) -> Runner:
    runner: Runner = create_app(settings, store=store, sms=sms).state.oidc.runner
    return runner


def test_the_app_runs_units_on_the_loop_only_on_sqlite_alone(
    settings: Settings, store: Store, sms: ConsoleSms, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite = store.engine.dialect.name == "sqlite"
    assert _runner_of(settings, store, sms).local_database is sqlite
    # Redis (shared counters and replay cache: the network) or several workers: threads.
    with_redis = replace(settings, redis_url="redis://127.0.0.1:6379/0")
    assert _runner_of(with_redis, store, sms).local_database is False
    monkeypatch.setenv(MULTIPROC_DIR_VARIABLE, "/tmp/iam-metrics-test")
    assert _runner_of(settings, store, sms).local_database is False


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the functions handed to a worker thread while the test runs."""
    names: list[str] = []
    original = anyio.to_thread.run_sync

    async def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        names.append(getattr(fn, "__name__", repr(fn)))
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield names


def test_a_token_request_with_a_client_assertion_goes_to_a_thread(
    settings: Settings, store: Store, sms: ConsoleSms, world: World, hand_offs: list[str]
) -> None:
    app = create_app(settings, store=store, sms=sms)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        hand_offs.clear()  # the app's start (key check) is not a request
        secret = world.rp.client_secret or ""
        answer = client.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=(world.rp.client.client_id, secret),
        )
        assert answer.status_code == 200, answer.text
        assert hand_offs.count("_in_pool_thread") == 0  # the loop, or a unit thread
        answer = client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "not.a.jwt",
            },
        )
        assert answer.status_code == 401, answer.text
        assert hand_offs.count("_in_pool_thread") == 1
