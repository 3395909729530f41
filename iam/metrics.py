"""Prometheus metrics: what the server counts, and how `/metrics` shows it.

The metric objects are declared once at import, as prometheus_client expects: every layer
(pages, services, the WeCom connector) counts into the same few names without having them
handed down. With `iam serve --workers N` the workers share one directory
(`PROMETHEUS_MULTIPROC_DIR`, set by the CLI before the workers start) and `/metrics` adds
up every worker's values, so one scrape of an instance tells the whole instance.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

#: The environment variable prometheus_client reads for multi-process mode.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Request latency buckets, in seconds: a login page is milliseconds, a WeCom call can be 5 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "iam_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "iam_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
LOGINS = Counter(
    "iam_logins",
    "Sign-in attempts, by method (sms, wecom, admin) and result (success, failure).",
    ["method", "result"],
)
TOKENS = Counter("iam_tokens_issued", "Tokens issued at /token, by grant type.", ["grant"])
WECOM_CALLS = Counter(
    "iam_wecom_api_calls",
    "Calls of the WeCom server API, by endpoint and errcode (or timeout, unreachable, and '-'"
    " for an answer without one).",
    ["endpoint", "errcode"],
)
CACHE = Counter(
    "iam_cache_requests",
    "Lookups in the server's caches, by cache and result (hit, miss).",
    ["cache", "result"],
)
RATE_LIMITED = Counter(
    "iam_rate_limited", "Requests refused with 429, by rate-limit rule.", ["rule"]
)


@functools.cache
def _cache_counter(cache: str, hit: bool) -> Any:
    return CACHE.labels(cache, "hit" if hit else "miss")


def count_cache(cache: str, hit: bool) -> None:
    _cache_counter(cache, hit).inc()  # the labelled child is looked up once (on the hot path)


@functools.cache
def request_series(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one route, method and status (bounded:
    routes are templates, statuses a few)."""
    return REQUESTS.labels(route, method, str(status)), REQUEST_SECONDS.labels(route, method)


def exposition() -> tuple[bytes, str]:
    """The text `/metrics` answers, and its content type: every worker's values in
    multi-process mode, this process's otherwise (with its process and Python collectors)."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
