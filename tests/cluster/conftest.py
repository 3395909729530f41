"""A real cluster on loopback: two `iam serve` processes sharing PostgreSQL and Redis behind
Debian's nginx (round robin), reaching a WeCom simulator and an SMS webhook served in threads.
The processes are the production command in production mode: nothing is patched in."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.databases import flushed_redis, redis_url
from support.protocol import pkce_pair, query_of

from iam.devtools.wecom_simulator import WeComSimulator, demo_corps

NGINX = "/usr/sbin/nginx"
#: Database 13 of the test Redis server.
REDIS_URL = redis_url(13)
SECRET = "cluster-secret-key-0123456789abcdef0123456789"
STARTUP_BUDGET = 30.0  # seconds for a process to answer /healthz
RP_REDIRECT = "http://127.0.0.1:9/cb"
RP_LOGOUT = "http://127.0.0.1:9/logged-out"
CORP_A = "wwsubsidiarya0001"
WECOM_USERID = "zhangsan_A"
#: Admin sign-ins a username may try in 10 minutes, over all instances.
ADMIN_TRIES = 4
#: Who signs in by SMS (once: a number gets one code a minute), and who through WeCom.
PHONES = {"sms": "13800138001", "wecom": "13800138002"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def skip_or_fail(reason: str) -> None:
    """Missing infrastructure skips the cluster tests here, and fails them on CI."""
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI must run the cluster tests)")
    pytest.skip(reason)


@dataclass
class ThreadServer:
    """An ASGI app served by uvicorn in a daemon thread, on a socket bound before it starts."""

    app: Any
    sock: socket.socket = field(default_factory=socket.socket)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server thread died"
            time.sleep(0.02)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class SmsInbox:
    """The SMS gateway (`IAM_SMS_BACKEND=webhook:...`): keeps every JSON message posted to it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/sms", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        message = await request.json()
        with self._lock:
            self.messages.append(message)
        return Response(status_code=204)

    def code_for(self, phone: str, seen: int = 0) -> str:
        """The newest code sent to `phone` (11 digits; the server sends E.164) once more than
        `seen` have come: the server sends from a queue after it has answered."""
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                codes = [m["code"] for m in self.messages if str(m["phone"]).endswith(phone)]
            if len(codes) > seen or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(codes) > seen, f"no new SMS to {phone}: {self.messages}"
        return codes[-1]

    def count_for(self, phone: str) -> int:
        with self._lock:
            return sum(1 for m in self.messages if str(m["phone"]).endswith(phone))


@dataclass
class Process:
    """A server subprocess whose output goes to a log file (read into failure messages)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_healthy(self, path: str = "/healthz") -> None:
        """Bounded: the process answers, or the test fails with what it printed."""
        deadline = time.monotonic() + STARTUP_BUDGET
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + path, timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not answer {path} in {STARTUP_BUDGET:g} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no goodbye to the database or Redis."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_process(name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int) -> Process:
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    return Process(name, port, process, log)


NGINX_CONF = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstreams '$request_method $uri $status upstream=$upstream_addr';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream iam {{
        server 127.0.0.1:{a} max_fails=1 fail_timeout=30s;
        server 127.0.0.1:{b} max_fails=1 fail_timeout=30s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://iam;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 15s;
        }}
    }}
}}
"""


