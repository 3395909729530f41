"""iam/metrics.py and /metrics: what sign-ins, tokens and caches count, and the multi-process
mode of `iam serve --workers N`. Counters are process-wide, so tests compare before and after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, PHONE
from support.world import World

from iam.metrics import MULTIPROC_DIR_VARIABLE


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (found.name, frozenset(found.labels.items())): found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
    }


def value(client: TestClient, name: str, **labels: str) -> float:
    """One sample, scraped from loopback (`IAM_METRICS_ALLOW_CIDRS`)."""
    scraper = TestClient(client.app, base_url=ISSUER, client=("127.0.0.1", 50000))
    return samples(scraper.get("/metrics").text).get((name, frozenset(labels.items())), 0.0)


@pytest.mark.usefixtures("reused_signing_key")
def test_a_phone_sign_in_and_a_code_flow_are_counted(front: Front, world: World) -> None:
    logins = {"method": "sms", "result": "success"}
    tokens = {"grant": "authorization_code"}
    before = value(front.client, "iam_logins_total", **logins)
    issued = value(front.client, "iam_tokens_issued_total", **tokens)
    assert front.login().status_code == 303
    assert value(front.client, "iam_logins_total", **logins) == before + 1
    front.tokens(world)  # signed in already: no second login
    assert value(front.client, "iam_logins_total", **logins) == before + 1
    assert value(front.client, "iam_tokens_issued_total", **tokens) == issued + 1


@pytest.mark.usefixtures("reused_signing_key")
def test_a_wrong_code_is_counted_as_a_failed_sms_sign_in(front: Front, world: World) -> None:
    failures = {"method": "sms", "result": "failure"}
    before = value(front.client, "iam_logins_total", **failures)
    assert front.send_code().status_code == 303
    wrong = "000000" if front.last_code() != "000000" else "111111"
    answer = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": wrong, "flow": ""}
    )
    assert answer.headers["location"] == "/login?step=code&problem=wrong_code"
    assert value(front.client, "iam_logins_total", **failures) == before + 1


@pytest.mark.usefixtures("reused_signing_key")
def test_client_credentials_tokens_are_counted_by_grant(client: TestClient, world: World) -> None:
    labels = {"grant": "client_credentials"}
    before = value(client, "iam_tokens_issued_total", **labels)
    auth = (world.rp.client.client_id, world.rp.client_secret or "")
    assert client.post("/token", data={"grant_type": "client_credentials"}, auth=auth).is_success
    assert value(client, "iam_tokens_issued_total", **labels) == before + 1


@pytest.mark.usefixtures("reused_signing_key")
def test_signing_key_lookups_are_counted_as_hits_and_misses(
    client: TestClient, world: World
) -> None:
    """A token signed right after another finds the key ring loaded (a hit)."""
    auth = (world.rp.client.client_id, world.rp.client_secret or "")
    hits = value(client, "iam_cache_requests_total", cache="signing_keys", result="hit")
    for _ in range(2):
        client.post("/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert value(client, "iam_cache_requests_total", cache="signing_keys", result="hit") > hits
    assert value(client, "iam_cache_requests_total", cache="signing_keys", result="miss") >= 1


def count_in_a_worker(directory: Path) -> str:
    """One "worker" process: count a login into the shared directory, answer /metrics' text."""
    script = (
        "import sys; from iam import metrics;"
        "metrics.LOGINS.labels('sms', 'success').inc();"
        "sys.stdout.write(metrics.exposition()[0].decode())"
    )
    environment = {**os.environ, MULTIPROC_DIR_VARIABLE: str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_sharing_a_directory_show_their_sum(tmp_path: Path) -> None:
    """With `--workers N` any worker's /metrics must tell the whole instance."""
    labels = frozenset({"method": "sms", "result": "success"}.items())
    first = samples(count_in_a_worker(tmp_path))
    assert first[("iam_logins_total", labels)] == 1
    second = samples(count_in_a_worker(tmp_path))
    assert second[("iam_logins_total", labels)] == 2
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
