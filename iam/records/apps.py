"""Apps (relying parties): how the admin API and `iam clients ... --json` show one, and the
bodies that register and change one."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, JsonValue, model_validator

from iam.db.models import Client
from iam.errors import ValidationError
from iam.records.base import Absent, Body, Record, Text, Timestamp, WholeNumber, by_the_service
from iam.services import clients

MAX_URIS = 20
MAX_URI_LENGTH = 2000

# The documented shapes. Each ends in `(?!\n)$`: Python's `$` also matches before a final
# newline, ECMA-262's does not; this way both read the pattern alike.
#: Not blank, no control characters.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*(?!\n)$"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#: https with a plain ASCII host, or http on a loopback host; no userinfo, fragment, wildcard,
#: space or control character. (The service also takes IDN and IPv6 hosts from the CLI.)
URI_PATTERN = (
    r"^(?:https://(?:[A-Za-z0-9._~%!$&'()+,;=-]+|\[::1\])"
    rf"|http://(?:localhost|127\.{_OCTET}\.{_OCTET}\.{_OCTET}|\[::1\]))"
    r"(?::[0-9]{1,5})?(?:[/?][^\x00-\x20\x7f#*]*)?(?!\n)$"
)
CLAIM_PATTERN = r"^[A-Za-z0-9_:/.\-#]{1,255}(?!\n)$"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
#: An origin as browsers send it: https with a plain ASCII host, or http on a loopback host;
#: an optional port; nothing after it (not even "/").
ORIGIN_PATTERN = (
    r"^(?:https://(?:[A-Za-z0-9.-]+|\[::1\])"
    rf"|http://(?:localhost|127\.{_OCTET}\.{_OCTET}\.{_OCTET}|\[::1\]))(?::{_PORT})?(?!\n)$"
)
#: A URI in the documented form, or the empty string (which removes the setting).
URI_OR_EMPTY_PATTERN = r"^(?!\n)$|" + URI_PATTERN


class App(Record):
    """An app: never its secret or the secret's digest. `iam:admin` is not among its scopes;
    `admin` says whether the app has it."""

    client_id: str
    name: str
    public: bool = Field(description="no secret, PKCE required; fixed at creation")
    admin: bool = Field(description="may call this API (scope iam:admin)")
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    grant_types: list[str]
    context_policy: str = Field(json_schema_extra={"enum": list(clients.CONTEXT_POLICIES)})
    context_claim: str
    access_token_ttl: int
    id_token_ttl: int
    refresh_token_ttl: int
    has_previous_secret: bool = Field(description="a rotated-out secret still works until retired")
    initiate_login_uri: str | None = Field(
        description="where the app's WeCom workbench links (/launch/{client_id}/wecom/{corp_id}) "
        "send the browser, with iss and target_link_uri, for the app to start its own sign-in "
        "(OIDC Core 4); null: the app has no workbench links"
    )
    backchannel_logout_uri: str | None = Field(
        description="where the app receives a logout_token when a session it has tokens from "
        "ends (OIDC Back-Channel Logout 1.0); null: the app is not told"
    )
    token_endpoint_auth_method: str = Field(
        json_schema_extra={"enum": list(clients.AUTH_METHODS)},
        description="how the app authenticates at /token, /revoke and /introspect: none (a "
        "public app), client_secret_basic or client_secret_post (either is taken), "
        "client_secret_jwt (RFC 7523: an assertion signed with an HMAC, HS256, keyed by its "
        "secret), or private_key_jwt (RFC 7523: an assertion signed with one of its keys; no "
        "secret)",
    )
    jwks: dict[str, Any] | None = Field(
        description="a private_key_jwt app's public keys (a JWK Set), when registered here"
    )
    jwks_uri: str | None = Field(
        description="where a private_key_jwt app publishes its JWK Set, when fetched from there"
    )
    allowed_origins: list[str] = Field(
        description="origins (scheme://host[:port]) the app's browser code calls /token, "
        "/userinfo and /revoke from (CORS), besides its redirect URIs' origins"
    )
    access_token_signing_alg: str = Field(
        json_schema_extra={"enum": list(clients.ACCESS_TOKEN_ALGS)},
        description="what the app's access tokens are signed with: RS256 (the default, widest "
        "support) or ES256 (faster; the app's resource servers must support it); its ID tokens "
        "are RS256 either way",
    )
    created_at: Timestamp
    secret_rotated_at: Timestamp | None

    @classmethod
    def of(cls, client: Client) -> App:
        return cls.from_row(client, **_computed(client))


class AppWithSecret(App):
    """An app with its new secret: in this answer and nowhere else."""

    client_secret: str | None = Field(
        description="shown this once (null for a public app or one that signs with its keys); "
        "only its digest is kept (and, for a client_secret_jwt app, the secret encrypted)"
    )

    @classmethod
    def registered(cls, registered: clients.RegisteredClient) -> AppWithSecret:
        client = registered.client
        return cls.from_row(client, **_computed(client), client_secret=registered.client_secret)


def _computed(client: Client) -> dict[str, Any]:
    """The fields the row names otherwise, or that are worked out from it."""
    return {
        "public": client.is_public,
        "admin": client.is_admin,
        "scopes": [s for s in client.allowed_scopes.split() if s != clients.ADMIN_SCOPE],
        "has_previous_secret": client.previous_secret_hash is not None,
    }


# --- what a body may hold ---------------------------------------------------------------------


def _name(value: str) -> str:
    if len(value) > 200 or not re.search(NAME_PATTERN, value):
        raise ValueError(f"not in the documented form: {value[:100]!r}")
    return value


def _uri_form(value: str) -> str:
    """The documented form (after the service's own check, whose message says what is
    wrong)."""
    if len(value) > MAX_URI_LENGTH or not re.search(URI_PATTERN, value):
        raise ValueError(
            "use https with a plain ASCII host name (http only on 127.0.0.1, localhost or "
            f"[::1]), without user info: {value[:100]!r}"
        )
    return value


def _origin_form(value: str) -> str:
    if not re.search(ORIGIN_PATTERN, value):
        raise ValueError(
            "an origin is https://host[:port] with a plain ASCII host name (http only on "
            f"127.0.0.1, localhost or [::1]), without a path: {value[:100]!r}"
        )
    return value


def _uri_or_empty(value: str) -> str:
    return value and _uri_form(value)


def _scope(value: str) -> str:
    if value not in clients.SUPPORTED_SCOPES:
        raise ValueError(
            f"one of {', '.join(clients.SUPPORTED_SCOPES)} ({clients.ADMIN_SCOPE} comes with an "
            "admin client and cannot be granted here)."
        )
    return value


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"one of {', '.join(allowed)}.")
    return value


def _policy(value: str) -> str:
    if value not in clients.CONTEXT_POLICIES:
        raise ValueError(f"one of {', '.join(clients.CONTEXT_POLICIES)}.")
    return value


def _claim(value: str) -> str:
    if not re.search(CLAIM_PATTERN, value):
        raise ValueError(f"not in the documented form: {value[:100]!r}")
    if value in clients.RESERVED_CLAIMS:
        raise ValueError(f"{value!r} is a standard claim: choose another name.")
    return value


def _lifetime(name: str) -> Any:
    """Seconds, in the service's bounds (said in the schema; checked by the service)."""
    default, least, most = clients.LIFETIMES[name]
    return Field(
        json_schema_extra={
            "minimum": least,
            "maximum": most,
            "default": default,
            "description": "seconds" + ("; 0 means no refresh tokens" if least == 0 else ""),
        },
    )


