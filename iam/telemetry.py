"""Per request: a request id, one access-log line and the request metrics.

The request id comes from the load balancer's `X-Request-ID` when it is a plain token, or is
made here; it is answered in the same header and stamped on every log line written while the
request runs (`iam.logs.RequestIdFilter`), worker threads included. The access line names the
path without its query string: queries carry codes, states and tokens. Control characters a
path may carry are escaped by the log formatter (`iam.logs`), so a line stays one line.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iam import metrics
from iam.logs import request_id_var

REQUEST_ID_HEADER = "x-request-id"
#: What an incoming request id may look like to be kept (anything else is replaced).
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
#: The route label of requests that matched no route (404s), so scanners make no new series.
UNMATCHED = "unmatched"

access_log = logging.getLogger("iam.access")


def route_templates(routes: Iterable[BaseRoute], prefix: str = "") -> dict[object, str]:
    """Endpoint → path template (`/flow/{flow_id}`), through mounts: the route label."""
    templates: dict[object, str] = {}
    for route in routes:
        if isinstance(route, Route):
            templates.setdefault(route.endpoint, prefix + route.path)
        elif isinstance(route, Mount):
            if route.routes:
                templates.update(route_templates(route.routes, prefix + route.path))
            else:
                templates.setdefault(route.app, prefix + route.path)
    return templates


class TelemetryMiddleware:
    """Request id, access log and metrics for every HTTP request of `app`."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.templates = route_templates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or secrets.token_hex(12)
        reset = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = self._route_of(scope.get("endpoint"))
            method = scope["method"]
            count, latency = metrics.request_series(route, method, status)
            count.inc()
            latency.observe(elapsed)
            client = scope.get("client")
            access_log.info(
                '%s - "%s %s" %d %.1fms',
                client[0] if client else "-",
                method,
                scope["path"],
                status,
                elapsed * 1000,
            )
            request_id_var.reset(reset)

    def _route_of(self, endpoint: object) -> str:
        """The route label; a mount's router (not hashable) is the endpoint when no route
        under the mount matched."""
        try:
            return self.templates.get(endpoint, UNMATCHED)
        except TypeError:
            return UNMATCHED


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _ACCEPTED_ID.match(text) else None
    return None
