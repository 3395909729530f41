"""iam/services/rate_limits.py: the rule table, in-process and Redis counters, and `check`."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.datastructures import Secret
from support.constants import ISSUER, TEST_SECRET
from support.databases import flushed_redis

from iam.errors import RateLimitedError
from iam.services import rate_limits
from iam.services.rate_limits import (
    DEFAULT_RULES,
    MemoryCounter,
    RateLimits,
    RedisCounter,
    Rule,
    parse_rules,
    rules_from,
)
from iam.settings import Settings, SettingsError

PHONE = "+8613800138000"
#: A wall-clock second 100 s into a 600 s window (and 40 s into a 60 s one).
WALL = 600 * 2_833_333 + 100


class FakeTime:
    """The `time` module as the rate-limit module sees it: wall and monotonic clocks that only
    move when told, so windows start and end where a test says."""

    def __init__(self, wall: float = WALL, mono: float = 1000.0) -> None:
        self.wall = wall
        self.mono = mono

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(rate_limits, "time", fake)
    return fake


def refused_count(rule: str) -> float:
    return REGISTRY.get_sample_value("iam_rate_limited_total", {"rule": rule}) or 0.0


def limits(text: str, counter: rate_limits.Counter | None = None) -> RateLimits:
    return RateLimits(counter or MemoryCounter(), parse_rules(text))


# --- the rule table ---


def test_a_rule_is_count_per_seconds() -> None:
    assert Rule.parse("5/600") == Rule(5, 600)
    assert Rule.parse(" 20/60 ") == Rule(20, 60)


@pytest.mark.parametrize("text", ["", "5", "0/60", "5/0", "-1/60", "five/60", "5/60/2", "5/1.5"])
def test_a_malformed_rule_is_refused_saying_the_format(text: str) -> None:
    with pytest.raises(ValueError, match="N/SECONDS") as refused:
        Rule.parse(text)
    assert repr(text) in str(refused.value)


def test_no_overrides_give_the_defaults() -> None:
    assert parse_rules("") == DEFAULT_RULES
    assert parse_rules(" , ") == DEFAULT_RULES


def test_an_action_without_kind_sets_key_and_ip() -> None:
    rules = parse_rules("token=100/30")
    assert rules["token.key"] == rules["token.ip"] == Rule(100, 30)
    assert {name: rule for name, rule in rules.items() if not name.startswith("token.")} == {
        name: rule for name, rule in DEFAULT_RULES.items() if not name.startswith("token.")
    }


def test_a_kind_sets_only_that_rule() -> None:
    rules = parse_rules("otp_send.ip=3/600, admin_login.key = 2/60")
    assert rules["otp_send.ip"] == Rule(3, 600)
    assert rules["otp_send.key"] == DEFAULT_RULES["otp_send.key"]
    assert rules["admin_login.key"] == Rule(2, 60)
    assert rules["admin_login.ip"] == DEFAULT_RULES["admin_login.ip"]


def test_overrides_leave_the_default_table_alone() -> None:
    """The defaults are shared by every app built in the process."""
    before = dict(DEFAULT_RULES)
    parse_rules("token=1/1,otp_send.key=1/1")
    assert before == DEFAULT_RULES


@pytest.mark.parametrize("text", ["sms=1/60", "token.phone=1/60", "otp_send.=1/60", ".ip=1/60"])
def test_an_unknown_name_is_refused_listing_the_known_ones(text: str) -> None:
    with pytest.raises(ValueError, match="unknown rate limit") as refused:
        parse_rules(text)
    known = "admin_login, callback_refused, flow_start, otp_send, otp_verify, token, upstream_login"
    assert known in str(refused.value)


def test_an_item_without_a_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"NAME=N/SECONDS, not 'token'"):
        parse_rules("token")
    with pytest.raises(ValueError, match="N/SECONDS"):
        parse_rules("token=lots")


def test_a_bad_table_in_settings_is_a_settings_error_naming_the_variable() -> None:
    settings = Settings(
        secret_key=Secret(TEST_SECRET), issuer=ISSUER, database_url="sqlite://", rate_limits="x=1"
    )
    with pytest.raises(SettingsError, match=r"^IAM_RATE_LIMITS: unknown rate limit 'x'"):
        rules_from(settings)
    good = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=ISSUER,
        database_url="sqlite://",
        rate_limits="token=9/9",
    )
    assert rules_from(good)["token.ip"] == Rule(9, 9)


# --- the in-process counter ---


def test_memory_counter_counts_each_name_apart(clock: FakeTime) -> None:
    counter = MemoryCounter()
    assert [counter.hit("a", 60) for _ in range(3)] == [1, 2, 3]
    assert counter.hit("b", 60) == 1


def test_memory_counter_forgets_after_the_window(clock: FakeTime) -> None:
    counter = MemoryCounter()
    counter.hit("a", 60)
    clock.advance(59)
    assert counter.hit("a", 60) == 2
    clock.advance(1)
    assert counter.hit("a", 60) == 1


def test_memory_counter_drops_expired_counters_when_it_grows(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of one-off keys (one per phone number tried) must not grow memory for ever."""
    monkeypatch.setattr(MemoryCounter, "SWEEP_ABOVE", 3)
    counter = MemoryCounter()
    for name in "abcd":
        counter.hit(name, 10)
    clock.advance(10)
    counter.hit("e", 10)
    assert set(counter._counts) == {"e"}


