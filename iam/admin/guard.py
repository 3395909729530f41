"""The address allowlists in front of `/admin` and `/metrics`."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from iam.settings import IpNetwork


class AddressGuard:
    """An address allowlist, before anything else (`IAM_ADMIN_ALLOW_CIDRS` for `/admin`,
    `IAM_METRICS_ALLOW_CIDRS` for `/metrics`): a refused address gets 403 and no page, for
    every path under `prefix` (whether or not a route matches it)."""

    def __init__(self, app: ASGIApp, networks: Sequence[IpNetwork], prefix: str = "/admin") -> None:
        self.app = app
        self.networks = tuple(networks)
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "http" and under(scope.get("path", ""), self.prefix)
        if guarded and not self.allows(scope.get("client")):
            response = Response(status_code=403, headers={"cache-control": "no-store"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def allows(self, client: tuple[str, int] | None) -> bool:
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or below it."""
    return path == prefix or path.startswith(prefix + "/")
