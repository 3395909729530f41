"""Client (relying party) registration and secret rotation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import AccessToken, Client
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.secretbox import digest
from iam.services import audit
from iam.settings import is_loopback_host

CONTEXT_POLICIES = ("none", "optional", "required")
SUPPORTED_SCOPES = ("openid", "profile", "email", "phone", "offline_access")
#: The admin API's scope: only for clients flagged as admin, only by `client_credentials`.
ADMIN_SCOPE = "iam:admin"
DEFAULT_SCOPES = "openid profile email phone offline_access"
_CLAIM_NAME = re.compile(r"^[A-Za-z0-9_:/.\-#]{1,255}$")
RESERVED_CLAIMS = frozenset(
    [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        "c_hash",
        "scope",
        "client_id",
        "typ",
        "name",
        "email",
        "email_verified",
        "phone_number",
        "phone_number_verified",
    ]
)


@dataclass(frozen=True)
class RegisteredClient:
    """A client and, right after creation or rotation only, its plaintext secret."""

    client: Client
    client_secret: str | None


def check_redirect_uri(uri: str, field: str = "redirect_uri") -> str:
    """Absolute, no fragment, no wildcard; https unless loopback (RFC 8252 7.3 allows http)."""
    parts = urlsplit(uri or "")
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise ValidationError(field, f"{field} must be an absolute URL: {uri!r}")
    if parts.fragment or "#" in uri:
        raise ValidationError(field, f"{field} must not contain a fragment: {uri!r}")
    if "*" in uri:
        raise ValidationError(field, f"{field} must not contain a wildcard: {uri!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValidationError(field, f"{field} must use https unless on loopback: {uri!r}")
    if parts.scheme not in ("http", "https"):
        raise ValidationError(field, f"{field} must be an http(s) URL: {uri!r}")
    if len(uri) > 2000:
        raise ValidationError(field, f"{field} is too long")
    return uri


def check_scopes(scopes: str, *, admin: bool = False) -> str:
    requested = list(dict.fromkeys(scopes.split()))
    allowed = (*SUPPORTED_SCOPES, ADMIN_SCOPE) if admin else SUPPORTED_SCOPES
    unknown = [scope for scope in requested if scope not in allowed]
    if unknown:
        raise ValidationError("scopes", f"Unsupported scopes: {' '.join(unknown)}")
    return " ".join(requested)


def _new_client_id() -> str:
    return "c_" + secrets.token_hex(12)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def create_client(
    store: Store,
    name: str,
    redirect_uris: Sequence[str],
    *,
    context_policy: str = "none",
    context_claim: str | None = None,
    public: bool = False,
    admin: bool = False,
    post_logout_redirect_uris: Sequence[str] = (),
    scopes: str = DEFAULT_SCOPES,
    client_id: str | None = None,
) -> RegisteredClient:
    """Register a client. Confidential clients also get `client_credentials`."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError("name", "A client name of 1 to 200 characters is required.")
    if not redirect_uris:
        raise ValidationError("redirect_uri", "At least one redirect URI is required.")
    uris = [check_redirect_uri(uri) for uri in dict.fromkeys(redirect_uris)]
    logout_uris = [
        check_redirect_uri(uri, "post_logout_redirect_uri")
        for uri in dict.fromkeys(post_logout_redirect_uris)
    ]
    if context_policy not in CONTEXT_POLICIES:
        raise ValidationError(
            "context_policy", f"context_policy must be one of {', '.join(CONTEXT_POLICIES)}"
        )
    claim = context_claim or "wecom_context"
    if not _CLAIM_NAME.match(claim) or claim in RESERVED_CLAIMS:
        raise ValidationError("context_claim", f"Not a usable claim name: {claim!r}")
    if client_id is not None and not re.fullmatch(r"[A-Za-z0-9_\-.]{3,64}", client_id):
        raise ValidationError("client_id", "client_id must be 3-64 letters, digits, _ - .")
    if admin and public:
        raise ValidationError("admin", "An admin client must be confidential (client_credentials).")
    grant_types = ["authorization_code", "refresh_token"]
    if not public:
        grant_types.append("client_credentials")
    secret = None if public else _new_secret()
    client = Client(
        client_id=client_id or _new_client_id(),
        name=name,
        is_public=public,
        is_admin=admin,
        secret_hash=digest(secret) if secret else None,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        grant_types=grant_types,
        allowed_scopes=check_scopes(f"{scopes} {ADMIN_SCOPE}" if admin else scopes, admin=admin),
        context_policy=context_policy,
        context_claim=claim,
    )
    with store() as session:
        taken = ConflictError(f"client_id {client.client_id!r} is taken.")
        if session.get(Client, client.client_id) is not None:
            raise taken
        session.add(client)
        audit.record(session, "client.created", client_id=client.client_id, actor="cli")
        try:
            session.commit()
        except IntegrityError:  # registered meanwhile by someone else
            raise taken from None
    return RegisteredClient(client, secret)


def _find(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFoundError(f"No client {client_id!r}.")
    return client


def get_client(store: Store, client_id: str) -> Client:
    with store() as session:
        return _find(session, client_id)


def list_clients(store: Store) -> list[Client]:
    with store() as session:
        return list(session.scalars(select(Client).order_by(Client.created_at)))


def rotate_secret(store: Store, client_id: str, keep_previous: bool = True) -> RegisteredClient:
    """A new secret; the current one stays valid as the previous until retired."""
    with store() as session:
        client = _find(session, client_id)
        if client.is_public:
            raise ValidationError("client_id", "A public client has no secret to rotate.")
        secret = _new_secret()
        client.previous_secret_hash = client.secret_hash if keep_previous else None
        client.secret_hash = digest(secret)
        client.secret_rotated_at = utcnow()
        audit.record(session, "client.secret_rotated", client_id=client_id, actor="cli")
        session.commit()
        return RegisteredClient(client, secret)


def delete_client(store: Store, client_id: str) -> None:
    with store() as session:
        session.delete(_find(session, client_id))
        audit.record(session, "client.deleted", client_id=client_id, actor="cli")
        session.commit()


def admin_client_of_token(store: Store, jti: str) -> str | None:
    """The admin client an access token (by `jti`) was issued to, while the token is live and
    the client still flagged as admin; None otherwise."""
    if not jti or len(jti) > 64:
        return None
    with store() as session:
        row = session.execute(
            select(AccessToken, Client)
            .join(Client, Client.client_id == AccessToken.client_id)
            .where(AccessToken.jti == jti)
        ).first()
        if row is None:
            return None
        token, client = row
        if token.is_revoked() or token.is_expired() or not client.is_admin:
            return None
        return client.client_id
