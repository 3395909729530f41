"""Using issued tokens: bearer validation (userinfo), revocation (RFC 7009), introspection
(RFC 7662), and the id_token_hint check of RP-initiated logout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, MissingAuthorizationError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import GuestProtocol, Key, KeySet
from joserfc.jws import extract_compact
from sqlalchemy import select, update

from iam.clock import epoch, utcnow
from iam.db import fastpath
from iam.db.fastpath import AccessTokenRecord, ClientView, UserView
from iam.db.models import AccessToken, RefreshToken
from iam.db.unit import current_connection, current_session
from iam.oidc.claims import context_claims, user_claims
from iam.oidc.keys import KeyRing
from iam.secretbox import digest

NO_STORE = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
]


#: The one algorithm a key of each type of ours signs with.
ALGORITHM_OF_KEY_TYPE = {"RSA": "RS256", "EC": "ES256"}


#: What an access token of ours may be signed with (each bound to its key type below).
ACCESS_TOKEN_ALGORITHMS = tuple(ALGORITHM_OF_KEY_TYPE.values())


def decode_access_token(token_string: str, keys: KeyRing, issuer: str) -> dict[str, Any] | None:
    """The claims of a JWT access token we signed (expired or not), else None. The key is the
    published one its `kid` names, and only that key's algorithm is taken (RS256 for an RSA
    key, ES256 for an EC key): no `none`, no HMAC, no algorithm of another key type. The token
    is parsed once: joserfc hands its header to `key_of` before it checks the signature.

    A token the ring has checked before is not checked again while its key is published: a
    resource server or an app calling userinfo with the same token pays the RS256 check and the
    parsing once (about a fifth of a userinfo, issue #17). Its record is still read on every
    use, so revocation, expiry and a disabled user are seen at once."""
    if token_string.count(".") != 2 or len(token_string) > 8192:
        return None
    known = keys.verified(token_string)
    if known is not None and known.get("iss") == issuer:
        return known

    def key_of(token: GuestProtocol) -> Key:
        header = token.headers()
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidKeyIdError()
        key: Key = keys.verifying(kid).get_by_kid(kid)
        if ALGORITHM_OF_KEY_TYPE.get(key.key_type) != header.get("alg"):
            raise UnsupportedAlgorithmError()
        return key

    try:
        token = jwt.decode(token_string, key_of, algorithms=ACCESS_TOKEN_ALGORITHMS)
    except (JoseError, ValueError):
        return None
    if token.header.get("typ") != "at+jwt" or token.claims.get("iss") != issuer:
        return None
    keys.remember_verified(token_string, str(token.header["kid"]), token.claims)
    return dict(token.claims)


def admin_client_of(token_string: str, keys: KeyRing, issuer: str, scope: str) -> str | None:
    """The admin client whose own credential a bearer token is: a live JWT access token of ours
    with `scope`, issued by `client_credentials` (no user: a person's token to an admin app
    is no admin credential, issue #11), to a client still flagged as admin. Else None."""
    claims = decode_access_token(token_string, keys, issuer)
    if claims is None or scope not in str(claims.get("scope", "")).split():
        return None
    found = fastpath.presented_token(current_connection(), str(claims.get("jti")))
    if found is None:
        return None
    token, _user, client = found
    if token.user_id is not None or token.is_revoked() or token.is_expired():
        return None
    if not client.is_admin or scope not in token.scope.split():
        return None
    return client.client_id


def revoke_family(family_id: str) -> None:
    """Revoke every access and refresh token descended from one authorization code."""
    now = utcnow()
    for table in (RefreshToken, AccessToken):
        current_session().execute(
            update(table)
            .where(table.family_id == family_id, table.revoked_at.is_(None))
            .values(revoked_at=now)
        )


@dataclass(frozen=True)
class PresentedToken:
    """A bearer access token as a resource presented it: its record, its user and its app, read
    in one statement. Authlib's validator asks it what it asks any token."""

    record: AccessTokenRecord
    user: UserView | None
    client: ClientView

    def is_expired(self) -> bool:
        return self.record.is_expired()

    def is_revoked(self) -> bool:
        return self.record.is_revoked()

    def get_scope(self) -> str:
        return self.record.get_scope()


class AccessTokenValidator(BearerTokenValidator):
    """A bearer token is valid when its signature, issuer and expiry are, and its `jti`
    record is not revoked (logout, revocation, replay)."""

    def __init__(self, keys: KeyRing, issuer: str) -> None:
        super().__init__()
        self.keys = keys
        self.issuer = issuer

    def authenticate_token(self, token_string: str) -> PresentedToken | None:
        claims = decode_access_token(token_string, self.keys, self.issuer)
        if claims is None:
            return None
        found = fastpath.presented_token(current_connection(), str(claims.get("jti")))
        return PresentedToken(*found) if found is not None else None


def _query_token(
    token_string: str, keys: KeyRing, issuer: str
) -> AccessToken | RefreshToken | None:
    claims = decode_access_token(token_string, keys, issuer)
    if claims is not None:
        return current_session().get(AccessToken, str(claims.get("jti")))
    return current_session().scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest(token_string))
    )


