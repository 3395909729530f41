"""CORS for single-page apps: the browser of an app served from another origin may call
`/token`, `/userinfo` and `/revoke` (and read JWKS and discovery) when that origin is one an app
registered, the origin of one of its redirect URIs or one of its `allowed_origins`, and no other.

- **A preflight** (`OPTIONS` with `Access-Control-Request-Method`) from a registered origin is
  answered here, 204, with the endpoint's methods, the headers an app sends
  (`authorization, content-type`) and `Access-Control-Max-Age`; from any other origin, 403 with
  no CORS header (the browser then sends nothing). An `OPTIONS` that is no preflight goes on to
  the routes as before (405).
- **A request** goes on as before; when its `Origin` is registered, the answer carries
  `Access-Control-Allow-Origin` with that origin (never `*`) and, at `/userinfo`,
  `Access-Control-Expose-Headers: WWW-Authenticate` (an app reads why a token was refused).
  From any other origin the answer is the same without CORS headers: the browser keeps it
  from the page. No credentials mode: `Access-Control-Allow-Credentials` is never sent (these
  endpoints take tokens and client credentials, never the cookie).
- Every answer on these paths says `Vary: Origin`. JWKS and discovery follow the same rule
  (the contract's "Additions fixed on 2026-12-06": registered origins and no others), which
  every app that uses them from a browser meets.

The check is a set lookup: the origins of all clients are read at most once per
`TTL_SECONDS`, in a unit of their own, and at once again after a unit of this process that
changed a client commits (`iam.services.clients.changes_seen`). A change made by another
process (the CLI, another instance) is seen here within `TTL_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iam.db.store import Store
from iam.db.unit import one_unit
from iam.services import clients

log = logging.getLogger("iam")
#: How long the set of origins read from the database is used before it is read again, unless
#: this process changed a client meanwhile (then it is read again at once).
TTL_SECONDS = 30.0
#: How long a browser may keep a preflight's answer (Chromium keeps it 2 hours at most).
MAX_AGE_SECONDS = 600
#: The request headers an app sends: a bearer token or Basic credentials, a form's type.
ALLOWED_HEADERS = "authorization, content-type"


@dataclass(frozen=True)
class Policy:
    methods: str  # Access-Control-Allow-Methods
    expose: str | None = None  # Access-Control-Expose-Headers


#: The paths that answer CORS, and how.
POLICIES = {
    "/token": Policy("POST"),
    "/userinfo": Policy("GET, POST", expose="WWW-Authenticate"),
    "/revoke": Policy("POST"),
    "/jwks.json": Policy("GET"),
    "/.well-known/openid-configuration": Policy("GET"),
}


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class _Loaded:
    origins: frozenset[str]
    at: float  # `_now()` when read
    change: int  # `clients.changes_seen` when read


class AllowedOrigins:
    """The registered origins of every client, cached (see the module's text)."""

    def __init__(self, store: Store, ttl: float = TTL_SECONDS) -> None:
        self._store = store
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def _fresh(self, loaded: _Loaded | None) -> bool:
        return (
            loaded is not None
            and _now() - loaded.at < self._ttl
            and loaded.change == clients.changes_seen(self._store.engine)
        )

    def fresh(self) -> frozenset[str] | None:
        """The cached set if it may still be used, without blocking; None otherwise."""
        loaded = self._loaded
        return loaded.origins if loaded is not None and self._fresh(loaded) else None

    def current(self) -> frozenset[str]:
        """The set, read again first if it is stale (in a worker thread: it may read the
        database). One thread reads while the others go on with the stale set; only when there
        is none yet do they wait."""
        loaded = self._loaded
        if loaded is not None and self._fresh(loaded):
            return loaded.origins
        if loaded is None:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            return loaded.origins  # another thread is reading it
        try:
            if not self._fresh(self._loaded):
                # What was changed before this point is in what is read next; a change that
                # commits during the read moves the number again, and the next request reads
                # once more.
                change, at = clients.changes_seen(self._store.engine), _now()
                try:
                    origins = one_unit(self._store, clients.cors_origins)
                except Exception:
                    if loaded is None:
                        raise
                    # The database is unreachable: the set read last goes on serving.
                    log.warning("CORS: the allowed origins could not be read", exc_info=True)
                    return loaded.origins
                self._loaded = _Loaded(origins, at, change)
            assert self._loaded is not None
            return self._loaded.origins
        finally:
            self._lock.release()


class CorsMiddleware:
    """CORS on the paths of `POLICIES` (see the module's text). Inside `BrowserMiddleware`: the
    security headers stay on these answers."""

    def __init__(self, app: ASGIApp, origins: AllowedOrigins) -> None:
        self.app = app
        self.origins = origins

    async def _allows(self, origin: str) -> bool:
        origins = self.origins.fresh()
        if origins is None:
            origins = await run_in_threadpool(self.origins.current)
        return origin in origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = POLICIES.get(scope["path"]) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        allowed = origin is not None and await self._allows(origin)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in request_headers:
            await _preflight_answer(policy, origin if allowed else None)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.add_vary_header("Origin")
                if allowed and origin is not None:
                    headers["access-control-allow-origin"] = origin
                    if policy.expose:
                        headers["access-control-expose-headers"] = policy.expose
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _preflight_answer(policy: Policy, origin: str | None) -> Response:
    """204 with what the browser asked about for a registered origin; 403 without any CORS
    header for another (the browser then does not send the request)."""
    if origin is None:
        return PlainTextResponse(
            "This origin is not registered for any app.",
            status_code=403,
            headers={"vary": "Origin"},
        )
    return Response(
        status_code=204,
        headers={
            "access-control-allow-origin": origin,
            "access-control-allow-methods": policy.methods,
            "access-control-allow-headers": ALLOWED_HEADERS,
            "access-control-max-age": str(MAX_AGE_SECONDS),
            "vary": "Origin",
        },
    )