@dataclass
class Cluster:
    public: str  # nginx: the issuer, what browsers and apps see
    a: Process
    b: Process
    simulator: WeComSimulator
    sms: SmsInbox
    redis: redis.Redis
    rp: dict[str, Any]  # `iam clients create --json` of the app
    admin_client: dict[str, Any]  # ... of the ops script with --admin
    users: dict[str, str]  # PHONES key -> user_id
    access_log: Path
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15, trust_env=False))

    def url(self, path: str, at: Process | None) -> tuple[str, dict[str, str]]:
        """The URL for `path` through nginx, or straight at one instance with nginx's Host (as
        if nginx had picked it). An absolute URL of nginx is moved to the instance too."""
        if path.startswith(self.public + "/"):
            path = path[len(self.public) :]
        if path.startswith("http"):
            return path, {}
        if at is None:
            return self.public + path, {}
        return at.base + path, {"host": self.public.removeprefix("http://")}

    def request(self, method: str, path: str, at: Process | None = None, **kw: Any):
        url, headers = self.url(path, at)
        return self.http.request(method, url, headers={**headers, **kw.pop("headers", {})}, **kw)

    def exchange(self, code: str, verifier: str, at: Process | None = None) -> dict[str, Any]:
        """The app's back channel: code for tokens, client_secret_basic."""
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        form["redirect_uri"] = RP_REDIRECT
        auth = (self.rp["client_id"], self.rp["client_secret"])
        answer = self.request("POST", "/token", at, data=form, auth=auth)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def userinfo(self, access_token: str, at: Process | None = None) -> httpx.Response:
        return self.request(
            "GET", "/userinfo", at, headers={"authorization": f"Bearer {access_token}"}
        )

    def kids(self, at: Process) -> set[str]:
        return {key["kid"] for key in self.request("GET", "/jwks.json", at).json()["keys"]}


class Browser:
    """One person's browser: a cookie jar sent through nginx or, the very same cookies, straight
    to one named instance."""

    def __init__(self, cluster: Cluster, cookies: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.http = httpx.Client(timeout=15, cookies=cookies, trust_env=False)

    def request(self, method: str, path: str, at: Process | None = None, **kw: Any):
        url, headers = self.cluster.url(path, at)
        return self.http.request(method, url, headers=headers, **kw)

    def csrf(self, at: Process | None = None) -> str:
        page = self.request("GET", "/login", at)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1)

    def sign_in(self, phone: str, at: Process | None = None) -> None:
        """Phone, SMS code from the gateway, code: signed in (a session cookie)."""
        form = {"csrf_token": self.csrf(at), "phone": phone}
        seen = self.cluster.sms.count_for(phone)
        sent = self.request("POST", "/login/otp", at, data=form)
        assert sent.status_code == 303, sent.text  # to the code step
        form["code"] = self.cluster.sms.code_for(phone, seen)
        done = self.request("POST", "/login", at, data=form)
        assert done.status_code == 303 and "iam_session" in done.cookies, done.text

    def authorize(self, at: Process | None = None, **extra: str) -> dict[str, str]:
        """/authorize for the app; the query the browser brings back to the app's redirect."""
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": self.cluster.rp["client_id"],
            "redirect_uri": RP_REDIRECT,
            "scope": "openid profile phone",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        answer = self.request("GET", "/authorize", at, params=params)
        location = answer.headers.get("location", "")
        assert answer.status_code == 302 and location.startswith(RP_REDIRECT), answer.text
        query = query_of(location)
        assert query["state"] == params["state"], query
        return {**query, "code_verifier": verifier}

    def code(self, at: Process | None = None) -> tuple[str, str]:
        """An authorization code at once, from the session: (code, code_verifier)."""
        query = self.authorize(at)
        assert "code" in query, query
        return query["code"], query["code_verifier"]

    def through_wecom(self, userid: str, at: Process | None) -> str:
        """Start a WeCom login at `at`, be `userid` at WeCom's QR page: the callback URL."""
        started = self.request("GET", f"/login/wecom/{CORP_A}", at)
        location = started.headers.get("location", "")
        assert started.status_code == 303 and location.startswith("http"), started.text
        assert self.request("GET", location).status_code == 200
        picked = self.request("POST", location, data={"pick": userid})
        assert picked.status_code == 302, picked.text
        return picked.headers["location"]

    def sign_in_with_wecom(self, at: Process | None = None) -> None:
        """The linked WeCom member signs in, at one instance or through nginx."""
        answer = self.request("GET", self.through_wecom(WECOM_USERID, at), at)
        assert answer.status_code == 303 and "iam_session" in answer.cookies, answer.text


@pytest.fixture
def browser(cluster: Cluster) -> Iterator[Callable[..., Browser]]:
    """New browsers (optionally with cookies), all closed after the test."""
    made: list[Browser] = []

    def make(cookies: dict[str, str] | None = None) -> Browser:
        made.append(Browser(cluster, cookies))
        return made[-1]

    yield make
    for each in made:
        each.http.close()


@pytest.fixture(scope="module")
def cluster_redis() -> Iterator[redis.Redis]:
    """The instances' shared Redis (WeCom token cache, rate limits), flushed."""
    with flushed_redis(13) as client:
        yield client


