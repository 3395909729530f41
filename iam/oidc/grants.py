"""Grant hooks: each one short, each a call to storage, each citing its spec."""

from __future__ import annotations

import copy
import secrets
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import OpenIDCode, OpenIDToken
from authlib.oidc.core.grants.util import create_half_hash
from joserfc import jwt
from sqlalchemy import select

from iam.clock import epoch, utcnow
from iam.db import fastpath
from iam.db.fastpath import ClientView, CodeRecord, UserView
from iam.db.models import RefreshToken
from iam.db.unit import current_connection, current_session
from iam.oidc.claims import context_claims, user_claims
from iam.oidc.context import Principal
from iam.oidc.keys import KeyRing
from iam.secretbox import digest
from iam.services.clients import ADMIN_SCOPE
from iam.services.sessions import OFFLINE_ACCESS
from iam.services.signing_keys import ALGORITHMS

CODE_LIFETIME = timedelta(seconds=60)
UNREGISTERED_REDIRECT_URI = "The redirect URI is not registered for this client."


class TokenFamilyCompromisedError(InvalidGrantError):
    """A used code or rotated refresh token came back: every token of its family is revoked
    (RFC 6749 4.1.2, RFC 9700 4.14.2). The server does that after rolling back."""

    def __init__(self, family_id: str, description: str) -> None:
        super().__init__(description=description)
        self.family_id = family_id


def _principal_from(
    row: CodeRecord | RefreshToken, family_id: str, user: UserView | None
) -> Principal | None:
    if user is None or not user.is_active:
        return None
    return Principal(
        user=user,
        auth_time=row.auth_time,
        amr=tuple(row.amr),
        sid=row.sid,
        context_link_id=row.context_link_id,
        family_id=family_id,
    )


def _require_context(client: ClientView, principal: Principal) -> None:
    """A `required` app's tokens carry an identity context, or are not issued: the identity the
    grant was for may have been unlinked or disabled since."""
    if client.context_policy == "required" and not context_claims(
        client, principal.context_link_id
    ):
        raise InvalidGrantError("The identity context of this grant is no longer active.")


