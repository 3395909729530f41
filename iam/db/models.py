"""The tables. Times are naive UTC; bearer values (tokens, codes, session ids) are stored as
SHA-256 digests; secrets (signing keys, WeCom app secrets) are encrypted with the secret key."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false, null

from iam.clock import epoch, utcnow
from iam.db.base import Base, JsonType
from iam.secretbox import digest


def new_id() -> str:
    return str(uuid.uuid4())


class UserRules:
    """What a user answers from its own values: for the model and for the hot path's frozen
    view of it (`iam.db.fastpath.UserView`) alike."""

    id: str
    status: str

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def get_user_id(self) -> str:
        return self.id


def _trigram(name: str, column: str, *, lower: bool = True) -> Index:
    """A PostgreSQL trigram index (pg_trgm, GIN) on `lower(column)` (or the column itself) for
    `LIKE '%...%'`: what the admin's searches run. PostgreSQL only (SQLite scans, fine at its
    sizes), and made by `migrations/versions/0016_scale_indexes.py` (0018 for the search text)
    where it could make the extension."""
    expression: Any = func.lower(text(column)).label(column) if lower else column
    return Index(
        name, expression, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}
    ).ddl_if(dialect="postgresql")


class User(Base, UserRules):
    """A core user: one per natural person. `id` is the `sub` of every token."""

    __tablename__ = "users"
    __table_args__ = (
        #: The users list's order and its keyset pages (`iam.services.users.search_users`).
        Index("ix_users_created_at_id", "created_at", "id"),
        #: The audit trail's person filter: a name, a phone's last digits.
        _trigram("ix_users_name_trgm", "name"),
        _trigram("ix_users_phone_trgm", "phone", lower=False),
        #: The users search (`iam.services.users`): three characters and more ...
        _trigram("ix_users_search_trgm", "search_text", lower=False),
        #: ... and one or two: the rows holding each of the needle's characters.
        Index(
            "ix_users_search_chars",
            func.string_to_array(text("search_text"), null()),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    phone_verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    #: What the admin's search reads, kept by the database (triggers of migration 0018): the
    #: name, email, phone and every link's `provider_user_id`, lowercased, each after U+001F.
    search_text: Mapped[str] = mapped_column(Text, server_default="", deferred=True)


class IdentityLink(Base):
    """One identity at an outside provider, bound to exactly one core user.

    `provider_user_key` is the provider's normalised form of the id (for WeCom the userid part is
    case-insensitive), and it is what is unique; `provider_user_id` keeps the spelling as read.
    """

    __tablename__ = "identity_links"
    __table_args__ = (
        UniqueConstraint("provider", "provider_user_key"),
        UniqueConstraint("provider", "provider_user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_user_id: Mapped[str] = mapped_column(String(255))
    provider_user_key: Mapped[str] = mapped_column(String(255))
    link_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Why and when the link stopped working (`left`: the member left the corporation or was
    #: disabled there); None while active.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(64))


class DirectoryEvent(Base):
    """A change event of a corporation's directory, as WeCom sent it (decrypted, its simple
    fields), kept once: WeCom sends an event again when no answer came within 5 s, and the
    digest of its ciphertext is unique. `handled_at` and `outcome` say what came of it."""

    __tablename__ = "wecom_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    corp_id: Mapped[str] = mapped_column(ForeignKey("wecom_corps.corp_id", ondelete="CASCADE"))
    ciphertext_hash: Mapped[str] = mapped_column(String(64), unique=True)
    change_type: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(JsonType)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    outcome: Mapped[str | None] = mapped_column(String(255))


class WeComCorp(Base):
    """A WeCom corporation and its self-built app; the app secret is encrypted, and so are the
    app's callback settings (Token and EncodingAESKey; null until set, and events are received
    only once both are)."""

    __tablename__ = "wecom_corps"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agent_id: Mapped[int] = mapped_column(BigInteger)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    callback_token_encrypted: Mapped[str | None] = mapped_column(Text)
    encoding_aes_key_encrypted: Mapped[str | None] = mapped_column(Text)
    trust_mobile: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The last connection test (`iam corps test`, the console's button): when, whether it
    #: passed (None: never tested), and what it found wrong (a list of {"reason", "params"}).
    last_tested_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_problems: Mapped[list[Any] | None] = mapped_column(JsonType)
    #: Left off the login page because its last test failed: a passing test, or an admin who
    #: enables it explicitly, shows it again. A hidden corporation still syncs and takes logins
    #: that reach it another way (a workbench link).
    hidden_by_test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


#: The client authentication methods that send the secret itself (RFC 6749 2.3.1).
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class ClientRules(ClientMixin):
    """What Authlib asks of a client (its `ClientMixin`), answered from the client's own values:
    for the model and for the hot path's frozen view of it (`iam.db.fastpath.ClientView`)
    alike, so both follow one set of rules."""

    client_id: str
    is_public: bool
    secret_hash: str | None
    previous_secret_hash: str | None
    redirect_uris: Sequence[str]
    post_logout_redirect_uris: Sequence[str]
    grant_types: Sequence[str]
    allowed_scopes: str
    token_endpoint_auth_method: str

    # --- authlib ClientMixin (rfc6749/models.py) ---
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 3.1.2.3: a default only when exactly one is registered.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if every part of it is allowed (None means invalid_scope);
        the client's whole allowed set when none was requested (RFC 6749 3.3)."""
        allowed = self.allowed_scopes.split()
        if not scope:
            return " ".join(allowed)
        requested = list(dict.fromkeys(scope.split()))
        return " ".join(requested) if set(requested) <= set(allowed) else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match only

    def check_client_secret(self, client_secret: str) -> bool:
        offered = digest(client_secret)
        matches = [
            secrets.compare_digest(offered, stored)
            for stored in (self.secret_hash, self.previous_secret_hash)
            if stored
        ]
        return any(matches)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Only the registered method; the two ways of sending a secret are one method."""
        if self.is_public:
            return method == "none"
        registered = self.token_endpoint_auth_method or SECRET_AUTH_METHODS[0]  # unsaved: default
        if registered in SECRET_AUTH_METHODS:
            return method in SECRET_AUTH_METHODS
        return method == registered

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}


class Client(Base, ClientRules):
    """A relying party. Secrets are SHA-256 digests of 256-bit random values; during a rotation
    the previous one stays valid until retired (two active at most)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    #: May call the admin API with a `client_credentials` token carrying scope `iam:admin`.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: A `client_secret_jwt` client's current and previous secret, encrypted: the HMAC of its
    #: assertions is keyed by the secret itself. None for every other client.
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    redirect_uris: Mapped[list[str]] = mapped_column(JsonType, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JsonType, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JsonType, default=list)
    allowed_scopes: Mapped[str] = mapped_column(String(500), default="openid profile")
    context_policy: Mapped[str] = mapped_column(String(16), default="none")
    context_claim: Mapped[str] = mapped_column(String(255), default="wecom_context")
    access_token_ttl: Mapped[int] = mapped_column(Integer, default=600)
    id_token_ttl: Mapped[int] = mapped_column(Integer, default=3600)
    refresh_token_ttl: Mapped[int] = mapped_column(Integer, default=30 * 24 * 3600)
    #: Where a sign-in that starts here (a WeCom workbench link, `/launch/...`) sends the browser
    #: for the app to make its own authorization request (OIDC Core 4); None: no such links.
    initiate_login_uri: Mapped[str | None] = mapped_column(String(2000))
    #: Where the app receives logout tokens when a session it has tokens from ends (OIDC
    #: Back-Channel Logout 1.0); None: the app is not told.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2000))
    #: How the client proves itself at /token, /revoke and /introspect (RFC 7591 2): `none`
    #: (public), `client_secret_basic` or `client_secret_post` (either is taken),
    #: `client_secret_jwt` (RFC 7523, an HMAC keyed by the secret), or `private_key_jwt` (RFC
    #: 7523; no secret), whose public keys are `jwks` or at `jwks_uri`.
    token_endpoint_auth_method: Mapped[str] = mapped_column(
        String(32), default="client_secret_basic", server_default="client_secret_basic"
    )
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    #: Origins (`scheme://host[:port]`) a single-page app calls the token endpoints from, besides
    #: its redirect URIs' origins: they get CORS answers (`iam.oidc.cors`).
    allowed_origins: Mapped[list[str]] = mapped_column(JsonType, default=list, server_default="[]")
    #: What the app's access tokens are signed with: RS256 (the default, widest support) or
    #: ES256 (cheaper to sign; the app's resource servers must support it). ID tokens are
    #: RS256 whatever this says.
    access_token_signing_alg: Mapped[str] = mapped_column(
        String(10), default="RS256", server_default="RS256"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SsoSession(Base):
    """A signed-in browser. `id` is the public `sid`; the cookie holds a secret whose digest is
    `token_hash`, so neither a log line with the sid nor a database dump can ride the session."""

    __tablename__ = "sso_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amr: Mapped[list[str]] = mapped_column(JsonType, default=list)
    auth_time: Mapped[datetime] = mapped_column(DateTime)
    context_link_id: Mapped[str | None] = mapped_column(
        ForeignKey("identity_links.id", ondelete="SET NULL")
    )
    #: When the person last chose the context in the selector: a choice made after an
    #: authorization request started answers that request's `prompt=select_account`.
    context_set_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))