def _iam(env: dict[str, str], cwd: Path) -> Callable[[str], dict[str, Any]]:
    """`iam <command> --json` as an operator runs it (words split on spaces)."""

    def run(command: str) -> dict[str, Any]:
        argv = [sys.executable, "-m", "iam", *command.split(), "--json"]
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"iam {command}: {done.stderr}"
        return json.loads(done.stdout)

    return run


def _seed(iam: Callable[[str], dict[str, Any]]) -> tuple[dict, dict, dict[str, str]]:
    """Migrate, then the corporation, the people and the apps (in parallel: each command is a
    new Python process); the WeCom user is linked, so the callback signs in without /bind."""
    iam("db upgrade")
    corp = next(c for c in demo_corps() if c.corp_id == CORP_A)
    with ThreadPoolExecutor(8) as pool:
        commands = [
            f"corps add --corp-id {CORP_A} --name {corp.name} --agent-id {corp.agent_id} "
            f"--secret {corp.secret}",
            f"clients create --name CRM --redirect-uri {RP_REDIRECT} "
            f"--post-logout-redirect-uri {RP_LOGOUT}",
            f"clients create --name Ops --redirect-uri {RP_REDIRECT} --admin",
            *(f"users create --name {name} --phone {phone}" for name, phone in PHONES.items()),
        ]
        _, rp, admin, *people = pool.map(iam, commands)
    users = {name: person["user_id"] for name, person in zip(PHONES, people, strict=True)}
    iam(f"users link {users['wecom']} --corp-id {CORP_A} --userid {WECOM_USERID}")
    return rp, admin, users


@pytest.fixture(scope="module")
def cluster(
    fresh_postgres_database: Callable[[], str],
    cluster_redis: redis.Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if not os.access(NGINX, os.X_OK):
        skip_or_fail(f"nginx not found at {NGINX} (Debian's nginx-light)")
    work = tmp_path_factory.mktemp("cluster")
    simulator, sms = WeComSimulator(demo_corps()), SmsInbox()
    threads: list[ThreadServer] = []
    processes: list[Process] = []
    try:
        threads += [ThreadServer(simulator.app), ThreadServer(sms.app)]
        wecom, port = threads[0].base, free_port()
        public = f"http://127.0.0.1:{port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IAM_") and "proxy" not in k.lower()
        }
        env.update(
            IAM_SECRET_KEY=SECRET,
            IAM_DATABASE_URL=fresh_postgres_database(),
            IAM_REDIS_URL=REDIS_URL,
            IAM_ISSUER=public,
            IAM_WECOM_API_BASE=wecom,
            IAM_WECOM_OAUTH_URL=f"{wecom}/connect/oauth2/authorize",
            IAM_WECOM_QR_URL=f"{wecom}/wwlogin/sso/login",
            IAM_SMS_BACKEND=f"webhook:{threads[1].base}/sms",
            IAM_LOG_FORMAT="json",
            IAM_RATE_LIMITS=f"admin_login.key={ADMIN_TRIES}/600",
        )
        rp, admin_client, users = _seed(_iam(env, work))
        for name in ("a", "b"):
            instance_port = free_port()
            argv = [sys.executable, "-m", "iam", "serve", "--host", "127.0.0.1"]
            argv += ["--port", str(instance_port)]
            processes.append(start_process(name, argv, env, work, instance_port))
        for process in processes:
            process.wait_healthy()
        a, b = processes
        conf = work / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""  # workers read our 0700 temp dir
        conf.write_text(NGINX_CONF.format(dir=work, user=user, a=a.port, b=b.port, port=port))
        argv = [NGINX, "-p", str(work), "-e", f"{work}/error.log", "-c", str(conf)]
        argv += ["-g", "daemon off;"]
        processes.append(start_process("nginx", argv, env, work, port))
        processes[-1].wait_healthy()
        parts = (simulator, sms, cluster_redis, rp, admin_client, users, work / "access.log")
        built = Cluster(public, a, b, *parts)
        with built.http:
            yield built
    finally:
        for process in reversed(processes):
            process.stop()
        for thread in threads:
            thread.stop()