def without_admin_scope(scope: str | None) -> str:
    """A scope granted to an app on a person's behalf: never `iam:admin`. The admin API's scope
    is a client's own credential (`client_credentials` only); a token from a person's sign-in
    to an admin client must not become one (issue #11)."""
    return " ".join(s for s in (scope or "").split() if s != ADMIN_SCOPE)


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) with S256 only; required for public clients, `plain` refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        challenge = request.payload.data.get("code_challenge")
        method = request.payload.data.get("code_challenge_method")
        if not challenge and request.client.is_public:
            raise InvalidRequestError("PKCE is required: send code_challenge with S256.")
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: ClientView) -> str:
        """Authlib's check, with a fixed description: Authlib's repeats the URI, and cannot be
        built at all for one with a `"`, a `\\` or a character outside ASCII."""
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri:
            default = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri
            checked: str = default(request, client)
            return checked
        if not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError(UNREGISTERED_REDIRECT_URI)
        return str(redirect_uri)

    def validate_requested_scope(self) -> None:
        """In an OpenID request, scope values we do not know, or this app was not given, are
        left out rather than refused (OIDC Core 5.4: unknown ones SHOULD be ignored; generic
        apps ask for `address` or `groups`; RFC 6749 3.3: the AS may grant less). The token
        response's `scope` says what was granted. A plain OAuth request stays strict."""
        payload = self.request.payload
        requested = (payload.scope or "").split()
        if "openid" in requested:
            client: ClientView = self.request.client
            given = set(client.allowed_scopes.split()) - {ADMIN_SCOPE}
            payload.data["scope"] = " ".join(s for s in dict.fromkeys(requested) if s in given)
        super().validate_requested_scope()

    def validate_authorization_request(self) -> str:
        """Authlib's checks; then `iam:admin` leaves the granted scope (the default, every
        allowed scope, included): the AS may grant less than asked (RFC 6749 3.3). Nothing else
        left is invalid_scope (4.1.2.1), never "the default" again."""
        redirect_uri: str = super().validate_authorization_request()
        self.request.scope = without_admin_scope(self.request.scope)
        if not self.request.scope:
            raise InvalidScopeError(redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        """288 random bits, 48 characters (Authlib draws its 48 one character at a time)."""
        return secrets.token_urlsafe(36)

    def save_authorization_code(self, code: str, request: Any) -> None:
        principal: Principal = request.user
        now = utcnow()
        fastpath.change(
            current_connection(),
            fastpath.INSERT_CODE,
            {
                "code_hash": digest(code),
                "client_id": request.client.client_id,
                "user_id": principal.user.id,
                # Only what was sent: the token request must repeat it then (RFC 6749 4.1.3).
                "redirect_uri": request.payload.redirect_uri,
                "scope": request.scope,
                "nonce": request.payload.data.get("nonce"),
                "code_challenge": request.payload.data.get("code_challenge"),
                "code_challenge_method": request.payload.data.get("code_challenge_method"),
                "sid": principal.sid,
                "auth_time": principal.auth_time,
                "amr": list(principal.amr),
                "context_link_id": principal.context_link_id,
                "issued_at": now,
                "expires_at": now + CODE_LIFETIME,
            },
        )

    #: The user of the code this request presents, read with the code (one statement, not two).
    code_user: UserView | None = None

    def query_authorization_code(self, code: str, client: ClientView) -> CodeRecord | None:
        found = fastpath.code_and_user(current_connection(), digest(code))
        if found is None:
            return None
        row, user = found
        if row.client_id != client.client_id:
            return None
        if row.consumed_at is not None:
            raise TokenFamilyCompromisedError(row.id, "The code was already used.")
        if row.expires_at <= utcnow():
            return None
        self.code_user = user
        return row

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        """Consume, don't delete: a replay must still find the code to revoke its tokens."""
        consumed = fastpath.change(
            current_connection(),
            fastpath.CONSUME_CODE,
            {"code_id": authorization_code.id, "now": utcnow()},
        )
        if consumed != 1:
            raise TokenFamilyCompromisedError(authorization_code.id, "The code was already used.")

    def authenticate_user(self, authorization_code: CodeRecord) -> Principal | None:
        principal = _principal_from(authorization_code, authorization_code.id, self.code_user)
        if principal is not None:
            _require_context(self.request.client, principal)
        return principal


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotating refresh tokens (RFC 9700 4.14.2): each use gives a new one; reuse of a rotated
    one revokes the family."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        row: RefreshToken | None = current_session().scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(refresh_token))
        )
        if row is None or row.client_id != self.request.client.client_id:
            return None
        if row.revoked_at is not None or row.expires_at <= utcnow():
            return None
        if row.rotated_at is not None:
            raise TokenFamilyCompromisedError(row.family_id, "The refresh token was already used.")
        if OFFLINE_ACCESS not in row.scope.split() and not _session_is_live(row.sid):
            return None  # without offline_access, refresh ends with the session (OIDC Core 11)
        return row

    def authenticate_user(self, refresh_token: RefreshToken) -> Principal:
        principal = _principal_from(
            refresh_token,
            refresh_token.family_id,
            fastpath.user_by_id(current_connection(), refresh_token.user_id),
        )
        if principal is None:  # the user was disabled or deleted: the grant is no longer valid
            raise InvalidGrantError("The user of this refresh token is no longer active.")
        _require_context(self.request.client, principal)
        return principal

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        rotated = fastpath.change(
            current_connection(),
            fastpath.ROTATE_REFRESH_TOKEN,
            {"token_id": refresh_token.id, "now": utcnow()},
        )
        if rotated != 1:
            raise TokenFamilyCompromisedError(
                refresh_token.family_id, "The refresh token was already used."
            )


