"""Rate limits per key (a phone, a username, a client) and per client IP, in fixed windows.

Counted in Redis when `IAM_REDIS_URL` is set, so that every instance counts against one limit;
in this process otherwise. When Redis fails, counting goes on in this process (a warning is
logged): limits then hold per instance rather than not at all. Keys are hashed before they are
stored, so Redis never holds a phone number or a username.

High limits (the token endpoint's hundreds a second) are counted in Redis in batches of a
thousandth of the limit: one round trip per batch instead of one per request, and an instance
may pass such a limit by at most that much. Low limits (sign-in and SMS attempts) count every
hit at once, and an attempt that is refused spends nothing: its hits are given back.

IPv6 clients are counted per /64 network, the block one subscriber usually holds: otherwise
each of its 2^64 addresses would get a budget of its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError

from iam import metrics
from iam.errors import RateLimitedError
from iam.settings import Settings, SettingsError

log = logging.getLogger("iam.rate_limits")


@dataclass(frozen=True)
class Rule:
    """At most `limit` hits per `window` seconds."""

    limit: int
    window: int

    @classmethod
    def parse(cls, text: str) -> Rule:
        """`N/SECONDS`, both positive whole numbers (`ValueError` otherwise)."""
        count, _, seconds = text.strip().partition("/")
        if not (count.isdigit() and seconds.isdigit() and int(count) > 0 and int(seconds) > 0):
            raise ValueError(f"a rate limit is N/SECONDS with both above 0, not {text!r}")
        return cls(int(count), int(seconds))


#: The actions that are limited, each per key and per client IP. Override with
#: `IAM_RATE_LIMITS="token.ip=20000/60,otp_send.key=3/600"` (`token=...` sets both).
DEFAULT_RULES: dict[str, Rule] = {
    "otp_send.key": Rule(5, 600),  # per phone number and browser (besides 60 s apart, 10 a day)
    "otp_send.ip": Rule(20, 600),
    "otp_verify.key": Rule(10, 600),  # per phone number and browser, over all its codes
    "otp_verify.ip": Rule(30, 600),
    # Requests that must store state before the person is known: an authorization request
    # waiting for a login, a login sent to WeCom.
    "flow_start.key": Rule(60, 600),  # per browser
    "flow_start.ip": Rule(600, 600),
    # refused WeCom callbacks (each is audited): per corporation, and per address
    "callback_refused.key": Rule(100, 600),
    "callback_refused.ip": Rule(100, 600),
    # WeCom logins coming back (each costs WeCom API calls: user/get, department/get): per
    # corporation, a ceiling well below WeCom's 10,000 calls a minute per API, which blocks
    # the whole corporation when passed (45009); and per address (one office's NAT is many
    # people: the starts are limited per browser too, as `flow_start`).
    "upstream_login.key": Rule(2000, 60),
    "upstream_login.ip": Rule(300, 60),
    "admin_login.key": Rule(10, 600),  # per username (besides the lock-out after 5 failures)
    "admin_login.ip": Rule(30, 600),
    "token.key": Rule(30000, 60),  # per confidential client (500 a second)
    "token.ip": Rule(30000, 60),
}


def parse_rules(text: str) -> dict[str, Rule]:
    """The rule table with the overrides of `IAM_RATE_LIMITS` applied (`ValueError` on a bad
    or unknown name)."""
    rules = dict(DEFAULT_RULES)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals:
            raise ValueError(f"expected NAME=N/SECONDS, not {item!r}")
        names = [f"{name}.key", f"{name}.ip"] if "." not in name else [name]
        if any(n not in DEFAULT_RULES for n in names):
            known = sorted({n.partition(".")[0] for n in DEFAULT_RULES})
            raise ValueError(f"unknown rate limit {name!r} (known: {', '.join(known)})")
        rule = Rule.parse(value)
        rules.update(dict.fromkeys(names, rule))
    return rules


def rules_from(settings: Settings) -> dict[str, Rule]:
    """The rule table of `settings` (`SettingsError` naming IAM_RATE_LIMITS if it is bad)."""
    try:
        return parse_rules(settings.rate_limits)
    except ValueError as error:
        raise SettingsError(f"IAM_RATE_LIMITS: {error}") from None


#: A limit of N is counted in batches of N // BATCH_DIVISOR hits (when that is above 1).
BATCH_DIVISOR = 1000


class Counter(Protocol):
    def hit(self, name: str, window: int, batch: int = 1) -> int:
        """Count one hit on counter `name` (which names its window) and return the count; the
        counter is forgotten after `window` seconds. `batch`: how many hits may be counted
        locally before they are shared (a count short by fewer than that is good enough)."""
        ...

    def refund(self, name: str) -> None:
        """Take back one hit of a refused attempt (counted one at a time)."""
        ...


class MemoryCounter:
    """Counters in this process, for one instance (and when Redis fails)."""

    #: Past this many live counters, expired ones are dropped at the next hit.
    SWEEP_ABOVE = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def hit(self, name: str, window: int, batch: int = 1) -> int:
        """Exact whatever `batch` says: counting here costs nothing to share."""
        now = time.monotonic()
        with self._lock:
            if len(self._counts) > self.SWEEP_ABOVE:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, expires = self._counts.get(name, (0, now + window))
            if expires <= now:
                count, expires = 0, now + window
            self._counts[name] = (count + 1, expires)
            return count + 1

    def refund(self, name: str) -> None:
        with self._lock:
            count, expires = self._counts.get(name, (0, 0.0))
            if count > 0:
                self._counts[name] = (count - 1, expires)


_ADD = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RedisCounter:
    """Counters every instance shares: one round trip per hit (INCRBY, and EXPIRE when the
    counter is new), or per `batch` hits, whose count meanwhile is the shared count last seen
    plus the hits not sent yet."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._add = redis.register_script(_ADD)
        self._fallback = MemoryCounter()
        self._lock = threading.Lock()
        # counter name -> (shared count last seen, hits not sent yet, forget after)
        self._unsent: dict[str, tuple[int, int, float]] = {}

    def hit(self, name: str, window: int, batch: int = 1) -> int:
        if batch <= 1:
            return self._send(name, window, 1)
        now = time.monotonic()
        with self._lock:
            if len(self._unsent) > MemoryCounter.SWEEP_ABOVE:
                self._unsent = {k: v for k, v in self._unsent.items() if v[2] > now}
            seen, unsent, forget_after = self._unsent.get(name, (0, 0, now + window))
            unsent += 1
            if unsent < batch:
                self._unsent[name] = (seen, unsent, forget_after)
                return seen + unsent
            self._unsent[name] = (seen, 0, forget_after)
        shared = self._send(name, window, unsent)
        with self._lock:  # other threads may have sent or counted meanwhile
            latest, later, forget_after = self._unsent.get(name, (0, 0, forget_after))
            self._unsent[name] = (max(latest, shared), later, forget_after)
        return shared

    def refund(self, name: str) -> None:
        try:
            self._redis.decr(name)
        except RedisError as error:
            log.warning("Redis failed giving back a rate-limit hit: %s", error)
            self._fallback.refund(name)

    def _send(self, name: str, window: int, hits: int) -> int:
        try:
            return int(self._add(keys=[name], args=[window, hits]))
        except RedisError as error:
            log.warning("Redis failed counting a rate limit, counting in-process: %s", error)
            count = 0
            for _ in range(hits):
                count = self._fallback.hit(name, window)
            return count


