"""Where a protocol unit of work runs (`iam.oidc.server.Runner`): on the event loop for a
local database (SQLite, one process, no Redis), in a worker thread otherwise and for a request
that may wait on the network; committed whole or not at all either way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from support.constants import ISSUER
from support.world import World

from iam.app import create_app
from iam.db.models import AuditEvent
from iam.db.store import Store
from iam.db.unit import current_connection
from iam.metrics import MULTIPROC_DIR_VARIABLE
from iam.oidc.server import Runner
from iam.services import audit
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")


def _thread_of_unit(runner: Runner, *, local: bool) -> tuple[int, int]:
    """(the event loop's thread, the thread the unit ran in)."""

    async def main() -> tuple[int, int]:
        ran_in = await runner(threading.get_ident, local=local)
        return threading.get_ident(), ran_in

    return anyio.run(main)


@pytest.mark.parametrize(
    ("local_database", "local", "inline"),
    [
        (True, True, True),
        (True, False, False),  # e.g. a client assertion: its keys may be at a jwks_uri
        (False, True, False),
    ],
)
def test_a_unit_runs_on_the_loop_only_for_a_local_request_on_a_local_database(
    store: Store, local_database: bool, local: bool, inline: bool
) -> None:
    loop_thread, unit_thread = _thread_of_unit(
        Runner(store, local_database=local_database), local=local
    )
    assert (unit_thread == loop_thread) is inline


def _audited(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.mark.parametrize("local_database", [True, False])
def test_a_unit_whose_last_step_fails_leaves_nothing_on_the_loop_or_in_a_thread(
    store: Store, local_database: bool
) -> None:
    def writes_then_fails() -> None:
        audit.record(current_connection(), "token.issued", client_id="half-made")
        raise RuntimeError("the last step fails")

    async def main() -> None:
        await Runner(store, local_database=local_database)(writes_then_fails)

    with pytest.raises(RuntimeError):
        anyio.run(main)
    assert _audited(store) == 0

    async def succeeds() -> None:
        def work() -> None:
            audit.record(current_connection(), "token.issued", client_id="whole")

        await Runner(store, local_database=local_database)(work)

    anyio.run(succeeds)
    assert _audited(store) == 1


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
        on_sqlite = store.engine.dialect.name == "sqlite"
        assert hand_offs.count("_work") == (0 if on_sqlite else 1)
        answer = client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": "not.a.jwt",
            },
        )
        assert answer.status_code == 401, answer.text
        assert hand_offs.count("_work") == (1 if on_sqlite else 2)
