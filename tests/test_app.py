"""The composition root: health, readiness and metrics; dev-only routes only in dev mode."""

from __future__ import annotations

from conftest import ISSUER, TEST_SECRET, Front, World, flushed_redis, redis_url
from sqlalchemy import create_engine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from iam.app import create_app
from iam.db.store import Store
from iam.services.sms import ConsoleSms
from iam.settings import Settings


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "python_info" in answer.text


def test_readiness_fails_when_the_database_is_gone(
    settings: Settings, store: Store, tmp_path
) -> None:
    app = create_app(settings, store=store)
    with TestClient(app, base_url=ISSUER) as client:
        app.state.store = Store(create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite"))
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["database"] == "unreachable"


def test_dev_routes_exist_only_in_dev_mode(database_url: str, store: Store, world: World) -> None:
    production = Settings(secret_key=Secret(TEST_SECRET), issuer=ISSUER, database_url=database_url)
    with TestClient(create_app(production, store=store), base_url=ISSUER) as client:
        assert client.get("/dev/outbox").status_code == 404
    dev = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer="http://127.0.0.1:8000",
        database_url=database_url,
        dev_mode=True,
    )
    sms = ConsoleSms()
    with TestClient(
        create_app(dev, store=store, sms=sms), base_url="http://127.0.0.1:8000"
    ) as client:
        assert client.get("/dev/outbox").status_code == 200
        Front(client, sms).send_code()
        assert sms.messages()[0].code in client.get("/dev/outbox").text


# --- readiness with Redis (rate limits and WeCom tokens are shared through it) ---


def _with_redis(settings: Settings, url: str) -> Settings:
    from dataclasses import replace

    return replace(settings, redis_url=url)


def test_readiness_fails_when_redis_is_unreachable(
    settings: Settings, store: Store, reused_signing_key: None
) -> None:
    """An instance that cannot reach Redis would count limits alone: it must get no traffic."""
    app = create_app(_with_redis(settings, "redis://127.0.0.1:1/0"), store=store)
    with TestClient(app, base_url=ISSUER) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}
    assert answer.headers["cache-control"] == "no-store"


def test_readiness_checks_a_reachable_redis(
    settings: Settings, store: Store, reused_signing_key: None
) -> None:
    url = redis_url(14)
    with flushed_redis(14):
        pass  # skips here without a server (fails on CI)
    with TestClient(create_app(_with_redis(settings, url), store=store), base_url=ISSUER) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "database": "ok", "redis": "ok"}
