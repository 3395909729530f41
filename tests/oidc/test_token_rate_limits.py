"""Rate limits at /token: per client IP before anything else, per client after it has
authenticated; a refusal is `slow_down` (429, Retry-After) and writes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from starlette.testclient import TestClient
from support.browser import Front
from support.clocks import RateClock
from support.constants import ISSUER, PUBLIC_REDIRECT, RP_REDIRECT
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.db.models import AuditEvent
from iam.db.store import Store
from iam.services import clients
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

CREDENTIALS = {"grant_type": "client_credentials"}


@pytest.fixture
def limited(
    settings: Settings, store: Store, sms: ConsoleSms, rate_clock: RateClock
) -> Iterator[Callable[..., TestClient]]:
    """A factory: a client of the app built with these `IAM_RATE_LIMITS`, from `address`.
    Clients made by one call of the fixture share one app (and its counters)."""
    with ExitStack() as stack:
        apps: dict[str, object] = {}

        def make(limits: str, address: str = "10.0.0.1") -> TestClient:
            if limits not in apps:
                apps[limits] = create_app(
                    replace(settings, rate_limits=limits), store=store, sms=sms
                )
            client = TestClient(
                apps[limits], base_url=ISSUER, follow_redirects=False, client=(address, 50000)
            )
            return stack.enter_context(client)

        yield make


def rp_auth(world: World) -> tuple[str, str]:
    return world.rp.client.client_id, world.rp.client_secret or ""


def assert_slow_down(answer, retry_after: int = 20) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == str(retry_after)
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["error"] == "slow_down"
    assert f"{retry_after} seconds" in body["error_description"]


def failed_token_events(store: Store) -> int:
    with store() as db:
        return len(db.scalars(select(AuditEvent).where(AuditEvent.event == "token.failed")).all())


def refused_count(rule: str) -> float:
    return REGISTRY.get_sample_value("iam_rate_limited_total", {"rule": rule}) or 0.0


def test_past_the_address_limit_token_requests_slow_down(limited, world: World) -> None:
    client = limited("token.ip=2/60")
    before = refused_count("token.ip")
    for _ in range(2):
        assert client.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    assert_slow_down(client.post("/token", data=CREDENTIALS, auth=rp_auth(world)))
    assert refused_count("token.ip") == before + 1
    # another address is not held back
    other = limited("token.ip=2/60", address="10.0.0.2")
    assert other.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200


def test_the_address_limit_counts_requests_that_fail(limited, world: World) -> None:
    """Before authentication only the address is known: a flood of bad requests is held back."""
    client = limited("token.ip=2/60")
    assert client.post("/token", data=CREDENTIALS, auth=("nobody", "x")).status_code == 401
    assert client.post("/token", data={"grant_type": "nonsense"}).status_code == 400
    assert_slow_down(client.post("/token", data=CREDENTIALS, auth=rp_auth(world)))


def test_past_the_client_limit_only_that_client_slows_down(
    limited, store: Store, world: World
) -> None:
    other = in_unit(store, clients.create_client, "Other RP", [RP_REDIRECT])
    # two addresses: the limit follows the client, not where it calls from
    first, second = limited("token.key=2/60"), limited("token.key=2/60", "10.0.0.2")
    assert first.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    assert second.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    assert_slow_down(first.post("/token", data=CREDENTIALS, auth=rp_auth(world)))
    other_auth = (other.client.client_id, other.client_secret or "")
    assert first.post("/token", data=CREDENTIALS, auth=other_auth).status_code == 200


def test_failed_authentication_does_not_spend_the_clients_budget(
    limited, store: Store, world: World
) -> None:
    """Whoever knows a client_id must not be able to lock that client out of /token."""
    client = limited("token.key=2/60")
    client_id = world.rp.client.client_id
    for _ in range(3):
        answer = client.post("/token", data=CREDENTIALS, auth=(client_id, "not the secret"))
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
    assert client.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    assert client.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    assert_slow_down(client.post("/token", data=CREDENTIALS, auth=rp_auth(world)))


def test_a_public_clients_budget_cannot_be_spent_by_strangers(
    limited, sms: ConsoleSms, world: World
) -> None:
    """A public client "authenticates" with its client_id alone, which anyone can read in the
    app: bogus requests naming it must not lock the real app out of /token."""
    stranger = limited("token.key=2/60", address="203.0.113.7")
    public_id = world.public_rp.client.client_id
    for _ in range(3):
        bogus = stranger.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "client_id": public_id,
                "code": "guessed",
                "redirect_uri": PUBLIC_REDIRECT,
                "code_verifier": "x" * 43,
            },
        )
        assert bogus.status_code in (400, 429), bogus.text
    front = Front(limited("token.key=2/60"), sms)
    code, verifier, _ = front.get_code(public_id, PUBLIC_REDIRECT)
    answer = front.exchange(code, verifier, PUBLIC_REDIRECT, world.public_rp)
    assert answer.status_code == 200, answer.text


def test_a_code_refused_for_too_many_requests_is_still_good(
    limited, sms: ConsoleSms, world: World, rate_clock: RateClock
) -> None:
    """The client limit is checked before the code is looked at, so the code is not burnt."""
    client = limited("token.key=1/60")
    assert client.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    front = Front(client, sms)
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    assert_slow_down(front.exchange(code, verifier, RP_REDIRECT, world.rp))
    rate_clock.wall += 20
    answer = front.exchange(code, verifier, RP_REDIRECT, world.rp)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id_token"]


def test_refusals_write_no_audit_rows(limited, store: Store, world: World) -> None:
    """A flood must not become a flood of writes."""
    by_address = limited("token.ip=1/60")
    assert by_address.post("/token", data={"grant_type": "nonsense"}).status_code == 400
    written = failed_token_events(store)
    assert written == 1
    for _ in range(3):
        assert_slow_down(by_address.post("/token", data={"grant_type": "nonsense"}))
    by_client = limited("token.key=1/60", address="10.0.0.3")
    assert by_client.post("/token", data=CREDENTIALS, auth=rp_auth(world)).status_code == 200
    for _ in range(3):
        assert_slow_down(by_client.post("/token", data=CREDENTIALS, auth=rp_auth(world)))
    assert failed_token_events(store) == written