# --- check ---


def test_the_hit_past_the_limit_is_refused_until_the_window_ends(clock: FakeTime) -> None:
    checks = limits("otp_send.ip=2/600")
    checks.check("otp_send", key=None, ip="10.0.0.1")
    checks.check("otp_send", key=None, ip="10.0.0.1")
    with pytest.raises(RateLimitedError) as refused:
        checks.check("otp_send", key=None, ip="10.0.0.1")
    assert refused.value.retry_after == 500  # the window began 100 s ago
    assert "500 seconds" in str(refused.value)
    clock.advance(500)
    checks.check("otp_send", key=None, ip="10.0.0.1")


def test_retry_after_is_within_the_window_on_the_real_clock() -> None:
    checks = limits("token.key=1/60")
    checks.check("token", key="c_client", ip=None)
    with pytest.raises(RateLimitedError) as refused:
        checks.check("token", key="c_client", ip=None)
    assert 0 < refused.value.retry_after <= 60


def test_keys_and_addresses_are_counted_apart(clock: FakeTime) -> None:
    checks = limits("otp_verify.key=2/600,otp_verify.ip=3/600")
    checks.check("otp_verify", key=PHONE, ip="10.0.0.1")
    checks.check("otp_verify", key=PHONE, ip="10.0.0.1")
    # the phone is spent, from any address
    with pytest.raises(RateLimitedError):
        checks.check("otp_verify", key=PHONE, ip="10.0.0.2")
    # the first address has one try left, for another phone
    checks.check("otp_verify", key="+8613900139000", ip="10.0.0.1")
    with pytest.raises(RateLimitedError):
        checks.check("otp_verify", key="+8613700137000", ip="10.0.0.1")


def test_actions_are_counted_apart(clock: FakeTime) -> None:
    checks = limits("otp_send.key=1/600,otp_verify.key=1/600")
    checks.check("otp_send", key=PHONE, ip=None)
    checks.check("otp_verify", key=PHONE, ip=None)
    with pytest.raises(RateLimitedError):
        checks.check("otp_send", key=PHONE, ip=None)


def test_a_missing_key_or_address_is_not_counted(clock: FakeTime) -> None:
    """No key (a malformed phone) or no address must not pool everyone into one counter."""
    checks = limits("otp_send.key=1/600,otp_send.ip=1/600")
    for number in range(3):
        checks.check("otp_send", key=None, ip=f"10.0.0.{number}")
        checks.check("otp_send", key=f"+861380013800{number}", ip=None)
        checks.check("otp_send", key="", ip="")


def test_a_refused_attempt_spends_nothing(clock: FakeTime) -> None:
    """A full address must not spend the key's budget, nor a full key the address's: a
    stranger refused at their own address leaves the owner's budget whole."""
    checks = limits("otp_verify.key=2/600,otp_verify.ip=1/600")
    checks.check("otp_verify", key=PHONE, ip="10.0.0.1")
    for _ in range(5):  # refused by the address: the phone's second try is not spent
        with pytest.raises(RateLimitedError):
            checks.check("otp_verify", key=PHONE, ip="10.0.0.1")
    checks.check("otp_verify", key=PHONE, ip="10.0.0.2")
    for _ in range(5):  # refused by the key: the third address's try is not spent
        with pytest.raises(RateLimitedError):
            checks.check("otp_verify", key=PHONE, ip="10.0.0.3")
    checks.check("otp_verify", key="+8613900139000", ip="10.0.0.3")


def test_a_refused_attempt_spends_nothing_in_redis(redis_client: redis.Redis) -> None:
    checks = RateLimits(RedisCounter(redis_client), parse_rules("otp_send.key=1/600"))
    checks.check("otp_send", key=PHONE, ip="10.0.0.1")
    for _ in range(3):
        with pytest.raises(RateLimitedError):
            checks.check("otp_send", key=PHONE, ip="10.0.0.1")
    counts = sorted(int(redis_client.get(key)) for key in redis_client.keys("*"))
    assert counts == [1, 1]


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),
    ],
)
def test_ipv6_addresses_are_counted_per_64(
    clock: FakeTime, first: str, second: str, same: bool
) -> None:
    """One subscriber holds a /64: rotating through its addresses must not renew the budget."""
    checks = limits("otp_send.ip=1/600")
    checks.check("otp_send", key=None, ip=first)
    if same:
        with pytest.raises(RateLimitedError):
            checks.check("otp_send", key=None, ip=second)
    else:
        checks.check("otp_send", key=None, ip=second)


