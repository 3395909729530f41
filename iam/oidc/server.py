"""Authlib's AuthorizationServer glued to Starlette and our storage.

Every protocol request runs in one database transaction (`iam.oidc.runner.Runner`), in a worker
thread or, on a local database, on the event loop: Authlib is synchronous, and a single
transaction makes "issue the tokens and consume the code" atomic.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc9207 import IssuerParameter
from joserfc.jws import extract_compact
from starlette.responses import Response

from iam import metrics
from iam.clock import utcnow
from iam.db import fastpath
from iam.db.fastpath import ClientView
from iam.db.models import RefreshToken
from iam.db.unit import (
    current_connection,
    current_session,
    rollback_current,
)
from iam.errors import RateLimitedError
from iam.oidc import client_auth, grants
from iam.oidc.context import Principal
from iam.oidc.keys import KeyRing
from iam.oidc.requests import readable_basic_credentials
from iam.oidc.tokens import (
    AccessTokenValidator,
    EndSession,
    Introspection,
    Revocation,
    UserInfo,
    revoke_family,
)
from iam.secretbox import digest
from iam.services import audit
from iam.services.clients import ADMIN_SCOPE, SUPPORTED_SCOPES
from iam.services.rate_limits import RateLimits

log = logging.getLogger("iam.oidc")
#: Longest client id (the column's length): a longer one names no client and is not recorded.
MAX_CLIENT_ID = 64
UNSUPPORTED_RESPONSE_TYPE = "This response_type is not supported."
UNREADABLE_CREDENTIALS = "The client credentials in the Authorization header cannot be read."


class SlowDownError(OAuth2Error):
    """Too many token requests (429, with `Retry-After`); `slow_down` is the registered OAuth
    error code for "poll less often" (RFC 8628 3.5)."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(description=f"Too many requests. Try again in {retry_after} seconds.")
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


#: A form `client_id` that is not the client the credentials proved (RFC 6749 2.3: one
#: client, one authentication).
OTHER_CLIENT_NAMED = "client_id names another client than the credentials."


class Issuer(IssuerParameter):
    """RFC 9207: `iss` in every authorization response, success and error (Authlib's
    extension, told our issuer)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class _Located:
    """What Authlib's authorization-response hooks read and write: a `location`."""

    def __init__(self, location: str) -> None:
        self.location = location


