"""The machine-facing endpoints: discovery, JWKS, token, userinfo, revocation, introspection.

Handlers only snapshot the request and hand it to Authlib in a worker (`Runner`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.errors import InsecureTransportError
from authlib.oidc.discovery import OpenIDProviderMetadata
from authlib.oidc.rpinitiated import OpenIDProviderMetadata as LogoutMetadata
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from iam.oidc.keys import KeyRing
from iam.oidc.requests import snapshot
from iam.oidc.server import Runner, Server
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
            "none",
        ],
        revocation_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        introspection_endpoint_auth_methods_supported=[
            "client_secret_basic",
            "client_secret_post",
        ],
        code_challenge_methods_supported=["S256"],
        prompt_values_supported=["none", "login", "consent", "select_account"],
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
    )
    metadata.validate(metadata_classes=[LogoutMetadata])
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


async def _protocol(request: Request, endpoint: str | None) -> Response:
    """Snapshot, then run Authlib: the token endpoint, or a named endpoint."""
    oidc = _oidc(request)
    if request.method == "POST" and _announces_too_much(request):
        return _unreadable()
    try:
        oauth_request = await snapshot(request, oidc.issuer)
    except InsecureTransportError:
        return JSONResponse({"error": "insecure_transport"}, status_code=400)
    except HTTPException as refused:  # too large while read, or a malformed multipart body
        return _unreadable(refused.status_code, refused.detail)
    if endpoint is None:
        ip = request.client.host if request.client else None
        return await oidc.runner(oidc.server.create_limited_token_response, oauth_request, ip)
    return await oidc.runner(oidc.server.create_endpoint_response, endpoint, oauth_request)


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