Name = Annotated[
    Text,
    AfterValidator(_name),
    Field(json_schema_extra={"minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN}),
]
Uri = Annotated[
    Text,
    by_the_service(lambda uri: clients.check_redirect_uri(uri, "a URI")),
    AfterValidator(_uri_form),
    Field(
        json_schema_extra={"maxLength": MAX_URI_LENGTH, "pattern": URI_PATTERN},
        description="Exact-match redirect URI: https, or http on a loopback host; no fragment, "
        "wildcard or user info.",
    ),
]
InitiateLoginUri = Annotated[
    Text,
    by_the_service(clients.check_initiate_login_uri),
    AfterValidator(_uri_or_empty),
    Field(
        json_schema_extra={"maxLength": MAX_URI_LENGTH, "pattern": URI_OR_EMPTY_PATTERN},
        description="Where the app's WeCom workbench links send the browser for the app to start "
        "its own sign-in (OIDC Core 4 initiate_login_uri): a redirect URI's rules (https, or "
        "http on a loopback host; no fragment, wildcard or user info). The empty string removes "
        "it (the app's workbench links stop); null is not accepted.",
    ),
]
BackchannelLogoutUri = Annotated[
    Text,
    by_the_service(clients.check_backchannel_logout_uri),
    AfterValidator(_uri_or_empty),
    Field(
        json_schema_extra={"maxLength": MAX_URI_LENGTH, "pattern": URI_OR_EMPTY_PATTERN},
        description="Where the app receives a logout_token (a POST, OIDC Back-Channel Logout "
        "1.0) when a session it has tokens from ends: a redirect URI's rules (https, or http on "
        "a loopback host; no fragment, wildcard or user info). The empty string removes it (the "
        "app is no longer told); null is not accepted.",
    ),
]
#: base64url, unpadded (RFC 7515 2), of a whole number of bytes (no length 4k+1).
BASE64URL_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?(?!\n)$"
_PUBLIC_JWK_MEMBERS = {
    "kid": {"type": "string", "maxLength": 200},
    "use": {"type": "string", "enum": ["sig"]},
    "alg": {"type": "string", "maxLength": 20},
}
#: A JWK Set of public keys, as `clients.check_jwks` takes it. (What a schema cannot say: that
#: an RSA modulus or an EC point is one; a key that is not is refused with 422.)
JWKS_SCHEMA = {
    "type": "object",
    "required": ["keys"],
    "additionalProperties": False,
    "properties": {
        "keys": {
            "type": "array",
            "minItems": 1,
            "maxItems": clients.MAX_JWKS_KEYS,
            "items": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["kty", "n", "e"],
                        "additionalProperties": False,
                        "properties": {
                            "kty": {"const": "RSA"},
                            "n": {
                                "type": "string",
                                "pattern": BASE64URL_PATTERN,
                                "minLength": -(-clients.MIN_RSA_BITS // 6),
                                "maxLength": -(-clients.MAX_RSA_BITS // 6),
                            },
                            "e": {"type": "string", "pattern": BASE64URL_PATTERN, "minLength": 2},
                            **_PUBLIC_JWK_MEMBERS,
                        },
                    },
                    {
                        "type": "object",
                        "required": ["kty", "crv", "x", "y"],
                        "additionalProperties": False,
                        "properties": {
                            "kty": {"const": "EC"},
                            "crv": {"const": "P-256"},
                            "x": {"type": "string", "pattern": BASE64URL_PATTERN, "minLength": 2},
                            "y": {"type": "string", "pattern": BASE64URL_PATTERN, "minLength": 2},
                            **_PUBLIC_JWK_MEMBERS,
                        },
                    },
                ]
            },
        }
    },
}
AuthMethod = Annotated[
    Text,
    AfterValidator(lambda method: _one_of(method, clients.AUTH_METHODS)),
    Field(
        json_schema_extra={"enum": list(clients.AUTH_METHODS)},
        description="How the app authenticates at /token, /revoke and /introspect: none for a "
        "public app and only for it; client_secret_basic (the default) or client_secret_post; "
        "client_secret_jwt; private_key_jwt with jwks or jwks_uri.",
    ),
]
Jwks = Annotated[
    dict[str, Any],
    by_the_service(clients.check_jwks),
    Field(
        json_schema_extra=JWKS_SCHEMA,
        description="A private_key_jwt app's public keys (RSA or EC P-256), as a JWK Set; never a "
        "private key.",
    ),
]
JwksUri = Annotated[
    Text,
    by_the_service(clients.check_jwks_uri),
    AfterValidator(_uri_form),
    Field(
        json_schema_extra={"maxLength": MAX_URI_LENGTH, "pattern": URI_PATTERN},
        description="Where a private_key_jwt app publishes its JWK Set (https, or http on a "
        "loopback host); fetched when needed, kept five minutes.",
    ),
]
Origin = Annotated[
    Text,
    by_the_service(clients.check_origin),
    AfterValidator(_origin_form),
    Field(
        json_schema_extra={"maxLength": 300, "pattern": ORIGIN_PATTERN},
        description="An origin the app's browser code calls the token endpoints from (CORS): "
        "scheme://host[:port], https unless on a loopback host, without a path (not even /), "
        "query, fragment or wildcard.",
    ),
]
AccessTokenAlg = Annotated[
    Text,
    AfterValidator(lambda alg: _one_of(alg, clients.ACCESS_TOKEN_ALGS)),
    Field(
        json_schema_extra={
            "enum": list(clients.ACCESS_TOKEN_ALGS),
            "default": clients.DEFAULT_ACCESS_TOKEN_ALG,
        },
        description="What the app's access tokens are signed with: RS256 (the default, widest "
        "support) or ES256 (faster to sign; the app's resource servers must support it). ID "
        "tokens are RS256 whatever this says.",
    ),
]
Scope = Annotated[
    Text, AfterValidator(_scope), Field(json_schema_extra={"enum": list(clients.SUPPORTED_SCOPES)})
]
Policy = Annotated[
    Text,
    AfterValidator(_policy),
    Field(
        json_schema_extra={"enum": list(clients.CONTEXT_POLICIES), "default": "none"},
        description="none: tokens describe the person only; required: they always carry the "
        "identity context claim; optional: when the session has a context.",
    ),
]
Claim = Annotated[
    Text,
    AfterValidator(_claim),
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": 255,
            "pattern": CLAIM_PATTERN,
            "not": {"enum": sorted(clients.RESERVED_CLAIMS)},
            "default": clients.DEFAULT_CONTEXT_CLAIM,
        }
    ),
]
RedirectUris = Annotated[list[Uri], Field(min_length=1, max_length=MAX_URIS)]
LogoutUris = Annotated[list[Uri], Field(max_length=MAX_URIS)]
Scopes = Annotated[
    list[Scope], Field(json_schema_extra={"default": clients.DEFAULT_SCOPES.split()})
]