def _session_is_live(sid: str | None) -> bool:
    if sid is None:
        return False
    found = fastpath.first(
        current_connection(), fastpath.LIVE_SESSION, {"sid": sid, "now": utcnow()}
    )
    return found is not None


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 4.4, for confidential clients; `openid` makes no sense without a user."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if "openid" in (self.request.payload.scope or "").split():
            raise InvalidRequestError("The openid scope needs a user; client_credentials has none.")


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """JWT access tokens (RFC 9068), signed with the app's algorithm (RS256 by default, or
    ES256) by the key ring's active key of that algorithm."""

    def __init__(self, issuer: str, keys: KeyRing) -> None:
        super().__init__(
            issuer,
            alg=keys.algorithm,
            refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: client.access_token_ttl,
        )
        self.keys = keys
        #: Authlib reads the algorithm (`alg`) and the key (`get_jwks`) from the generator: one
        #: generator per algorithm, made once, shared by every request.
        self.signers = {alg: self._signing_with(alg) for alg in ALGORITHMS}

    def _signing_with(self, alg: str) -> AccessTokenGenerator:
        if alg == self.alg:
            return self
        signer = copy.copy(self)
        signer.alg = alg
        return signer

    def get_jwks(self) -> Any:
        return self.keys.current().signing_for(self.alg)

    def access_token_generator(
        self, client: ClientView, grant_type: str, user: Any, scope: str
    ) -> str:
        """Authlib's token, by the generator of the app's algorithm."""
        signer = self.signers[client.access_token_signing_alg]
        token: str = JWTBearerTokenGenerator.access_token_generator(
            signer, client, grant_type, user, scope
        )
        return token

    def get_jti(self, client: ClientView, grant_type: str, user: Any, scope: str) -> str:
        return secrets.token_urlsafe(16)  # 128 random bits

    def get_auth_time(self, user: Principal | None) -> int | None:
        return epoch(user.auth_time) if user else None

    def get_amr(self, user: Principal | None) -> list[str] | None:
        return list(user.amr) if user else None

    def get_extra_claims(
        self, client: ClientView, grant_type: str, user: Principal | None, scope: str
    ) -> dict[str, Any]:
        return context_claims(client, user.context_link_id) if user else {}

    def client_credentials_scope(self, client: ClientView, scope: str | None) -> str:
        return scope or " ".join(s for s in client.allowed_scopes.split() if s != "openid")

    def generate(
        self,
        grant_type: str,
        client: ClientView,
        user: Any = None,
        scope: Any = None,
        expires_in: Any = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if grant_type == "client_credentials":
            scope = self.client_credentials_scope(client, scope)
        else:  # a person's grant (code, refresh), also one from before iam:admin was left out
            scope = without_admin_scope(scope)
            if not scope:  # never fall back to the client's default, which may hold iam:admin
                raise InvalidScopeError()
        token: dict[str, Any] = super().generate(
            grant_type, client, user, scope, expires_in, include_refresh_token
        )
        return token


class IdTokenMixin:
    """Our ID token (OIDC Core 2): explicit claims, signed by the key ring; one place for the
    code and refresh grants, so both say the same thing about the person."""

    keys: KeyRing
    issuer: str

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        principal: Principal = request.user
        client: ClientView = request.client
        now = epoch(utcnow())
        claims: dict[str, Any] = {
            **user_claims(principal.user, token["scope"]),
            "iss": self.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + client.id_token_ttl,
            "auth_time": epoch(principal.auth_time),
            "amr": list(principal.amr),
            **context_claims(client, principal.context_link_id),
        }
        if principal.sid:
            claims["sid"] = principal.sid
        if request.authorization_code is not None and request.authorization_code.nonce:
            claims["nonce"] = request.authorization_code.nonce
        at_hash = create_half_hash(token["access_token"], self.keys.algorithm)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode()
        return jwt.encode({"alg": self.keys.algorithm}, claims, self.keys.current().signing)


class IdTokenForCode(IdTokenMixin, OpenIDCode):
    """OpenIDCode with our ID token; a nonce may be reused only after its code was used."""

    def __init__(self, issuer: str, keys: KeyRing) -> None:
        super().__init__(require_nonce=False)
        self.issuer = issuer
        self.keys = keys

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        """Only a live code of this client and this person blocks a nonce (nobody signed in
        yet: nothing to check; the request is decided again once someone is)."""
        principal: Principal | None = request.user
        if principal is None:
            return False
        found = fastpath.first(
            current_connection(),
            fastpath.LIVE_CODE_WITH_NONCE,
            {
                "client_id": request.payload.client_id,
                "nonce": nonce,
                "user_id": principal.user.id,
                "now": utcnow(),
            },
        )
        return found is not None


class IdTokenForRefresh(IdTokenMixin, OpenIDToken):
    """A fresh ID token on refresh, without nonce and with the original auth_time."""

    def __init__(self, issuer: str, keys: KeyRing) -> None:
        self.issuer = issuer
        self.keys = keys
