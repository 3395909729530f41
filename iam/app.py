"""The composition root: builds the engine, the services' collaborators, the Authlib server and
the routes from `Settings`. Imported only by the CLI and the ASGI entry point."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from iam import metrics as metrics_module
from iam import settings as settings_module
from iam.admin.guard import AddressGuard
from iam.admin.json_api import is_api_path, json_error
from iam.admin.routing import admin_mount
from iam.db.store import DB_THREADS, UNIT_THREADS, Store, create_db_engine
from iam.db.unit import in_worker, one_unit
from iam.edge import EdgeMiddleware
from iam.events import wecom as wecom_events
from iam.federation.connector import CallbackConnector, Identity
from iam.federation.wecom.client import WeComClient, new_http_client
from iam.federation.wecom.tokens import MemoryTokenCache, RedisTokenCache, TokenCache
from iam.flows import binding, dispatch, launch, login, logout, selection
from iam.flows import upstream as upstream_flow
from iam.oidc import endpoints
from iam.oidc.backchannel import BackchannelWorker
from iam.oidc.client_auth import ClientAssertion, JwksCache, MemoryReplays, RedisReplays
from iam.oidc.cors import AllowedOrigins, CorsMiddleware
from iam.oidc.endpoints import Oidc, discovery_document
from iam.oidc.keys import KeyRing
from iam.oidc.runner import Runner
from iam.oidc.server import Server
from iam.secretbox import SecretBox
from iam.services import corps, directory, otp, signing_keys, upstream
from iam.services.rate_limits import MemoryCounter, RateLimits, RedisCounter, rules_from
from iam.services.sms import DeliveryQueue, SmsSender, sender_for
from iam.settings import Settings
from iam.telemetry import TelemetryMiddleware
from iam.web import (
    STATIC_DIR,
    BodyLimitMiddleware,
    BrowserMiddleware,
    Web,
    use_relative_slash_redirects,
)

log = logging.getLogger("iam")
#: Where dev mode mounts the WeCom simulator (`IAM_WECOM_*` point below it in `iam demo`).
SIMULATOR_PATH = "/_sim/wecom"
#: Seconds before a Redis call gives up (logins then fall back to this process's cache).
REDIS_TIMEOUT = 0.5


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics(request: Request) -> Response:
    """Prometheus exposition: requests, logins, tokens, WeCom calls, caches (`iam.metrics`)."""
    body, content_type = await run_in_threadpool(metrics_module.exposition)
    return Response(body, media_type=content_type)


async def readyz(request: Request) -> Response:
    """Ready when the database answers and, if one is configured, Redis does; 503 naming what
    is unreachable otherwise (a load balancer then sends this instance no traffic)."""
    store: Store = request.app.state.store
    redis_client: redis.Redis | None = request.app.state.redis

    def check() -> dict[str, str]:
        report = {}
        try:
            with store.engine.connect() as connection:
                connection.execute(text("select 1"))
            report["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means: not ready
            log.warning("readiness: the database is unreachable: %s", error)
            report["database"] = "unreachable"
        if redis_client is not None:
            try:
                redis_client.ping()
                report["redis"] = "ok"
            except redis.RedisError as error:
                log.warning("readiness: Redis is unreachable: %s", error)
                report["redis"] = "unreachable"
        return report

    report = await run_in_threadpool(check)
    ready = all(value == "ok" for value in report.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **report},
        status_code=200 if ready else 503,
        headers={"cache-control": "no-store"},
    )


async def not_found(request: Request, exc: Exception) -> Response:
    if is_api_path(request.url.path):
        return json_error(404, "not_found", "No such resource.")
    web: Web = request.app.state.web
    return web.error_page(request, "error.not_found", status_code=404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    """405 with the `Allow` header Starlette's routing put on the exception (RFC 9110 15.5.6)."""
    headers = getattr(exc, "headers", None) or {}
    return PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    web: Web = request.app.state.web
    return web.error_page(request, "error.server", status_code=500)


class _App(Starlette):
    """Starlette with the telemetry outside everything, the 500 handler included: an error
    page carries its request id, and the error's log line too."""

    def build_middleware_stack(self) -> ASGIApp:
        return TelemetryMiddleware(super().build_middleware_stack(), self.routes)