class _Settings(Body):
    """What both bodies may change; `None` here means "not sent" (no field of an app may be
    null)."""

    post_logout_redirect_uris: LogoutUris | Absent = None
    scopes: Scopes | Absent = None
    context_policy: Policy | Absent = None
    context_claim: Claim | Absent = None
    access_token_ttl: Annotated[WholeNumber, _lifetime("access_token_ttl")] | Absent = None
    id_token_ttl: Annotated[WholeNumber, _lifetime("id_token_ttl")] | Absent = None
    refresh_token_ttl: Annotated[WholeNumber, _lifetime("refresh_token_ttl")] | Absent = None
    initiate_login_uri: InitiateLoginUri | Absent = None
    backchannel_logout_uri: BackchannelLogoutUri | Absent = None
    allowed_origins: Annotated[list[Origin], Field(max_length=clients.MAX_ORIGINS)] | Absent = None
    access_token_signing_alg: AccessTokenAlg | Absent = None


def _given(name: str) -> dict[str, Any]:
    return {"required": [name]}


def _method_is(method: str) -> dict[str, Any]:
    return {
        "required": ["token_endpoint_auth_method"],
        "properties": {"token_endpoint_auth_method": {"const": method}},
    }


#: Keys come with private_key_jwt and only with it, one kind of them.
_KEYS_RULES: list[JsonValue] = [
    {"not": {"required": ["jwks", "jwks_uri"]}},
    {
        "if": {"required": ["token_endpoint_auth_method"]},
        "then": {
            "if": _method_is("private_key_jwt"),
            "then": {},
            "else": {"not": {"anyOf": [_given("jwks"), _given("jwks_uri")]}},
        },
    },
]


