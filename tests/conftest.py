"""Shared fixtures. Database tests run on SQLite and on PostgreSQL (`store` is parametrized);
PostgreSQL tests skip with the reason when the server is unreachable, and must run on CI."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import logging.config
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
from httpx2 import Response
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from iam.app import create_app
from iam.clock import utcnow
from iam.db import migrate
from iam.db.base import Base
from iam.db.models import SigningKey, User
from iam.db.store import Store, create_db_engine
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.logs import log_config
from iam.secretbox import SecretBox
from iam.services import admins, clients, corps, rate_limits, signing_keys, users
from iam.services.clients import RegisteredClient
from iam.services.sms import ConsoleSms
from iam.settings import Settings

POSTGRES_URL = os.environ.get(
    "IAM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("IAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"
ISSUER = "https://testserver"
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
    return urlsplit(REDIS_URL)._replace(path=f"/{database}").geturl()


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


class Clock:
    """The time a service module sees; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def install(self, monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> Clock:
        """Replace `utcnow` in each module (they import it by name) with this clock."""
        for module in modules:
            monkeypatch.setattr(module, "utcnow", self)
        return self


#: A wall-clock second 100 s into a 600 s rate-limit window, and 40 s into a 60 s one.
RATE_WALL = 600 * 2_833_333 + 100


class RateClock:
    """The rate-limit module's clock, moved only by the test: no window ends during a test."""

    def __init__(self) -> None:
        self.wall = RATE_WALL

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return float(self.wall)


@pytest.fixture
def rate_clock(monkeypatch: pytest.MonkeyPatch) -> RateClock:
    clock = RateClock()
    monkeypatch.setattr(rate_limits, "time", clock)
    return clock


_SIGNING_KEY: dict[str, object] = {}


@pytest.fixture
def reused_signing_key(store: Store) -> None:
    """One RSA key, made once per run, put into each test's database before the app starts:
    `ensure_key` then finds it instead of generating a key per test (the protocol suites)."""
    if not _SIGNING_KEY:
        signing_keys.ensure_key(store, SecretBox(TEST_SECRET))
        with store() as db:
            key = db.scalars(select(SigningKey)).one()
            _SIGNING_KEY.update(
                kid=key.kid,
                alg=key.alg,
                private_jwk_encrypted=key.private_jwk_encrypted,
                public_jwk=key.public_jwk,
            )
        return
    with store() as db:
        db.add(SigningKey(**_SIGNING_KEY))
        db.commit()


@pytest.fixture
def server_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """The server's own log configuration (`iam.logs.log_config`) in a format, writing to a
    buffer instead of stderr; the root logger is restored after the test."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def apply(log_format: str) -> io.StringIO:
        monkeypatch.setattr("sys.stderr", stream)
        logging.config.dictConfig(log_config(log_format))
        return stream

    yield apply
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(TEST_SECRET)


@pytest.fixture
def sms() -> ConsoleSms:
    return ConsoleSms()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=ISSUER,
        database_url=database_url,
        sms_backend="webhook:https://sms.example.com/send",  # `console` is for dev mode only
    )


@pytest.fixture
def app(settings: Settings, store: Store, sms: ConsoleSms):
    return create_app(settings, store=store, sms=sms)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """A browser-like client over HTTPS that does not follow redirects."""
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        yield test_client


# --- a registered world and a scripted browser, for the protocol and page tests ---

PHONE = "+8613800138000"
RP_REDIRECT = "https://rp.example/cb"
RP_LOGOUT = "https://rp.example/logged-out"
PUBLIC_REDIRECT = "http://127.0.0.1:8765/callback"


@dataclass(frozen=True)
class World:
    user: User
    rp: RegisteredClient  # confidential
    public_rp: RegisteredClient  # public, PKCE required


@pytest.fixture
def world(store: Store) -> World:
    user = users.create_user(store, "张三 Zhang San", PHONE, "zhangsan@example.com")
    rp = clients.create_client(store, "CRM", [RP_REDIRECT], post_logout_redirect_uris=[RP_LOGOUT])
    public_rp = clients.create_client(store, "Mobile app", [PUBLIC_REDIRECT], public=True)
    return World(user, rp, public_rp)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


class Front:
    """The browser side of the flows, scripted over a TestClient: pages, forms, CSRF."""

    def __init__(self, client: TestClient, sms: ConsoleSms) -> None:
        self.client = client
        self.sms = sms

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1)

    def send_code(self, phone: str = PHONE, flow: str = "") -> Response:
        return self.client.post(
            "/login/otp", data={"csrf_token": self.csrf(), "phone": phone, "flow": flow}
        )

    def last_code(self) -> str:
        return self.sms.messages()[0].code

    def login(self, phone: str = PHONE, flow: str = "") -> Response:
        """Ask for a code, read it from the outbox, submit it: the 303 after login."""
        sent = self.send_code(phone, flow)
        assert sent.status_code == 200, sent.text
        return self.client.post(
            "/login",
            data={
                "csrf_token": self.csrf(),
                "phone": phone,
                "code": self.last_code(),
                "flow": flow,
            },
        )

    def authorize(self, **params: str) -> Response:
        return self.client.get("/authorize", params=params)

    def code_params(self, client_id: str, redirect_uri: str, **extra: str) -> tuple[dict, str]:
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid profile email phone",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        return params, verifier

    def follow_to_client(self, response: Response, phone: str = PHONE) -> Response:
        """Follow a /authorize answer through login (if asked) to the client's redirect."""
        if response.status_code == 303 and response.headers["location"].startswith("/login"):
            flow = query_of(response.headers["location"])["flow"]
            response = self.login(phone, flow)
            assert response.status_code == 303, response.text
            response = self.client.get(response.headers["location"])
        assert response.status_code == 302, response.text
        return response

    def get_code(self, client_id: str, redirect_uri: str, **extra: str) -> tuple[str, str, dict]:
        """(code, code_verifier, authorization params) for a full front-channel flow."""
        params, verifier = self.code_params(client_id, redirect_uri, **extra)
        answer = self.follow_to_client(self.authorize(**params))
        query = query_of(answer.headers["location"])
        assert query.get("state") == params["state"], query
        return query["code"], verifier, params

    def exchange(
        self, code: str, verifier: str, redirect_uri: str, client: RegisteredClient
    ) -> Response:
        """The token request for a code: Basic auth for a confidential client, `client_id` in
        the form for a public one."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if client.client_secret is None:
            data["client_id"] = client.client.client_id
            return self.client.post("/token", data=data)
        auth = (client.client.client_id, client.client_secret)
        return self.client.post("/token", data=data, auth=auth)

    def tokens(self, world: World, *, public: bool = False, **extra: str) -> dict:
        """A full code flow for the confidential RP (or the public one), exchanged for tokens."""
        rp, redirect_uri = (world.public_rp, PUBLIC_REDIRECT) if public else (world.rp, RP_REDIRECT)
        code, verifier, _ = self.get_code(rp.client.client_id, redirect_uri, **extra)
        answer = self.exchange(code, verifier, redirect_uri, rp)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def front(client: TestClient, sms: ConsoleSms) -> Front:
    return Front(client, sms)


# --- WeCom: the simulator as the outside world, and a browser that goes through it ---

WECOM_BASE = "https://wecom.test"
CORP_A = "wwsubsidiarya0001"
CORP_B = "wwsubsidiaryb0002"


#: What WeCom says about 张三 in each subsidiary (the simulator's demo world), as link metadata.
META_A = {
    "provider": "wecom",
    "corpid": CORP_A,
    "corp_name": "子公司A",
    "userid": "zhangsan_A",
    "name": "张三",
    "department": ["销售部"],
    "position": "销售经理",
    "avatar": "",
    "status": 1,
}
META_B = {
    "provider": "wecom",
    "corpid": CORP_B,
    "corp_name": "子公司B",
    "userid": "zs_b",
    "name": "张三",
    "department": ["售后服务部"],
    "position": "售后顾问",
    "avatar": "",
    "status": 1,
}


@pytest.fixture
def simulator() -> WeComSimulator:
    return WeComSimulator(demo_corps())


@pytest.fixture
def wecom_settings(settings: Settings) -> Settings:
    return replace(
        settings,
        wecom_api_base=WECOM_BASE,
        wecom_oauth_url=f"{WECOM_BASE}/connect/oauth2/authorize",
        wecom_qr_url=f"{WECOM_BASE}/wwlogin/sso/login",
    )


def connect_corp(store: Store, simulator: WeComSimulator, corp_id: str, **options: bool) -> None:
    """Connect one of the simulator's corporations, with the simulator's secret."""
    corp = next(c for c in demo_corps() if c.corp_id == corp_id)
    corps.add_corp(
        store,
        SecretBox(TEST_SECRET),
        corp.corp_id,
        corp.name,
        corp.agent_id,
        corp.secret,
        **options,
    )


@pytest.fixture
def wecom_app(wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator):
    """The app, with both demo corporations connected, reaching WeCom through the simulator."""
    connect_corp(store, simulator, CORP_A)
    connect_corp(store, simulator, CORP_B)
    return create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))


class WeComFront(Front):
    """A browser that also visits the simulator's WeCom pages."""

    def __init__(self, client: TestClient, sms: ConsoleSms, simulator: WeComSimulator) -> None:
        super().__init__(client, sms)
        self.simulator = simulator
        self.wecom = TestClient(simulator.app, base_url=WECOM_BASE, follow_redirects=False)

    def start(self, corp_id: str = CORP_A, flow: str = "", **headers: str) -> Response:
        params = {"flow": flow} if flow else {}
        return self.client.get(f"/login/wecom/{corp_id}", params=params, headers=headers)

    def pick(self, started: Response, pick: str) -> str:
        """At WeCom's page, be `pick` (a userid, `__outsider__`, `__decline__`): the callback."""
        assert started.status_code == 303, started.text
        location = started.headers["location"]
        assert location.startswith(WECOM_BASE), location
        page = self.wecom.get(location)
        assert page.status_code == 200, page.text
        answer = self.wecom.post(location, data={"pick": pick})
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    def login_as(self, userid: str, corp_id: str = CORP_A, flow: str = "") -> Response:
        """The whole trip: start, pick at WeCom, come back; the callback's answer."""
        return self.client.get(self.pick(self.start(corp_id, flow), userid))

    def bind(self, answer: Response, phone: str = PHONE) -> Response:
        """At /bind (where `answer` redirects): prove `phone` by SMS code; the 303 after binding."""
        assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
        page = answer.headers["location"]
        token = query_of(page)["binding"]
        csrf = self.csrf(page)
        sent = self.client.post(
            "/bind", data={"csrf_token": csrf, "binding": token, "phone": phone}
        )
        assert sent.status_code == 200, sent.text
        return self.client.post(
            "/bind",
            data={"csrf_token": csrf, "binding": token, "phone": phone, "code": self.last_code()},
        )


@pytest.fixture
def wecom_front(wecom_app, sms: ConsoleSms, simulator: WeComSimulator) -> Iterator[WeComFront]:
    with TestClient(wecom_app, base_url=ISSUER, follow_redirects=False) as browser:
        yield WeComFront(browser, sms, simulator)


# --- the admin console and API ---

ADMIN_USER = "root"
ADMIN_PASSWORD = "a long admin passphrase"


@dataclass(frozen=True)
class AdminWorld:
    """A signed-in admin console browser, and a bearer token of an admin client."""

    console: TestClient  # signed in as ADMIN_USER, from 127.0.0.1
    token: str  # client_credentials access token with scope iam:admin

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def csrf(self, path: str = "/admin/") -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.console.get(path).text)
        assert match, path
        return match.group(1)


def admin_console(app, address: str = "127.0.0.1") -> TestClient:
    """A browser on the admin console from `address` (not yet signed in)."""
    return TestClient(app, base_url=ISSUER, follow_redirects=False, client=(address, 50000))


@pytest.fixture
def admin_world(app, store: Store) -> Iterator[AdminWorld]:
    admins.create_admin(store, ADMIN_USER, ADMIN_PASSWORD)
    script = clients.create_client(store, "Ops script", [RP_REDIRECT], admin=True)
    with admin_console(app) as console:
        page = console.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        form = {"csrf_token": csrf.group(1), "username": ADMIN_USER, "password": ADMIN_PASSWORD}
        signed_in = console.post("/admin/login", data=form)
        assert signed_in.status_code == 303, signed_in.text
        answer = console.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "iam:admin"},
            auth=(script.client.client_id, script.client_secret or ""),
        )
        assert answer.status_code == 200, answer.text
        yield AdminWorld(console, answer.json()["access_token"])
