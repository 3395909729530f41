"""iam/federation/wecom/tokens.py: caching, early expiry, single flight in one process and, through
a real Redis, across servers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support.databases import REDIS_URL, flushed_redis

from iam.federation.connector import UpstreamUnavailableError
from iam.federation.wecom import tokens
from iam.federation.wecom.tokens import EARLY_EXPIRY, MemoryTokenCache, RedisTokenCache

PREFIX = "iam:wecom:token:"
KEY = "ww0123456789abcdef:1000002:0123456789abcdef"


class Fetcher:
    """A `fetch` that hands out token-1, token-2, ... and counts its calls. It can be made slow,
    so that concurrent callers pile up behind it, or made to fail."""

    def __init__(self, expires_in: int = 7200, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.error: Exception | None = None
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, int]:
        with self._lock:
            self.calls += 1
            number = self.calls
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"token-{number}", self.expires_in


class Clock:
    """Stands in for `tokens.monotonic`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(tokens, "monotonic", fake)
    return fake


def _all_at_once(count: int, call: Callable[[], str]) -> list[str | BaseException]:
    """Runs `call` in `count` threads released together. Each result is a token or the exception
    raised, and none of them may hang."""
    barrier = threading.Barrier(count)

    def one() -> str | BaseException:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(one) for _ in range(count)]
        return [future.result(timeout=10) for future in futures]


# --- MemoryTokenCache ---------------------------------------------------------------------------


def test_memory_cache_fetches_once_and_keeps_the_token() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher()
    assert {cache.get_or_fetch(KEY, fetch) for _ in range(50)} == {"token-1"}
    assert fetch.calls == 1


def test_memory_cache_keeps_keys_apart() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher()
    assert cache.get_or_fetch("a", fetch) == "token-1"
    assert cache.get_or_fetch("b", fetch) == "token-2"
    assert cache.get_or_fetch("a", fetch) == "token-1"


def test_memory_cache_stops_using_a_token_five_minutes_before_it_expires(clock: Clock) -> None:
    cache, fetch = MemoryTokenCache(), Fetcher(expires_in=7200)
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    clock.now += 7200 - EARLY_EXPIRY - 0.001
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    clock.now += 0.001
    assert cache.get_or_fetch(KEY, fetch) == "token-2"
    assert fetch.calls == 2


@pytest.mark.parametrize("expires_in", [0, 1, EARLY_EXPIRY])
def test_memory_cache_does_not_keep_a_token_that_expires_within_five_minutes(
    expires_in: int,
) -> None:
    cache, fetch = MemoryTokenCache(), Fetcher(expires_in=expires_in)
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_memory_cache_keeps_a_token_one_second_past_the_margin(clock: Clock) -> None:
    cache, fetch = MemoryTokenCache(), Fetcher(expires_in=EARLY_EXPIRY + 1)
    cache.get_or_fetch(KEY, fetch)
    clock.now += 0.5
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    clock.now += 0.5
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_memory_cache_drop_forgets_the_token() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher()
    cache.get_or_fetch(KEY, fetch)
    cache.drop(KEY, "token-1")
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_memory_cache_stale_drop_keeps_the_fresh_token() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher()
    cache.get_or_fetch(KEY, fetch)
    cache.drop(KEY, "token-1")  # one caller saw 42001 and dropped token-1 ...
    assert cache.get_or_fetch(KEY, fetch) == "token-2"
    cache.drop(KEY, "token-1")  # ... a second caller that also saw 42001 on token-1 drops late
    assert cache.get_or_fetch(KEY, fetch) == "token-2"
    assert fetch.calls == 2


def test_memory_cache_drop_of_an_unknown_key_does_nothing() -> None:
    MemoryTokenCache().drop("nothing", "token")


def test_memory_cache_single_flight_on_a_cold_key() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher(delay=0.2)
    results = _all_at_once(20, lambda: cache.get_or_fetch(KEY, fetch))
    assert results == ["token-1"] * 20
    assert fetch.calls == 1


def test_memory_cache_failing_fetch_releases_every_waiter_with_its_error() -> None:
    cache, fetch = MemoryTokenCache(), Fetcher(delay=0.2)
    fetch.error = UpstreamUnavailableError("WeCom gettoken timed out")
    results = _all_at_once(20, lambda: cache.get_or_fetch(KEY, fetch))
    assert all(result is fetch.error for result in results)
    assert fetch.calls == 1
    fetch.error = None
    fetch.delay = 0
    assert cache.get_or_fetch(KEY, fetch) == "token-2"  # the next caller tries afresh


# --- RedisTokenCache ----------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    with flushed_redis() as client:
        yield client


def test_redis_cache_two_servers_fetch_once_between_them(redis_client: redis.Redis) -> None:
    first, second = RedisTokenCache(redis_client), RedisTokenCache(redis_client)
    fetch = Fetcher(delay=0.2)
    caches = [first, second] * 10
    turn = iter(range(20))
    lock = threading.Lock()

    def call() -> str:
        with lock:
            cache = caches[next(turn)]
        return cache.get_or_fetch(KEY, fetch)

    assert _all_at_once(20, call) == ["token-1"] * 20
    assert fetch.calls == 1