def _check_keys_rules(body: AppInput | AppPatch, *, new: bool) -> None:
    """What `_KEYS_RULES` (and, for a new app, `_NEW_APP_RULES`) say, checked."""
    method = body.token_endpoint_auth_method
    keys = [name for name in ("jwks", "jwks_uri") if getattr(body, name) is not None]
    if len(keys) == 2:
        raise ValidationError("jwks", "Give jwks or jwks_uri, not both.")
    if keys and method != "private_key_jwt" and (new or method is not None):
        raise ValidationError(keys[0], "Only a private_key_jwt app has jwks or jwks_uri.")
    if new and method == "private_key_jwt" and not keys:
        raise ValidationError("jwks", "A private_key_jwt app needs jwks or jwks_uri.")
    if isinstance(body, AppInput) and method is not None and (method == "none") != body.public:
        raise ValidationError(
            "token_endpoint_auth_method",
            "A public app authenticates with none, and only a public app does.",
        )


#: A new app: keys exactly when private_key_jwt; `none` exactly when public.
_NEW_APP_RULES: list[JsonValue] = [
    {
        "if": _method_is("private_key_jwt"),
        "then": {"oneOf": [_given("jwks"), _given("jwks_uri")]},
        "else": {"not": {"anyOf": [_given("jwks"), _given("jwks_uri")]}},
    },
    {
        "if": {"required": ["public"], "properties": {"public": {"const": True}}},
        "then": {"properties": {"token_endpoint_auth_method": {"const": "none"}}},
        "else": {"properties": {"token_endpoint_auth_method": {"not": {"const": "none"}}}},
    },
]