class PendingAuthorization(Base):
    """An authorization request that waits for the person (login, later binding or selection).

    Bound to the browser that started it (`browser_hash`), so a leaked flow id is useless."""

    __tablename__ = "pending_authorizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    params: Mapped[list[Any]] = mapped_column(JsonType)
    #: The person cancelled (selector, linking offer): the request ends with access_denied.
    denied_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class UpstreamLogin(Base):
    """A login sent to an outside provider: the digest of the `state` we gave it, bound to the
    browser that left, single use, 10 minutes; and the authorization request it serves."""

    __tablename__ = "upstream_logins"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # digest(state)
    browser_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    connector_id: Mapped[str] = mapped_column(String(64))
    flow_id: Mapped[str | None] = mapped_column(String(64))
    #: Set when a signed-in person asked to link another identity: a new one is bound to them.
    link_user_id: Mapped[str | None] = mapped_column(String(36))
    #: Where to go once signed in when no authorization request waits (a workbench launch).
    return_to: Mapped[str | None] = mapped_column(String(4096))
    #: The second, consented round that asks the provider for private data (WeCom's mobile).
    private_round: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class PendingBinding(Base):
    """An outside identity with no link yet, waiting for the person to prove a phone number
    (on-demand binding). Found by the digest of a random token, for this browser only."""

    __tablename__ = "pending_bindings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # digest(token)
    browser_hash: Mapped[str] = mapped_column(String(64))
    identity: Mapped[dict[str, Any]] = mapped_column(JsonType)
    flow_id: Mapped[str | None] = mapped_column(String(64))
    #: Where to go once bound when no authorization request waits (a workbench launch).
    return_to: Mapped[str | None] = mapped_column(String(4096))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class AuthorizationCodeRules(AuthorizationCodeMixin):
    """What Authlib asks of a code (its `AuthorizationCodeMixin`), from the code's own values:
    for the model and for the hot path's record of it (`iam.db.fastpath.CodeRecord`) alike."""

    redirect_uri: str | None
    scope: str
    nonce: str | None
    auth_time: datetime
    amr: Sequence[str]

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return epoch(self.auth_time)

    def get_amr(self) -> list[str]:
        return list(self.amr)

    def get_acr(self) -> None:
        return None


