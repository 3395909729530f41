"""The composition root: health, readiness and metrics; dev-only routes only in dev mode."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from sqlalchemy import create_engine
from starlette.datastructures import Secret
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, TEST_SECRET
from support.databases import flushed_redis, redis_url
from support.world import World

from iam.app import create_app
from iam.db.store import Store
from iam.services.sms import ConsoleSms
from iam.settings import Settings, SettingsError


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


def test_metrics_are_prometheus_text(app) -> None:
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 50000)) as loopback:
        answer = loopback.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "python_info" in answer.text


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
def test_metrics_answer_the_default_allowlist(app, address: str) -> None:
    with TestClient(app, base_url=ISSUER, client=(address, 50000)) as scraper:
        assert scraper.get("/metrics").status_code == 200


@pytest.mark.parametrize("address", ["10.1.2.3", "203.0.113.9", "2001:db8::1", "testclient"])
def test_metrics_refuse_other_addresses_with_an_empty_403(app, address: str) -> None:
    """Request and login counts are not for everyone who can reach the server."""
    with TestClient(app, base_url=ISSUER, client=(address, 50000)) as outsider:
        answer = outsider.get("/metrics")
    assert answer.status_code == 403
    assert answer.content == b""
    assert "python_info" not in answer.text


def test_metrics_follow_their_own_allowlist(settings: Settings, store: Store) -> None:
    """The scraper's network is not the admins' network."""
    scraper_net = replace(settings, metrics_allow_cidrs=(ipaddress.ip_network("10.244.0.0/16"),))
    app = create_app(scraper_net, store=store, sms=ConsoleSms())
    with TestClient(app, base_url=ISSUER, client=("10.244.3.4", 50000)) as scraper:
        assert scraper.get("/metrics").status_code == 200
        assert scraper.get("/admin/").status_code == 403
    with TestClient(app, base_url=ISSUER, client=("127.0.0.1", 50000)) as loopback:
        assert loopback.get("/metrics").status_code == 403


# --- slash redirects name no host ---


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/login/", "/login"),
        ("/login/?lang=en&flow=x", "/login?lang=en&flow=x"),
        ("/healthz/", "/healthz"),
    ],
)
def test_a_trailing_slash_redirects_to_a_relative_location(
    client: TestClient, path: str, location: str
) -> None:
    """Starlette's redirect names the Host header, which anyone can write: an open redirect."""
    answer = client.get(path, headers={"host": "evil.example.com"})
    assert answer.status_code in (301, 307, 308, 404), answer.status_code
    if answer.status_code != 404:
        assert answer.headers["location"] == location
    assert "evil.example.com" not in answer.headers.get("location", "")


def test_a_redirect_under_a_mount_is_relative_too(app) -> None:
    with TestClient(
        app, base_url=ISSUER, client=("127.0.0.1", 50000), follow_redirects=False
    ) as console:
        answer = console.get("/admin/login/", headers={"host": "evil.example.com"})
    assert "evil.example.com" not in answer.headers.get("location", "")
    if answer.status_code != 404:
        assert answer.headers["location"] == "/admin/login"


def test_a_slash_redirect_never_leaves_the_site(client: TestClient) -> None:
    for path in ("//evil.example.com/", "//evil.example.com/login/", "/\\evil.example.com/"):
        answer = client.get(ISSUER + path, headers={"host": "evil.example.com"})
        location = answer.headers.get("location", "/")
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location


def test_readiness_fails_when_the_database_is_gone(
    settings: Settings, store: Store, tmp_path
) -> None:
    app = create_app(settings, store=store, sms=ConsoleSms())
    with TestClient(app, base_url=ISSUER) as client:
        app.state.store = Store(create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite"))
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["database"] == "unreachable"


def test_dev_routes_exist_only_in_dev_mode(database_url: str, store: Store, world: World) -> None:
    production = Settings(secret_key=Secret(TEST_SECRET), issuer=ISSUER, database_url=database_url)
    with TestClient(
        create_app(production, store=store, sms=ConsoleSms()), base_url=ISSUER
    ) as client:
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
    return replace(settings, redis_url=url)


def test_readiness_fails_when_redis_is_unreachable(
    settings: Settings, store: Store, reused_signing_key: None
) -> None:
    """An instance that cannot reach Redis would count limits alone: it must get no traffic."""
    app = create_app(_with_redis(settings, "redis://127.0.0.1:1/0"), store=store, sms=ConsoleSms())
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
    app = create_app(_with_redis(settings, url), store=store, sms=ConsoleSms())
    with TestClient(app, base_url=ISSUER) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "database": "ok", "redis": "ok"}


def test_the_console_sms_backend_is_refused_outside_dev_mode(
    settings: Settings, store: Store
) -> None:
    """It writes every code and full phone number to the log: a production log is no outbox."""
    with pytest.raises(SettingsError, match="IAM_SMS_BACKEND.*IAM_DEV_MODE"):
        create_app(replace(settings, sms_backend="console"), store=store)