def shared_redis(settings: Settings) -> redis.Redis | None:
    """The Redis client every shared cache and counter uses, when `IAM_REDIS_URL` is set."""
    if not settings.redis_url:
        return None
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), retries=1),
    )


def _local_database(store: Store, shared: redis.Redis | None) -> bool:
    """Whether a protocol unit touches only this process and a local file: SQLite, no Redis,
    one worker (`iam serve --workers N` shares metrics through a directory when N > 1). Such a
    unit runs on the event loop (`iam.oidc.runner`)."""
    return (
        store.engine.dialect.name == "sqlite"
        and shared is None
        and not os.environ.get(metrics_module.MULTIPROC_DIR_VARIABLE)
    )


def _providers(
    settings: Settings, store: Store, box: SecretBox, wecom: WeComClient
) -> upstream.Providers:
    """The provider types (one entry each, as in Dex): WeCom, one connector per corporation."""

    def open_wecom(corp_id: str) -> CallbackConnector:
        config = one_unit(
            store,
            lambda db: corps.wecom_config(
                db, box, corp_id, oauth_url=settings.wecom_oauth_url, qr_url=settings.wecom_qr_url
            ),
        )
        return config.open(wecom)

    return upstream.Providers({"wecom": open_wecom})


def directory_lookup(
    settings: Settings, store: Store, box: SecretBox, wecom: WeComClient
) -> directory.Lookup:
    """How the directory is asked about one member: the corporation's connector's user/get."""

    def look_up(corp_id: str, userid: str) -> Identity | None:
        config = one_unit(
            store,
            lambda db: corps.wecom_config(
                db, box, corp_id, oauth_url=settings.wecom_oauth_url, qr_url=settings.wecom_qr_url
            ),
        )
        return config.open(wecom).look_up(userid)

    return look_up


def client_assertion(
    settings: Settings, shared: redis.Redis | None, box: SecretBox
) -> ClientAssertion:
    """private_key_jwt and client_secret_jwt: used `jti`s in Redis when there is one (every
    instance sees them), in this process otherwise; clients' `jwks_uri`s fetched by their own
    short-timeout client; `client_secret_jwt` secrets decrypted with `box`."""
    replays = RedisReplays(shared) if shared else MemoryReplays()
    return ClientAssertion(settings.issuer, replays, JwksCache(httpx.Client()), box)