class AuthorizationCode(Base, AuthorizationCodeRules):
    """A code: 60 s, single use. Its `id` is the family id of every token issued from it."""

    __tablename__ = "authorization_codes"
    #: The nonce check of every authorization request (`exists_nonce`) looks codes up by these.
    __table_args__ = (Index("ix_authorization_codes_client_id_nonce", "client_id", "nonce"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: As sent in the authorization request; None when it was left out (one registered URI).
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    sid: Mapped[str | None] = mapped_column(String(36))
    auth_time: Mapped[datetime] = mapped_column(DateTime)
    amr: Mapped[list[str]] = mapped_column(JsonType, default=list)
    context_link_id: Mapped[str | None] = mapped_column(
        ForeignKey("identity_links.id", ondelete="SET NULL")
    )
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime)


class TokenRules(TokenMixin):
    """Authlib's view of an access or refresh token row (both have these columns): for the
    models and for the hot path's record of an access token (`fastpath.AccessTokenRecord`)."""

    client_id: str
    scope: str
    expires_at: datetime
    revoked_at: datetime | None

    def check_client(self, client: ClientRules) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, epoch(self.expires_at) - epoch(utcnow()))

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class AccessToken(Base, TokenRules):
    """The record of an issued JWT access token, by `jti`: what revocation and introspection
    consult. `user_id` is empty for `client_credentials`."""

    __tablename__ = "access_tokens"
    __table_args__ = (Index("ix_access_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[str | None] = mapped_column(String(36), index=True)
    sid: Mapped[str | None] = mapped_column(String(36), index=True)
    scope: Mapped[str] = mapped_column(String(500), default="")
    #: The identity context the token was issued with (userinfo repeats it); None: none.
    context_link_id: Mapped[str | None] = mapped_column(
        ForeignKey("identity_links.id", ondelete="SET NULL")
    )
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class RefreshToken(Base, TokenRules):
    """An opaque refresh token. Every use rotates it; using a rotated one again revokes the
    whole family (every access and refresh token descended from the same code)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(500))
    sid: Mapped[str | None] = mapped_column(String(36), index=True)
    auth_time: Mapped[datetime] = mapped_column(DateTime)
    amr: Mapped[list[str]] = mapped_column(JsonType, default=list)
    context_link_id: Mapped[str | None] = mapped_column(
        ForeignKey("identity_links.id", ondelete="SET NULL")
    )
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    def is_revoked(self) -> bool:
        """Revoked, or rotated: a used refresh token is dead (presenting it again revokes its
        family), so introspection must not call it active."""
        return self.revoked_at is not None or self.rotated_at is not None


class SigningKey(Base):
    """A token signing key. The newest unretired key signs; a retired key stays published in
    JWKS until `publish_until`, when every token it signed has expired."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)
    publish_until: Mapped[datetime | None] = mapped_column(DateTime)


class OtpChallenge(Base):
    """An SMS one-time code, stored as a keyed digest; dead after 5 wrong tries or 5 minutes.

    Bound to the browser that asked for it (`browser_hash`): only that browser can check it, and
    its limits are counted per number and browser, so a stranger can neither guess at the
    owner's code nor spend the owner's allowance."""

    __tablename__ = "otp_challenges"
    __table_args__ = (
        Index(
            "ix_otp_challenges_phone_browser_hash_created_at", "phone", "browser_hash", "created_at"
        ),
        # the code step of a page: this browser's latest code for a purpose (`otp.code_step`)
        Index(
            "ix_otp_challenges_browser_hash_purpose_created_at",
            "browser_hash",
            "purpose",
            "created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    phone: Mapped[str] = mapped_column(String(20))
    browser_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime)


class Admin(Base):
    """An admin console account; the password is an argon2 hash."""

    __tablename__ = "admins"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AdminSession(Base):
    """A signed-in admin console browser: its own cookie, apart from end-user SSO sessions.
    Only the digest of the cookie value is stored."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # digest(cookie value)
    admin_id: Mapped[str] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    ip: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    """Append-only: database triggers refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        #: The trail of one app, one person, one event (or events of a prefix, `login.`: the
        #: pattern operators serve LIKE whatever the collation), newest first: the admin
        #: console's filters and their keyset pages.
        Index("ix_audit_events_client_id_id", "client_id", "id"),
        Index("ix_audit_events_user_id_id", "user_id", "id"),
        Index(
            "ix_audit_events_event_id",
            "event",
            "id",
            postgresql_ops={"event": "varchar_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    user_id: Mapped[str | None] = mapped_column(String(36))
    client_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class BackchannelLogout(Base):
    """One logout token to deliver to one app when a session it has tokens from ended (OIDC
    Back-Channel Logout 1.0): written in the unit that ends the session, sent after it commits
    by the worker (`iam.oidc.backchannel`), which claims a due row by moving `next_attempt_at`
    (a lease), so two instances never send it both. `status`: pending, sent, given_up."""

    __tablename__ = "backchannel_logouts"
    __table_args__ = (
        UniqueConstraint("sid", "client_id", name="uq_backchannel_logouts_sid_client_id"),
        Index("ix_backchannel_logouts_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    sid: Mapped[str] = mapped_column(String(36))
    #: The person's `sub` (kept here: the person may be removed before the token is sent).
    user_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