class AppInput(_Settings):
    """A new app."""

    model_config = ConfigDict(json_schema_extra={"allOf": [*_KEYS_RULES, *_NEW_APP_RULES]})

    name: Name
    redirect_uris: RedirectUris
    public: bool = Field(
        default=False,
        description="a public app (mobile, single-page) has no secret and must use PKCE; this "
        "cannot change later",
    )
    token_endpoint_auth_method: AuthMethod | Absent = None
    jwks: Jwks | Absent = None
    jwks_uri: JwksUri | Absent = None

    @model_validator(mode="after")
    def _keys(self) -> AppInput:
        _check_keys_rules(self, new=True)
        return self


class AppPatch(_Settings):
    """Only the fields sent change. Public/confidential cannot change. What conflicts with the
    app as it is (private_key_jwt without keys for an app that has none, keys for an app that
    uses a secret, a method that does not fit a public or a confidential app) is a 409."""

    model_config = ConfigDict(json_schema_extra={"allOf": _KEYS_RULES})

    name: Name | Absent = None
    redirect_uris: RedirectUris | Absent = None
    token_endpoint_auth_method: AuthMethod | Absent = None
    jwks: Jwks | Absent = None
    jwks_uri: JwksUri | Absent = None

    @model_validator(mode="after")
    def _keys(self) -> AppPatch:
        _check_keys_rules(self, new=False)
        return self

    @model_validator(mode="before")
    @classmethod
    def _fixed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "public" in data:
            raise ValidationError(
                "public", "public cannot change after creation: register a new app instead."
            )
        return data