class RateLimits:
    """`check(action, key=..., ip=...)`: count one attempt, or refuse it with
    `RateLimitedError` (whose `retry_after` is the end of the window that is full)."""

    def __init__(
        self, counter: Counter, rules: dict[str, Rule] | None = None, prefix: str = "iam:rl:"
    ) -> None:
        self._counter = counter
        self._rules = rules or DEFAULT_RULES
        self._prefix = prefix

    def check(self, action: str, *, key: str | None, ip: str | None) -> None:
        """Count the attempt against both limits; if either is full, give back what this
        attempt counted (it spends nothing) and refuse it."""
        counted: list[str] = []
        for kind, value in (("key", key), ("ip", ip_block(ip) if ip else None)):
            if not value:
                continue
            name = f"{action}.{kind}"
            rule = self._rules[name]
            now = int(time.time())
            window_start = now - now % rule.window
            hashed = hashlib.sha256(value.encode()).hexdigest()[:32]
            counter = f"{self._prefix}{name}:{hashed}:{window_start}"
            batch = rule.limit // BATCH_DIVISOR
            if self._counter.hit(counter, rule.window, batch) > rule.limit:
                if batch <= 1:
                    counted.append(counter)
                for hit in counted:
                    self._counter.refund(hit)
                metrics.RATE_LIMITED.labels(name).inc()
                wait = window_start + rule.window - now
                raise RateLimitedError(
                    f"Too many attempts. Try again in {wait} seconds.", wait, limit=name
                )
            if batch <= 1:
                counted.append(counter)


def ip_block(ip: str) -> str:
    """What one client is counted as: its IPv4 address, or the /64 of its IPv6 address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
