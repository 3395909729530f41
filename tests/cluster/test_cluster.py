"""Several instances are one server: whatever one instance starts (a session, a WeCom token, a
logout, a key) holds on the other, and losing one instance behind nginx loses nothing.
The tests run in order on one cluster; the last one kills instance A."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt

from iam.devtools.wecom_simulator import demo_corps

from .conftest import (
    ADMIN_TRIES,
    CORP_A,
    PHONES,
    RP_LOGOUT,
    SECRET,
    WECOM_USERID,
    Browser,
    Cluster,
    Process,
)

NewBrowser = Callable[..., Browser]

FLOWS = 30
KILL_AT = 5


def test_a_login_on_one_instance_is_sso_on_the_other(cluster: Cluster, browser: NewBrowser) -> None:
    """Sessions live in the shared database, not in an instance."""
    person = browser()
    person.sign_in(PHONES["sms"], at=cluster.a)
    code, verifier = person.code(at=cluster.b)
    tokens = cluster.exchange(code, verifier, at=cluster.a)
    info = cluster.userinfo(tokens["access_token"], at=cluster.b)
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == cluster.users["sms"]


def test_concurrent_wecom_logins_on_both_instances_fetch_one_corp_token(
    cluster: Cluster, browser: NewBrowser
) -> None:
    """The WeCom access token is single-flight across instances (through Redis): WeCom
    throttles apps that call gettoken often."""
    for key in cluster.redis.scan_iter("iam:wecom:token:*"):
        cluster.redis.delete(key)
    cluster.simulator.reset()
    cluster.simulator.delay("gettoken", 0.5)
    try:
        pairs = [(browser(), instance) for instance in (cluster.a, cluster.b)]
        callbacks = [someone.through_wecom(WECOM_USERID, at) for someone, at in pairs]
        together = threading.Barrier(2)

        def come_back(index: int) -> tuple[httpx.Response, float]:
            someone, at = pairs[index]
            together.wait(5)
            started = time.monotonic()
            return someone.request("GET", callbacks[index], at), time.monotonic() - started

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(come_back, range(2)))
    finally:
        cluster.simulator.delay("gettoken", 0)
    for answer, took in answers:
        assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
        assert "iam_session" in answer.cookies
        assert took >= 0.45, "a callback did not wait for the slow gettoken: not concurrent"
    assert cluster.simulator.calls["gettoken"] == 1
    for (someone, _), other in zip(pairs, (cluster.b, cluster.a), strict=True):
        code, verifier = someone.code(at=other)
        tokens = cluster.exchange(code, verifier)
        assert cluster.userinfo(tokens["access_token"]).json()["sub"] == cluster.users["wecom"]


def test_logout_on_one_instance_ends_the_session_on_both(
    cluster: Cluster, browser: NewBrowser
) -> None:
    """Logout deletes the shared session: a copy of the cookie is worthless everywhere."""
    person = browser()
    person.sign_in_with_wecom()
    code, verifier = person.code()
    id_token = cluster.exchange(code, verifier)["id_token"]
    cookie = person.http.cookies["iam_session"]
    replay = browser({"iam_session": cookie})  # the cookie, kept after the logout
    assert replay.code(at=cluster.b)  # it is the session, while it lasts
    params = {"id_token_hint": id_token, "post_logout_redirect_uri": RP_LOGOUT, "state": "bye"}
    answer = person.request("GET", "/logout", cluster.a, params=params)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{RP_LOGOUT}?state=bye"
    for instance in (cluster.b, cluster.a):
        assert replay.authorize(instance, prompt="none")["error"] == "login_required"


def test_a_key_rotated_on_one_instance_is_used_and_trusted_on_both(
    cluster: Cluster, browser: NewBrowser
) -> None:
    """A rotation through A's admin API: B publishes the new key at once and accepts tokens
    signed with it, although B had its keys loaded (and cached) before."""
    person = browser()
    person.sign_in_with_wecom()
    code, verifier = person.code(at=cluster.a)
    before = cluster.exchange(code, verifier, at=cluster.a)["access_token"]
    assert cluster.userinfo(before, at=cluster.b).status_code == 200
    admin = (cluster.admin_client["client_id"], cluster.admin_client["client_secret"])
    form = {"grant_type": "client_credentials", "scope": "iam:admin"}
    token = cluster.request("POST", "/token", cluster.a, data=form, auth=admin).json()
    bearer = {"authorization": f"Bearer {token['access_token']}"}
    rotated = cluster.request("POST", "/admin/api/keys/rotate", cluster.a, headers=bearer)
    assert rotated.status_code == 201, rotated.text
    kid = rotated.json()["kid"]
    deadline = time.monotonic() + 2
    while kid not in cluster.kids(cluster.b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kid in cluster.kids(cluster.b), "B's JWKS lacks the key rotated on A after 2 s"
    code, verifier = person.code(at=cluster.a)
    after = cluster.exchange(code, verifier, at=cluster.a)["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == kid
    info = cluster.userinfo(after, at=cluster.b)
    assert info.status_code == 200, info.text


def test_rate_limits_count_across_instances(cluster: Cluster, browser: NewBrowser) -> None:
    """Admin sign-ins of one username, spread over both instances, meet one limit (Redis)."""
    guesser = browser()

    def try_password(at: Process) -> httpx.Response:
        page = guesser.request("GET", "/admin/login", at)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        form = {"csrf_token": csrf.group(1), "username": "mallory", "password": "not it at all"}
        return guesser.request("POST", "/admin/login", at, data=form)

    tries = [try_password((cluster.a, cluster.b)[i % 2]) for i in range(ADMIN_TRIES)]
    assert [answer.status_code for answer in tries] == [401] * ADMIN_TRIES
    for instance in (cluster.a, cluster.b):
        refused = try_password(instance)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= 600


def test_an_instance_killed_mid_run_loses_no_session(cluster: Cluster, browser: NewBrowser) -> None:
    """SIGKILL of A between a code and its exchange: nginx skips A, and B knows the session,
    the code issued before the kill and every token; nothing lived only in A."""
    person = browser()
    person.sign_in_with_wecom()
    for flow in range(FLOWS):
        code, verifier = person.code()
        if flow == KILL_AT:
            cluster.a.kill()
        tokens = cluster.exchange(code, verifier)
        info = cluster.userinfo(tokens["access_token"])
        assert info.status_code == 200, f"flow {flow}: {info.text}"
        assert info.json()["sub"] == cluster.users["wecom"]
    assert cluster.a.process.returncode == -9
    code, verifier = person.code(at=cluster.b)
    assert cluster.exchange(code, verifier, at=cluster.b)["access_token"]
    served = cluster.access_log.read_text()
    a, b = (re.escape(f"127.0.0.1:{each.port}") for each in (cluster.a, cluster.b))
    assert re.search(rf"upstream={a}\n", served), "nginx never sent a request to A"
    assert re.search(rf"upstream={a}, {b}\n", served), "nginx never retried a request on B"


def test_the_logs_are_json_lines_with_request_ids_and_no_secrets(cluster: Cluster) -> None:
    """After all of the above, both instances' logs (IAM_LOG_FORMAT=json): every line is one
    JSON object; every request's lines carry its id; no secret, code or token anywhere."""
    corp_secret = next(c.secret for c in demo_corps() if c.corp_id == CORP_A)
    secrets = [
        SECRET,
        corp_secret,
        cluster.rp["client_secret"],
        cluster.admin_client["client_secret"],
    ]
    codes = [str(message["code"]) for message in cluster.sms.messages]
    assert codes and all(secrets)
    for instance in (cluster.a, cluster.b):
        text = instance.log.read_text(errors="replace")
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        access = [entry for entry in entries if entry["logger"] == "iam.access"]
        assert len(access) > 20, instance.name
        assert all(re.fullmatch(r"[0-9a-f]{24}", entry["request_id"]) for entry in access)
        assert len({entry["request_id"] for entry in access}) == len(access)
        for secret in secrets:
            assert secret not in text, instance.name
        for code in codes:
            assert not re.search(rf"\b{code}\b", text), (instance.name, code)
        for marker in ("eyJ", "code=", "state=", "corpsecret", "access_token=", "iam_session"):
            assert marker not in text, (instance.name, marker)