def _sms_sender(settings: Settings, store: Store) -> SmsSender:
    """The configured SMS backend; `console` prints codes and numbers, so only in dev mode."""
    settings_module.refuse_console_sms(settings)
    return sender_for(
        settings.sms_backend,
        lambda message, reason: one_unit(
            store, lambda db: otp.record_undelivered(db, message, reason)
        ),
    )


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    sms: SmsSender | None = None,
    wecom_http: httpx.Client | None = None,
    wecom_cache: TokenCache | None = None,
) -> Starlette:
    """The ASGI app for `settings`; tests may hand in the store, the SMS sender, and the HTTP
    client and token cache used to reach WeCom."""
    store = store or Store(create_db_engine(settings.database_url))
    box = SecretBox(str(settings.secret_key))
    web = Web(
        str(settings.secret_key),
        secure_cookies=settings.issuer_is_https,
        timezone=settings.timezone,
    )
    sms = sms or _sms_sender(settings, store)
    http = wecom_http or new_http_client()
    shared = shared_redis(settings)
    # Shared through Redis when several instances run; in this process otherwise.
    token_cache = wecom_cache or (RedisTokenCache(shared) if shared else MemoryTokenCache())
    wecom = WeComClient(settings.wecom_api_base, http, token_cache)
    rate_limits = RateLimits(
        RedisCounter(shared) if shared else MemoryCounter(), rules_from(settings)
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # No more threads than database connections: a thread never waits for a connection.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = DB_THREADS - UNIT_THREADS
        await in_worker(store, lambda db: signing_keys.ensure_key(db, box))
        sending = backchannel.start()  # logout tokens queued before this start go out too
        yield
        await backchannel.stop(sending)
        oidc.runner.close()
        if wecom_http is None:
            http.close()
        assertion.jwks.close()
        if isinstance(sms, DeliveryQueue):  # send what is queued before the process ends
            await run_in_threadpool(sms.close)
        if shared is not None:
            shared.close()

    keys = KeyRing(store, box)
    assertion = client_assertion(settings, shared, box)
    backchannel = BackchannelWorker(store, keys, settings.issuer)
    oidc = Oidc(
        issuer=settings.issuer,
        server=Server(settings.issuer, keys, rate_limits, assertion),
        runner=Runner(store, local_database=_local_database(store, shared)),
        keys=keys,
        discovery=discovery_document(settings.issuer),
    )
    routes = [
        Route("/.well-known/openid-configuration", endpoints.openid_configuration),
        Route("/jwks.json", endpoints.jwks),
        Route("/authorize", dispatch.authorize, methods=["GET", "POST"]),
        Route("/flow/{flow_id}", dispatch.resume),
        Route("/token", endpoints.token, methods=["POST"]),
        Route("/userinfo", endpoints.userinfo, methods=["GET", "POST"]),
        Route("/revoke", endpoints.revoke, methods=["POST"]),
        Route("/introspect", endpoints.introspect, methods=["POST"]),
        Route("/logout", logout.logout, methods=["GET", "POST"]),
        Route("/login", login.login_page, methods=["GET"]),
        Route("/login", login.submit_code, methods=["POST"]),
        Route("/login/otp", login.send_code, methods=["POST"]),
        Route("/login/{provider}/{connector_id}", upstream_flow.start),
        Route("/callback/{provider}/{connector_id}", upstream_flow.callback),
        Route("/launch/{client_id}/wecom/{corp_id}", launch.launch),
        Route("/bind", binding.bind_page, methods=["GET"]),
        Route("/bind", binding.submit, methods=["POST"]),
        Route("/bind/confirm", binding.confirm, methods=["POST"]),
        Route("/select-identity", selection.select_page, methods=["GET"]),
        Route("/select-identity", selection.submit, methods=["POST"]),
        Route("/", logout.home),
        Route("/favicon.ico", logout.favicon),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *wecom_events.routes,
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
        admin_mount(),
    ]
    app_state: dict[str, object] = {}  # dev-only collaborators the tests and the demo reach
    if settings.dev_mode:
        from iam.devtools import outbox

        routes.extend(outbox.routes)
        from iam.devtools.wecom_simulator import WeComSimulator, demo_corps

        simulator = WeComSimulator(demo_corps())
        routes.append(Mount(SIMULATOR_PATH, app=simulator.app))
        app_state["simulator"] = simulator
    middleware = [
        Middleware(AddressGuard, networks=settings.admin_allow_cidrs, prefix="/admin"),
        Middleware(AddressGuard, networks=settings.metrics_allow_cidrs, prefix="/metrics"),
        Middleware(
            BrowserMiddleware,
            secret_key=str(settings.secret_key),
            secure_cookies=settings.issuer_is_https,
        ),
        # Inside the security headers: they stay on CORS answers and preflights.
        Middleware(CorsMiddleware, origins=AllowedOrigins(store)),
        Middleware(BodyLimitMiddleware),
        Middleware(EdgeMiddleware),  # inside the body limit: it reads form bodies
    ]
    app = _App(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed, 500: server_error},
    )
    use_relative_slash_redirects(app.router)
    app.state.settings = settings
    app.state.store = store
    app.state.box = box
    app.state.web = web
    app.state.sms = sms
    app.state.oidc = oidc
    app.state.providers = _providers(settings, store, box, wecom)
    app.state.directory_lookup = directory_lookup(settings, store, box, wecom)
    app.state.wecom = wecom
    app.state.redis = shared
    app.state.rate_limits = rate_limits
    app.state.backchannel = backchannel
    for name, value in app_state.items():
        setattr(app.state, name, value)
    return app


def create_app_from_environment() -> Starlette:
    """`uvicorn --factory iam.app:create_app_from_environment`: settings from IAM_* and .env."""
    return create_app(settings_module.load())