class Server(AuthorizationServer):
    """The OAuth 2.0 / OIDC server: grants, token generator and endpoints registered once."""

    def __init__(
        self,
        issuer: str,
        keys: KeyRing,
        limits: RateLimits,
        assertion: client_auth.ClientAssertion,
    ) -> None:
        super().__init__(scopes_supported=[*SUPPORTED_SCOPES, ADMIN_SCOPE])
        self.issuer = issuer
        self.keys = keys
        self.limits = limits
        # private_key_jwt and client_secret_jwt (RFC 7523)
        self.client_assertion = assertion
        for method in client_auth.JWT_METHODS:
            self.register_client_auth_method(method, assertion.authenticator(method))
        self.register_token_generator("default", grants.AccessTokenGenerator(issuer, keys))
        self.register_grant(
            grants.AuthorizationCodeGrant,
            [grants.S256CodeChallenge(required=True), grants.IdTokenForCode(issuer, keys)],
        )
        self.register_grant(grants.RefreshTokenGrant, [grants.IdTokenForRefresh(issuer, keys)])
        self.register_grant(grants.ClientCredentialsGrant)
        self.resource_protector = ResourceProtector()
        self.resource_protector.register_token_validator(AccessTokenValidator(keys, issuer))
        self.register_endpoint(Revocation(keys, issuer))
        self.register_endpoint(Introspection(keys, issuer))
        self.register_endpoint(UserInfo(self, self.resource_protector))
        self.end_session = EndSession(keys)
        self.register_endpoint(self.end_session)
        self.register_extension(Issuer(issuer))

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        """Authlib's client authentication, then the token endpoint's per-client rate limit,
        counted only for clients that proved a secret: nobody can spend another client's
        budget. (A public client is named, not proven: it is limited per IP only.) Basic
        credentials Authlib cannot read are refused first (401, as RFC 6749 5.2 asks)."""
        if not readable_basic_credentials(request.headers):
            raise InvalidClientError(status_code=401, description=UNREADABLE_CREDENTIALS)
        if "client_secret_basic" in methods or "client_secret_post" in methods:
            # Wherever a confidential client authenticates, it may with an assertion, tried
            # first: a request that carries one is judged by it (`iam.oidc.client_auth`).
            methods = [*client_auth.JWT_METHODS, *methods]
        client = super().authenticate_client(request, methods, endpoint)
        named = request.payload.data.get("client_id")
        if named is not None and named != client.client_id:  # who is asking, twice, differently
            raise InvalidClientError(status_code=401, description=OTHER_CLIENT_NAMED)
        if endpoint == "token" and not client.is_public:
            try:
                self.limits.check("token", key=client.client_id, ip=None)
            except RateLimitedError as error:
                raise SlowDownError(error.retry_after) from None
        return client

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        """Authlib's, with a fixed description for an unsupported response_type: Authlib's
        repeats the value, and cannot be built at all for one with a `"`, a `\\` or a character
        outside ASCII (such a request is refused at the server, not redirected)."""
        if invalid_error_characters(request.payload.response_type or ""):
            raise UnsupportedResponseTypeError(None, description=UNSUPPORTED_RESPONSE_TYPE)
        try:
            return super().get_authorization_grant(request)
        except UnsupportedResponseTypeError as error:
            error.description = UNSUPPORTED_RESPONSE_TYPE
            raise

    def create_limited_token_response(self, request: OAuth2Request, ip: str | None) -> Response:
        """The token endpoint, after the per-IP rate limit."""
        try:
            self.limits.check("token", key=None, ip=ip)
        except RateLimitedError as error:
            return self.handle_error_response(request, SlowDownError(error.retry_after))
        response: Response = self.create_token_response(request)
        return response

    def issue_code(self, request: OAuth2Request, grant: Any, user: Principal) -> Response:
        """The authorization response for a grant `get_consent_grant` has validated.
        (`create_authorization_response` would validate it all again: the client, the
        redirect URI, the scopes, and the nonce with a query.)"""
        try:
            response = self.handle_response(
                *grant.create_authorization_response(grant.redirect_uri, user)
            )
        except OAuth2Error as error:
            error.state = request.payload.state
            response = self.handle_error_response(request, error)
        grant.execute_hook("after_authorization_response", response)
        return self._to_the_client(response)

    def _to_the_client(self, response: Response) -> Response:
        """An authorization response (a redirect to the client, success or error): with `iss`
        (RFC 9207, through the registered extension's hook), and never cached: it may carry a
        code (RFC 6749 5.1 asks the same of token responses)."""
        location = response.headers.get("location")
        if location is None:
            return response
        located = _Located(location)
        self.execute_hook("after_create_authorization_response", located)
        response.headers["location"] = located.location
        response.headers["cache-control"] = "no-store"
        response.headers["pragma"] = "no-cache"
        return response

    # --- storage hooks ---
    def query_client(self, client_id: str) -> ClientView | None:
        if not client_id or len(client_id) > MAX_CLIENT_ID:
            return None
        return fastpath.client_by_id(current_connection(), client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Record the access token's jti (for revocation) and the refresh token's digest."""
        client: ClientView = request.client
        principal: Principal | None = request.user
        claims = json.loads(extract_compact(token["access_token"].encode()).payload)
        now = utcnow()
        family_id = principal.family_id if principal else None
        sid = principal.sid if principal else None
        plain = current_connection()  # plain INSERTs: nothing here is read back as an object
        fastpath.change(
            plain,
            fastpath.INSERT_ACCESS_TOKEN,
            {
                "jti": claims["jti"],
                "client_id": client.client_id,
                "user_id": principal.user.id if principal else None,
                "family_id": family_id,
                "sid": sid,
                "scope": token.get("scope", ""),
                "context_link_id": principal.context_link_id if principal else None,
                "issued_at": now,
                "expires_at": now.replace(microsecond=0)
                + timedelta(seconds=int(token["expires_in"])),
            },
        )
        if "refresh_token" in token and principal is not None and family_id is not None:
            previous: RefreshToken | None = request.refresh_token
            fastpath.change(
                plain,
                fastpath.INSERT_REFRESH_TOKEN,
                {
                    "token_hash": digest(token["refresh_token"]),
                    "family_id": family_id,
                    "client_id": client.client_id,
                    "user_id": principal.user.id,
                    # RFC 6749 6: a narrowed refresh keeps the originally granted scope.
                    "scope": previous.scope if previous is not None else token["scope"],
                    "sid": sid,
                    "auth_time": principal.auth_time,
                    "amr": list(principal.amr),
                    "context_link_id": principal.context_link_id,
                    "issued_at": now,
                    "expires_at": now + timedelta(seconds=client.refresh_token_ttl),
                },
            )
        metrics.TOKENS.labels(request.payload.grant_type).inc()
        audit.record(
            plain,
            "token.issued",
            user_id=principal.user.id if principal else None,
            client_id=client.client_id,
            grant_type=request.payload.grant_type,
            scope=token.get("scope", ""),
        )

    # --- framework glue (mirrors authlib's flask_oauth2 adapter) ---
    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if not isinstance(request, OAuth2Request):
            raise TypeError("snapshot the Starlette request first (iam.oidc.requests)")
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        content = json.dumps(body) if isinstance(body, dict) else body
        return Response(content, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "after_revoke_token":
            token = kwargs.get("token")
            audit.record(
                current_session().connection(),
                "token.revoked",
                user_id=getattr(token, "user_id", None),
                client_id=getattr(kwargs.get("client"), "client_id", None),
                kind=type(token).__name__,
            )

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        """Undo what the failed request wrote; a replay revokes its family; audit the failure
        (but not a refusal for too many requests: a flood must not become a flood of writes)."""
        rollback_current()
        response: Response
        if isinstance(error, SlowDownError):
            response = super().handle_error_response(request, error)
            return response
        if isinstance(error, grants.TokenFamilyCompromisedError):
            revoke_family(error.family_id)
            log.warning("token replay: family %s revoked", error.family_id)
        payload = getattr(request, "payload", None)
        client = getattr(request, "client", None)
        audit.record(
            current_connection(),
            "token.failed" if getattr(payload, "grant_type", None) else "oauth.failed",
            outcome="failure",
            client_id=getattr(client, "client_id", None) or _claimed_client_id(payload),
            error=error.error,
            description=error.description,
        )
        response = super().handle_error_response(request, error)
        return self._to_the_client(response)


def _claimed_client_id(payload: Any) -> str | None:
    """The client id a failed request named, if it could name one (the audit column's length)."""
    claimed = getattr(payload, "client_id", None)
    return claimed if claimed and len(claimed) <= MAX_CLIENT_ID else None
