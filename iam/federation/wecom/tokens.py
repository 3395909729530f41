"""Access-token caches: WeCom throttles apps that call gettoken often, so every login of one app
shares one token, and only one caller fetches a missing token while the others wait for it.

Single-flight failures: when the one fetch fails, the caller that fetched gets the exception,
and so does every caller that was waiting for that fetch. They do not try again in turn, because
repeating a failed gettoken against a WeCom that is down or throttling only makes things worse.
The next caller after that starts a new fetch.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Protocol

from redis import Redis, RedisError

from iam import metrics
from iam.federation.connector import UpstreamUnavailableError

log = logging.getLogger("iam.wecom")

#: Seconds before WeCom's `expires_in` at which a token stops being used, so that a token is
#: not sent just as it expires. A token that lives this long or less is not cached.
EARLY_EXPIRY = 300
#: How long another process's fetch is awaited before the login fails.
WAIT_BUDGET = 10.0
#: Seconds between two looks at Redis while another process fetches.
POLL_INTERVAL = 0.05
#: Lifetime of the Redis fetch lock, in milliseconds. It is longer than one gettoken can take
#: with the client's timeouts, and it frees the lock if its holder dies.
LOCK_TTL_MS = 10_000
#: Redis script that deletes KEYS[1] only while it still holds ARGV[1]. It releases a lock
#: only for its owner, and drops a token only if nobody has replaced it since.
_DELETE_IF_EQUAL = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""


def monotonic() -> float:
    """Seconds on a clock that never goes back. It is a separate function so tests can move it."""
    return time.monotonic()


class TokenCache(Protocol):
    def get_or_fetch(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        """The cached token for `key`. If there is none, `fetch()` returns `(token, expires_in)`,
        and it is called once however many callers ask at the same time."""
        ...

    def drop(self, key: str, token: str) -> None:
        """Forget `token` after WeCom rejects it, but keep any newer token cached under `key`."""
        ...


class _SingleFlight:
    """At most one call per key runs at a time in this process. Callers that ask while it runs
    get its result, or its exception."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._flights: dict[str, Future[str]] = {}

    def run(self, key: str, call: Callable[[], str]) -> str:
        with self._guard:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leading:
            return flight.result()
        try:
            result = call()
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._guard:
                del self._flights[key]


def _fetch_unless_stored(
    stored: Callable[[], str | None],
    fetch: Callable[[], tuple[str, int]],
    keep: Callable[[str, int], None],
) -> str:
    """The token a concurrent fetch stored meanwhile, or a new one, kept for its lifetime less
    EARLY_EXPIRY (one that lives shorter than that is used once and not kept)."""
    found = stored()
    if found:
        return found
    token, expires_in = fetch()
    if expires_in > EARLY_EXPIRY:
        keep(token, expires_in - EARLY_EXPIRY)
    return token


class MemoryTokenCache:
    """Tokens for one process: enough for a single server, and the fallback when Redis fails.
    With several servers, each one fetches and keeps its own token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, float]] = {}
        self._flights = _SingleFlight()

    def get_or_fetch(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        cached = self._cached(key)
        metrics.count_cache("wecom_token", hit=cached is not None)
        return cached or self._flights.run(key, lambda: self._fetch(key, fetch))

    def drop(self, key: str, token: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == token:
                del self._entries[key]

    def _cached(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and monotonic() < entry[1]:
            return entry[0]
        return None

    def _fetch(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        # Check again: a fetch that finished just before this one started may have stored a token.
        return _fetch_unless_stored(lambda: self._cached(key), fetch, partial(self._keep, key))

    def _keep(self, key: str, token: str, seconds: int) -> None:
        with self._lock:
            self._entries[key] = (token, monotonic() + seconds)


class RedisTokenCache:
    """A token shared by every server through Redis, so that N servers do not need N tokens.

    The token is stored under `prefix + key` with a TTL of `expires_in - EARLY_EXPIRY`. The
    process that wins `SET prefix+key+":lock" NX PX` fetches it, and the other processes poll
    for it. If that fetch fails, the lock is released and one of the pollers takes it and
    fetches. A poller that sees neither a token nor a free lock within `wait_budget` seconds
    gives up with `UpstreamUnavailableError`. If Redis fails, logins go on: the token then
    comes from a cache in this process (`MemoryTokenCache`) and a warning is logged.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "iam:wecom:token:",
        *,
        wait_budget: float = WAIT_BUDGET,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._wait_budget = wait_budget
        self._poll_interval = poll_interval
        self._delete_if_equal = redis.register_script(_DELETE_IF_EQUAL)
        self._flights = _SingleFlight()
        self._fallback = MemoryTokenCache()

    def get_or_fetch(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        # One caller per key in this process talks to Redis; the others wait for its answer.
        return self._flights.run(key, lambda: self._shared(key, fetch))

    def drop(self, key: str, token: str) -> None:
        self._fallback.drop(key, token)
        try:
            self._delete_if_equal(keys=[self._prefix + key], args=[token])
        except RedisError as error:
            log.warning("Redis failed dropping the WeCom token %s: %s", key, error)

    def _shared(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        try:
            return self._through_redis(key, fetch)
        except RedisError as error:
            # `fetch` has not been called yet: `_through_redis` handles Redis errors after it.
            log.warning(
                "Redis failed for the WeCom token %s, caching it in-process: %s", key, error
            )
            return self._fallback.get_or_fetch(key, fetch)

    def _through_redis(self, key: str, fetch: Callable[[], tuple[str, int]]) -> str:
        name = self._prefix + key
        lock = name + ":lock"
        owner = secrets.token_hex(16)
        deadline = monotonic() + self._wait_budget
        token = self._get(name)
        metrics.count_cache("wecom_token", hit=bool(token))
        while True:
            if token:
                return token
            if self._redis.set(lock, owner, nx=True, px=LOCK_TTL_MS):
                try:
                    return self._fetch_holding_lock(name, fetch)
                finally:
                    self._release(lock, owner)
            if monotonic() >= deadline:
                raise UpstreamUnavailableError(
                    f"WeCom token {key}: another server held the fetch lock for "
                    f"{self._wait_budget:g} s without storing a token",
                    reason="wecom.unavailable",
                )
            time.sleep(self._poll_interval)
            token = self._get(name)

    def _fetch_holding_lock(self, name: str, fetch: Callable[[], tuple[str, int]]) -> str:
        # Check again: another server may have stored a token and released the lock between our
        # GET and our SET NX.
        return _fetch_unless_stored(lambda: self._get(name), fetch, partial(self._keep, name))

    def _keep(self, name: str, token: str, seconds: int) -> None:
        try:
            self._redis.set(name, token, ex=seconds)
        except RedisError as error:
            log.warning("Redis failed storing the WeCom token %s: %s", name, error)

    def _get(self, name: str) -> str | None:
        value = self._redis.get(name)
        return value.decode() if isinstance(value, bytes) else value

    def _release(self, lock: str, owner: str) -> None:
        try:
            self._delete_if_equal(keys=[lock], args=[owner])
        except RedisError as error:
            log.warning("Redis failed releasing %s (it expires by itself): %s", lock, error)
