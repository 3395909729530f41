"""The apps one SSO session signed into: what the server's own home page offers to go back to
after a sign-in that ended there (a person who followed a link home instead of to the app)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from iam.db.models import AccessToken, AuthorizationCode, Client, RefreshToken
from iam.services.clients import browser_origin, initiate_login_url


@dataclass(frozen=True)
class AppLink:
    """An app by its name, and where a browser opens it (None: no web address to offer)."""

    name: str
    href: str | None


def apps_of_session(db: Session, sid: str, issuer: str) -> list[AppLink]:
    """The apps that got a code or a token from session `sid`, by name: each linked to its
    `initiate_login_uri` (with `iss`, OIDC Core 4: it starts the app's own sign-in) when it
    has one, else to the origin of its first web redirect URI."""
    client_ids = union(
        *(
            select(table.client_id).where(table.sid == sid)
            for table in (AuthorizationCode, AccessToken, RefreshToken)
        )
    ).subquery()
    found = db.scalars(
        select(Client).where(Client.client_id.in_(select(client_ids.c.client_id)))
    ).all()
    return sorted((_link(db, client, issuer) for client in found), key=lambda app: app.name)


def _link(db: Session, client: Client, issuer: str) -> AppLink:
    if client.initiate_login_uri:
        return AppLink(client.name, initiate_login_url(db, client.client_id, issuer))
    origins = (browser_origin(uri) for uri in client.redirect_uris)
    origin = next((origin for origin in origins if origin), None)
    return AppLink(client.name, f"{origin}/" if origin else None)