def test_a_refusal_is_counted_in_the_metrics(clock: FakeTime) -> None:
    checks = limits("admin_login.ip=1/600")
    before = refused_count("admin_login.ip")
    checks.check("admin_login", key=None, ip="10.0.0.9")
    assert refused_count("admin_login.ip") == before
    with pytest.raises(RateLimitedError):
        checks.check("admin_login", key=None, ip="10.0.0.9")
    assert refused_count("admin_login.ip") == before + 1


# --- Redis ---


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    with flushed_redis(12) as client:
        yield client


def test_instances_on_one_redis_share_the_count(redis_client: redis.Redis) -> None:
    rules = parse_rules("otp_send.key=3/600")
    first = RateLimits(RedisCounter(redis_client), rules)
    second = RateLimits(RedisCounter(redis_client), rules)
    first.check("otp_send", key=PHONE, ip=None)
    second.check("otp_send", key=PHONE, ip=None)
    first.check("otp_send", key=PHONE, ip=None)
    with pytest.raises(RateLimitedError):
        second.check("otp_send", key=PHONE, ip=None)


def test_redis_holds_a_hash_of_the_key_with_the_window_as_ttl(redis_client: redis.Redis) -> None:
    """Redis is not a place for phone numbers; counters must expire by themselves."""
    checks = RateLimits(RedisCounter(redis_client), parse_rules("otp_send.key=3/600"))
    checks.check("otp_send", key=PHONE, ip="10.1.2.3")
    stored = [key.decode() for key in redis_client.keys("*")]
    assert len(stored) == 2, stored
    assert all(key.startswith("iam:rl:otp_send.") for key in stored)
    assert not any(PHONE in key or "13800138000" in key or "10.1.2.3" in key for key in stored)
    for key in stored:
        assert 0 < redis_client.ttl(key) <= 600


def test_a_redis_that_is_down_still_counts_in_process(caplog: pytest.LogCaptureFixture) -> None:
    """Limits then hold per instance rather than not at all."""
    down = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), retries=0))
    try:
        checks = RateLimits(RedisCounter(down), parse_rules("otp_send.key=2/600"))
        with caplog.at_level(logging.WARNING, logger="iam.rate_limits"):
            checks.check("otp_send", key=PHONE, ip=None)
            checks.check("otp_send", key=PHONE, ip=None)
            with pytest.raises(RateLimitedError):
                checks.check("otp_send", key=PHONE, ip=None)
    finally:
        down.close()
    warnings = [r for r in caplog.records if r.name == "iam.rate_limits"]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "counting in-process" in warnings[0].getMessage()


# --- Redis, high limits: counted in batches ---


class CountingRedisCounter(RedisCounter):
    """Counts the round trips to Redis."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.sent: list[int] = []

    def _send(self, name: str, window: int, hits: int) -> int:
        self.sent.append(hits)
        return super()._send(name, window, hits)


def test_a_high_limit_is_sent_to_redis_a_batch_at_a_time(
    redis_client: redis.Redis, clock: FakeTime
) -> None:
    counter = CountingRedisCounter(redis_client)
    checks = RateLimits(counter, parse_rules("token.key=10000/60"))  # batches of 10
    for _ in range(25):
        checks.check("token", key="client-a", ip=None)
    assert counter.sent == [10, 10]  # 2 round trips for 25 requests, 5 hits not sent yet
    (stored,) = redis_client.keys("iam:rl:token.key:*")
    assert int(redis_client.get(stored)) == 20
    assert 0 < redis_client.ttl(stored) <= 60


def test_a_low_limit_is_sent_on_every_hit(redis_client: redis.Redis) -> None:
    counter = CountingRedisCounter(redis_client)
    checks = RateLimits(counter, parse_rules("token.key=999/60"))  # under 2 a batch: exact
    for _ in range(3):
        checks.check("token", key="client-a", ip=None)
    assert counter.sent == [1, 1, 1]


def test_instances_sharing_a_high_limit_refuse_within_a_batch_each_of_it(
    redis_client: redis.Redis, clock: FakeTime
) -> None:
    rules = parse_rules("token.key=2000/60")  # batches of 2
    instances = [RateLimits(RedisCounter(redis_client), rules) for _ in range(3)]
    admitted = 0
    for turn in range(3000):
        try:
            instances[turn % 3].check("token", key="client-a", ip=None)
        except RateLimitedError:
            continue
        admitted += 1
    assert 2000 <= admitted <= 2000 + 3 * 2  # the limit, passed by at most a batch per instance


def test_batched_counts_go_on_in_process_when_redis_is_down(clock: FakeTime) -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), retries=0))
    try:
        checks = RateLimits(RedisCounter(down), parse_rules("token.key=2000/60"))
        for _ in range(2000):
            checks.check("token", key="client-a", ip=None)
        with pytest.raises(RateLimitedError):
            checks.check("token", key="client-a", ip=None)
    finally:
        down.close()