class _TokenLookup:
    """What revocation and introspection share: find a token of ours, whichever kind."""

    def __init__(self, keys: KeyRing, issuer: str) -> None:
        super().__init__()
        self.keys = keys
        self.issuer = issuer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query_token(token_string, self.keys, self.issuer)

    def check_params(self, request: Any, client: ClientView) -> None:
        """Only `token` is required. A hint we do not know is ignored, not refused: we find
        every kind of token anyway (RFC 7009 2.1, RFC 7662 2.1)."""
        if "token" not in request.form:
            raise InvalidRequestError("The 'token' parameter is required.")


class Revocation(_TokenLookup, RevocationEndpoint):
    """RFC 7009. Revoking a refresh token revokes its whole family (RFC 7009 2.1)."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def revoke_token(self, token: AccessToken | RefreshToken, request: Any) -> None:
        if isinstance(token, RefreshToken):
            revoke_family(token.family_id)
        elif token.revoked_at is None:
            token.revoked_at = utcnow()


class Introspection(_TokenLookup, IntrospectionEndpoint):
    """RFC 7662, for confidential clients, about their own tokens."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def check_permission(self, token: Any, client: ClientView, request: Any) -> bool:
        return bool(token.client_id == client.client_id)

    def introspect_token(self, token: AccessToken | RefreshToken) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "scope": token.scope,
            "iat": epoch(token.issued_at),
            "exp": epoch(token.expires_at),
            "iss": self.issuer,
        }
        if token.user_id is not None:
            payload["sub"] = token.user_id
        if isinstance(token, AccessToken):
            payload.update(token_type="Bearer", jti=token.jti, aud=token.client_id)
            client = fastpath.client_by_id(current_connection(), token.client_id)
            if client is not None:
                payload.update(context_claims(client, token.context_link_id))
            if token.user_id is None:
                payload["sub"] = token.client_id
        else:
            payload["token_type"] = "refresh_token"
        return payload

    def create_endpoint_response(self, request: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        status, body, _headers = super().create_endpoint_response(request)
        return status, body, NO_STORE


class NoBearerTokenError(MissingAuthorizationError):
    """RFC 6750 3.1: a request with no authentication information at all gets a bare
    challenge, no error code (Authlib's says `missing_authorization`, which is no code RFC
    6750 registers)."""

    def __call__(self, uri: str | None = None) -> tuple[int, Any, list[tuple[str, str]]]:
        return 401, {}, [*NO_STORE, ("WWW-Authenticate", "Bearer")]


class OpenIdScopeRequiredError(InsufficientScopeError):
    """RFC 6750 3: 403 with the challenge that names the error and the scope needed."""

    def get_headers(self) -> list[tuple[str, str]]:
        challenge = 'Bearer error="insufficient_scope", scope="openid"'
        return [*NO_STORE, ("WWW-Authenticate", challenge)]


class UserInfo(UserInfoEndpoint):
    """OIDC Core 5.3: the claims the token's scope releases, for an active user."""

    def __call__(self, request: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        try:
            token: PresentedToken = self.resource_protector.validate_request(["openid"], request)
        except MissingAuthorizationError:
            raise NoBearerTokenError() from None
        except InsufficientScopeError:
            raise OpenIdScopeRequiredError() from None
        user, client, record = token.user, token.client, token.record
        if user is None or not user.is_active:
            raise InvalidTokenError()
        claims = {
            **user_claims(user, record.scope),
            **context_claims(client, record.context_link_id),
        }
        return 200, claims, NO_STORE


#: Claims only other kinds of token we sign carry: access tokens (RFC 9068 2.2) and logout
#: tokens (OIDC Back-Channel Logout 1.0 2.4). An ID token of ours never has them.
NOT_ID_TOKEN_CLAIMS = ("client_id", "scope", "events")
#: The claims every ID token has (OIDC Core 2), with their JSON types.
ID_TOKEN_CLAIMS: dict[str, type | tuple[type, ...]] = {
    "iss": str,
    "sub": str,
    "aud": (str, list),
    "exp": int,
    "iat": int,
}


class EndSession(EndSessionEndpoint):
    """RP-initiated logout 1.0: checks id_token_hint and the post-logout redirect URI; the
    logout itself is done by the page, which owns the session cookie (and decides whether the
    hint names the browser's session, or the person must confirm)."""

    def __init__(self, keys: KeyRing) -> None:
        super().__init__()
        self.keys = keys

    def get_server_jwks(self) -> KeySet:
        # Fresh from the database: the hint may be signed by a key another instance made.
        return KeySet.import_key_set(self.keys.published_jwks())

    def get_algorithms(self) -> list[str]:
        return [self.keys.algorithm]  # what we sign ID tokens with, nothing else

    def validate_request(self, request: Any) -> EndSessionRequest:
        """Authlib checks the hint's signature, `aud` against `client_id` and the redirect URI
        (an expired hint is fine, RP-Initiated Logout 1.0 2). A signature of ours is not
        enough: the hint must be an ID token of this issuer (2: "the OP MUST validate that it
        was the issuer of the ID Token"), never an access token, which a resource server or
        another app may hold, nor any other JWT we sign."""
        validated = super().validate_request(request)
        if validated.id_token_claims is not None:
            hint = str(request.payload.data.get("id_token_hint"))
            self._check_id_token(
                extract_compact(hint.encode()).protected, validated.id_token_claims
            )
        return validated

    def hint_claims(self, hint: str) -> dict[str, Any]:
        """The claims of an `id_token_hint` we issued (its signature checked against our keys;
        an expired one is fine: OIDC Core 3.1.2.1); `InvalidRequestError` otherwise. The
        authorization endpoint uses it too."""
        claims: dict[str, Any] = self._validate_id_token_hint(hint)
        try:
            header = extract_compact(hint.encode()).protected
        except ValueError:  # (the signature check above read it already)
            raise InvalidRequestError("id_token_hint is not an ID token.") from None
        self._check_id_token(header, claims)
        return claims

    def _check_id_token(self, header: dict[str, Any], claims: dict[str, Any]) -> None:
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":  # e.g. at+jwt (RFC 9068 2.1)
            raise InvalidRequestError("id_token_hint is not an ID token.")
        if claims.get("iss") != self.server.issuer:
            raise InvalidRequestError("id_token_hint was not issued here.")
        for name, kind in ID_TOKEN_CLAIMS.items():
            value = claims.get(name)
            if not isinstance(value, kind) or isinstance(value, bool) or value in ("", []):
                raise InvalidRequestError("id_token_hint is not an ID token.")
        if any(name in claims for name in NOT_ID_TOKEN_CLAIMS):
            raise InvalidRequestError("id_token_hint is not an ID token.")

    def is_post_logout_redirect_uri_legitimate(self, *args: Any) -> bool:
        # The URI was matched exactly against the client's registered ones; the person
        # confirms the logout on our page when there is no id_token_hint.
        return True

    def end_session(self, end_session_request: Any) -> None:  # done by flows/logout.py
        return None
