"""Who makes an admin call: an admin signed in to the console (its session cookie), or an admin
client with a bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from iam.db.models import Admin
from iam.db.unit import in_worker
from iam.oidc.endpoints import Oidc
from iam.oidc.tokens import admin_client_of
from iam.services import admins, clients

ADMIN_COOKIE = "iam_admin"
ADMIN_SCOPE = clients.ADMIN_SCOPE


@dataclass(frozen=True)
class Caller:
    """Who makes an admin call: an admin (console session) or an admin client (bearer token)."""

    name: str
    kind: str  # "admin" or "client"

    @property
    def actor(self) -> str:
        """How the audit trail names them."""
        return f"{self.kind}:{self.name}"


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def signed_in_admin(request: Request) -> Admin | None:
    cookie = request.cookies.get(ADMIN_COOKIE)
    return await in_worker(request.app.state.store, lambda db: admins.find_session(db, cookie))


async def bearer_caller(request: Request) -> Caller | None:
    """A live JWT access token of ours, from `client_credentials` (no user), with scope
    `iam:admin`, of a client flagged as admin."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    oidc: Oidc = request.app.state.oidc
    client_id = await oidc.runner(
        admin_client_of, token.strip(), oidc.keys, oidc.issuer, ADMIN_SCOPE
    )
    return Caller(client_id, "client") if client_id else None