def test_redis_cache_stores_the_token_with_the_early_expiry_as_ttl(
    redis_client: redis.Redis,
) -> None:
    cache, fetch = RedisTokenCache(redis_client), Fetcher(expires_in=7200)
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    assert redis_client.get(PREFIX + KEY) == b"token-1"
    assert 7200 - EARLY_EXPIRY - 5 <= redis_client.ttl(PREFIX + KEY) <= 7200 - EARLY_EXPIRY
    assert redis_client.exists(PREFIX + KEY + ":lock") == 0
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    assert fetch.calls == 1


def test_redis_cache_does_not_store_a_short_lived_token(redis_client: redis.Redis) -> None:
    cache, fetch = RedisTokenCache(redis_client), Fetcher(expires_in=EARLY_EXPIRY)
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    assert redis_client.keys("*") == []
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_redis_cache_uses_a_token_another_server_stored(redis_client: redis.Redis) -> None:
    redis_client.set(PREFIX + KEY, "theirs", ex=600)
    fetch = Fetcher()
    assert RedisTokenCache(redis_client).get_or_fetch(KEY, fetch) == "theirs"
    assert fetch.calls == 0


def test_redis_cache_honours_the_prefix(redis_client: redis.Redis) -> None:
    RedisTokenCache(redis_client, prefix="other:").get_or_fetch(KEY, Fetcher())
    assert redis_client.get("other:" + KEY) == b"token-1"


def test_redis_cache_works_with_decoded_responses(redis_client: redis.Redis) -> None:
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as decoding:
        cache, fetch = RedisTokenCache(decoding), Fetcher()
        assert cache.get_or_fetch(KEY, fetch) == "token-1"
        assert RedisTokenCache(decoding).get_or_fetch(KEY, fetch) == "token-1"
        cache.drop(KEY, "token-1")
        assert decoding.exists(PREFIX + KEY) == 0


def test_redis_cache_drop_deletes_only_the_same_token(redis_client: redis.Redis) -> None:
    cache, fetch = RedisTokenCache(redis_client), Fetcher()
    cache.get_or_fetch(KEY, fetch)
    cache.drop(KEY, "token-0")  # a stale drop: someone else already replaced token-0
    assert redis_client.get(PREFIX + KEY) == b"token-1"
    cache.drop(KEY, "token-1")
    assert redis_client.exists(PREFIX + KEY) == 0
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_redis_cache_waiters_give_up_when_the_lock_holder_never_writes(
    redis_client: redis.Redis,
) -> None:
    redis_client.set(PREFIX + KEY + ":lock", "a-server-that-died", px=60_000)
    cache = RedisTokenCache(redis_client, wait_budget=0.3, poll_interval=0.02)
    fetch = Fetcher()
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as caught:
        cache.get_or_fetch(KEY, fetch)
    assert 0.3 <= time.monotonic() - started < 2
    assert caught.value.reason == "wecom.unavailable"
    assert fetch.calls == 0
    assert redis_client.get(PREFIX + KEY + ":lock") == b"a-server-that-died"


def test_redis_cache_waiter_fetches_itself_once_the_lock_is_freed(
    redis_client: redis.Redis,
) -> None:
    redis_client.set(PREFIX + KEY + ":lock", "a-server-whose-fetch-failed", px=200)
    cache = RedisTokenCache(redis_client, wait_budget=5, poll_interval=0.02)
    fetch = Fetcher()
    assert cache.get_or_fetch(KEY, fetch) == "token-1"
    assert fetch.calls == 1


def test_redis_cache_failing_fetch_releases_the_lock(redis_client: redis.Redis) -> None:
    cache, fetch = RedisTokenCache(redis_client), Fetcher()
    fetch.error = UpstreamUnavailableError("WeCom gettoken timed out")
    with pytest.raises(UpstreamUnavailableError):
        cache.get_or_fetch(KEY, fetch)
    assert redis_client.keys("*") == []
    fetch.error = None
    assert cache.get_or_fetch(KEY, fetch) == "token-2"


def test_redis_cache_releases_only_its_own_lock(redis_client: redis.Redis) -> None:
    cache = RedisTokenCache(redis_client)
    lock = PREFIX + KEY + ":lock"

    def slow_fetch() -> tuple[str, int]:
        # Our lock expired during the fetch and another server took it over.
        redis_client.set(lock, "another-server", px=60_000)
        return "token-1", 7200

    assert cache.get_or_fetch(KEY, slow_fetch) == "token-1"
    assert redis_client.get(lock) == b"another-server"


def test_redis_cache_falls_back_to_fetching_when_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="iam.wecom")
    with redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0)) as down:
        cache, fetch = RedisTokenCache(down), Fetcher()
        assert cache.get_or_fetch(KEY, fetch) == "token-1"
        assert cache.get_or_fetch(KEY, fetch) == "token-1"  # kept in this process meanwhile
        cache.drop(KEY, "token-1")
        assert cache.get_or_fetch(KEY, fetch) == "token-2"
    assert fetch.calls == 2
    assert any("Redis failed" in record.getMessage() for record in caplog.records)
    assert all(record.levelno == logging.WARNING for record in caplog.records)
