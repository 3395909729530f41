"""The machine-facing endpoints: discovery, JWKS, token, userinfo, revocation, introspection.

Handlers only snapshot the request and hand it to Authlib in a worker (`Runner`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssuerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from authlib.oidc.rpinitiated import OpenIDProviderMetadata as LogoutMetadata
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam.oidc.client_auth import SIGNING_ALGORITHMS as ASSERTION_ALGORITHMS
from iam.oidc.keys import KeyRing
from iam.oidc.requests import FORM_URLENCODED, snapshot
from iam.oidc.runner import Runner
from iam.oidc.server import Server
from iam.services.clients import SUPPORTED_SCOPES
from iam.web import MAX_BODY_BYTES


@dataclass(frozen=True)
class Oidc:
    """What the protocol handlers share, kept on `app.state.oidc`."""

    issuer: str
    server: Server
    runner: Runner
    keys: KeyRing
    discovery: dict[str, Any]


def discovery_document(issuer: str) -> dict[str, Any]:
    """OIDC Discovery 1.0 metadata, validated with Authlib's models at start."""
    metadata = OpenIDProviderMetadata(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        userinfo_endpoint=f"{issuer}/userinfo",
        jwks_uri=f"{issuer}/jwks.json",
        revocation_endpoint=f"{issuer}/revoke",
        introspection_endpoint=f"{issuer}/introspect",
        end_session_endpoint=f"{issuer}/logout",
        scopes_supported=list(SUPPORTED_SCOPES),
        response_types_supported=["code"],
        response_modes_supported=["query"],
        grant_types_supported=["authorization_code", "refresh_token", "client_credentials"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=["RS256"],
        token_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ],
        token_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        revocation_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ],
        revocation_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        introspection_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
        ],
        introspection_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        code_challenge_methods_supported=["S256"],
        # `consent` is not offered: first-party apps, no consent page (a request that sends it
        # is served as if it had not)
        prompt_values_supported=["none", "login", "select_account"],
        claims_supported=[
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "amr",
            "at_hash",
            "name",
            "updated_at",
            "email",
            "email_verified",
            "phone_number",
            "phone_number_verified",
        ],
        claims_parameter_supported=False,
        request_parameter_supported=False,
        request_uri_parameter_supported=False,
        frontchannel_logout_supported=False,
        backchannel_logout_supported=True,  # OIDC Back-Channel Logout 1.0 (iam.oidc.backchannel)
        backchannel_logout_session_supported=True,
    )
    metadata["authorization_response_iss_parameter_supported"] = True  # RFC 9207
    metadata.validate(metadata_classes=[LogoutMetadata, IssuerMetadata])
    return dict(metadata)


def _oidc(request: Request) -> Oidc:
    oidc: Oidc = request.app.state.oidc
    return oidc


def _unreadable(status_code: int = 413, description: str = "Request body too large.") -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=status_code,
        headers={"cache-control": "no-store"},
    )


def _announces_too_much(request: Request) -> bool:
    """A Content-Length over the limit is refused before reading; a chunked body (none) is
    cut off by `BodyLimitMiddleware` while it is read."""
    length = request.headers.get("content-length")
    return length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES)


#: Endpoints whose requests are forms by definition (RFC 6749 3.2, RFC 7009 2.1, RFC 7662 2.1).
FORM_ENDPOINTS = (None, "revocation", "introspection")


def _not_a_form(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type != FORM_URLENCODED


async def _protocol(request: Request, endpoint: str | None) -> Response:
    """Snapshot, then run Authlib: the token endpoint, or a named endpoint."""
    oidc = _oidc(request)
    if request.method == "POST" and _announces_too_much(request):
        return _unreadable()
    if endpoint in FORM_ENDPOINTS and request.method == "POST" and _not_a_form(request):
        return _unreadable(400, f"The body must be {FORM_URLENCODED}.")
    try:
        oauth_request = await snapshot(request, oidc.issuer)
    except InsecureTransportError:
        return JSONResponse({"error": "insecure_transport"}, status_code=400)
    except HTTPException as refused:  # too large while read, or a malformed multipart body
        return _unreadable(refused.status_code, refused.detail)
    # A client assertion's keys may have to be fetched from its jwks_uri: not on the event loop.
    local = "client_assertion" not in oauth_request.form
    if endpoint is None:
        ip = request.client.host if request.client else None
        return await oidc.runner(
            oidc.server.create_limited_token_response, oauth_request, ip, local=local
        )
    return await oidc.runner(
        oidc.server.create_endpoint_response, endpoint, oauth_request, local=local
    )


async def token(request: Request) -> Response:
    return await _protocol(request, None)


async def userinfo(request: Request) -> Response:
    return await _protocol(request, "userinfo")


async def revoke(request: Request) -> Response:
    return await _protocol(request, "revocation")


async def introspect(request: Request) -> Response:
    return await _protocol(request, "introspection")


async def openid_configuration(request: Request) -> Response:
    return JSONResponse(_oidc(request).discovery, headers={"cache-control": "public, max-age=300"})


async def jwks(request: Request) -> Response:
    jwks = await run_in_threadpool(_oidc(request).keys.published_jwks)
    return JSONResponse(jwks, headers={"cache-control": "public, max-age=60"})
