"""Client (relying party) registration and secret rotation."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import Client
from iam.errors import ConflictError, ValidationError
from iam.secretbox import SecretBox, digest
from iam.services import audit
from iam.services.rows import found
from iam.settings import is_loopback_host

CONTEXT_POLICIES = ("none", "optional", "required")
SUPPORTED_SCOPES = ("openid", "profile", "email", "phone", "offline_access")
#: The admin API's scope: only for clients flagged as admin, only by `client_credentials`.
ADMIN_SCOPE = "iam:admin"
DEFAULT_SCOPES = "openid profile email phone offline_access"
DEFAULT_CONTEXT_CLAIM = "wecom_context"
#: Token lifetimes in seconds: (default, least, most). A refresh token lifetime of 0 means the
#: app gets no refresh tokens at all (its grant types lose `refresh_token`).
LIFETIMES = {
    "access_token_ttl": (600, 60, 86400),
    "id_token_ttl": (3600, 60, 86400),
    "refresh_token_ttl": (30 * 86400, 0, 90 * 86400),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
    """Absolute, no fragment, no wildcard; https unless loopback (RFC 8252 7.3 allows http).
    No spaces or control characters: they have no place in a URL, and PostgreSQL's JSON refuses
    a NUL."""
    if _CONTROL.search(uri or "") or " " in (uri or ""):
        raise ValidationError(field, f"{field} must not contain spaces or control characters.")
    try:
        parts = urlsplit(uri or "")
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed "[" in the host
        raise ValidationError(field, f"{field} is not a valid URL: {uri!r}") from None
    if not parts.scheme or not parts.netloc or not hostname:
        raise ValidationError(field, f"{field} must be an absolute URL: {uri!r}")
    if parts.fragment or "#" in uri:
        raise ValidationError(field, f"{field} must not contain a fragment: {uri!r}")
    if "*" in uri:
        raise ValidationError(field, f"{field} must not contain a wildcard: {uri!r}")
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise ValidationError(field, f"{field} must use https unless on loopback: {uri!r}")
    if parts.scheme not in ("http", "https"):
        raise ValidationError(field, f"{field} must be an http(s) URL: {uri!r}")
    if len(uri) > 2000:
        raise ValidationError(field, f"{field} is too long")
    return uri


def check_initiate_login_uri(uri: str | None) -> str | None:
    """An app's third-party-initiated login URI (OIDC Core 4): a redirect URI's rules (https
    unless loopback, no fragment); None or empty: the app takes no such links."""
    return check_redirect_uri(uri, "initiate_login_uri") if uri else None


def check_backchannel_logout_uri(uri: str | None) -> str | None:
    """Where an app takes logout tokens (OIDC Back-Channel Logout 1.0): a redirect URI's rules
    (https unless loopback, no fragment); None or empty: the app is not told."""
    return check_redirect_uri(uri, "backchannel_logout_uri") if uri else None


#: How a client proves itself at the token, revocation and introspection endpoints (RFC 7591
#: 2): a public client with none; a confidential one with its secret (`client_secret_basic`,
#: the default, or `client_secret_post`: either is taken), with an assertion signed by an HMAC
#: keyed by its secret (`client_secret_jwt`, RFC 7523; the secret is then also kept encrypted),
#: or with an assertion signed by one of its keys (`private_key_jwt`; such a client has no
#: secret).
AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
#: The method whose secret the server must know, not only its digest.
SECRET_JWT = "client_secret_jwt"
DEFAULT_AUTH_METHOD = "client_secret_basic"
#: Key types and curves an assertion may be signed with (RS256, ES256).
_KEY_TYPES = {"RSA": None, "EC": "P-256"}
#: Members of a JWK that only a private key has (RFC 7518 6.2.2, 6.3.2; 6.4 for `k`).
PRIVATE_KEY_MEMBERS = frozenset(["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
MAX_JWKS_KEYS = 10
#: RSA key sizes taken: NIST SP 800-131A's floor, and a ceiling against costly verifications.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
MAX_JWKS_BYTES = 32 * 1024


def check_auth_method(method: str | None, *, public: bool) -> str:
    """The client's token endpoint authentication method: `none` for a public client and only
    for it; the default for a confidential one is `client_secret_basic`."""
    method = method or ("none" if public else DEFAULT_AUTH_METHOD)
    if method not in AUTH_METHODS:
        raise ValidationError(
            "token_endpoint_auth_method",
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}",
        )
    if public != (method == "none"):
        raise ValidationError(
            "token_endpoint_auth_method",
            "A public client authenticates with none, and only a public client does.",
        )
    return method


#: What an app's access tokens may be signed with: RS256 (the default: every JWT library
#: verifies it) or ES256 (cheaper to sign; the app's resource servers must support it). ID
#: tokens are RS256 for every app.
ACCESS_TOKEN_ALGS = ("RS256", "ES256")
DEFAULT_ACCESS_TOKEN_ALG = "RS256"


def check_access_token_alg(alg: str | None) -> str:
    """The app's access token signing algorithm; None or empty: the default, RS256."""
    alg = alg or DEFAULT_ACCESS_TOKEN_ALG
    if alg not in ACCESS_TOKEN_ALGS:
        raise ValidationError(
            "access_token_signing_alg",
            f"access_token_signing_alg must be one of {', '.join(ACCESS_TOKEN_ALGS)}",
        )
    return alg


def check_jwks(jwks: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A JWK Set of public RSA or P-256 keys (RFC 7517 5), given as JSON text or its value; a
    private key (`d`, ...) is refused: the client keeps it. None or empty: no key set."""
    if jwks is None or jwks == "":
        return None
    value: Any = jwks
    if isinstance(value, str):
        if len(value) > MAX_JWKS_BYTES:
            raise ValidationError("jwks", "jwks is too long.")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise ValidationError("jwks", "jwks is not JSON.") from None
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_JWKS_KEYS:
        raise ValidationError(
            "jwks", f'jwks must be a JWK Set: {{"keys": [...]}} with 1 to {MAX_JWKS_KEYS} keys.'
        )
    for key in keys:
        if not isinstance(key, dict):
            raise ValidationError("jwks", "Each key of jwks must be a JSON object.")
        if PRIVATE_KEY_MEMBERS & key.keys():
            raise ValidationError(
                "jwks", "jwks holds a private or secret key: give the public keys only."
            )
        kty = key.get("kty")
        if not isinstance(kty, str) or kty not in _KEY_TYPES or key.get("crv") != _KEY_TYPES[kty]:
            raise ValidationError("jwks", "jwks keys must be RSA or EC P-256 public keys.")
        if kty == "RSA" and not MIN_RSA_BITS <= _modulus_bits(key.get("n")) <= MAX_RSA_BITS:
            raise ValidationError(
                "jwks", f"jwks RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits."
            )
    key_set = {"keys": keys}
    if len(json.dumps(key_set)) > MAX_JWKS_BYTES:
        raise ValidationError("jwks", "jwks is too long.")
    try:
        KeySet.import_key_set(key_set)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as error:
        raise ValidationError("jwks", f"jwks has a key that cannot be read: {error}") from None
    return key_set


def _modulus_bits(n: Any) -> int:
    """The size of an RSA key's modulus (base64url `n`); 0 when it is not one."""
    if not isinstance(n, str) or len(n) > 2 * MAX_RSA_BITS // 6:
        return 0
    try:
        value = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (ValueError, binascii.Error):
        return 0
    return int.from_bytes(value, "big").bit_length()


def check_jwks_uri(uri: str | None) -> str | None:
    """Where a client's JWK Set is fetched: https (http only on loopback), no fragment; None or
    empty: none."""
    return check_redirect_uri(uri, "jwks_uri") if uri else None


def check_client_keys(method: str, jwks: dict[str, Any] | None, jwks_uri: str | None) -> None:
    """A `private_key_jwt` client has exactly one of `jwks` and `jwks_uri`; another has none."""
    if method == "private_key_jwt":
        if jwks is not None and jwks_uri is not None:
            raise ValidationError("jwks", "Give jwks or jwks_uri, not both.")
        if jwks is None and jwks_uri is None:
            raise ValidationError("jwks", "A private_key_jwt client needs jwks or jwks_uri.")
    elif jwks is not None or jwks_uri is not None:
        raise ValidationError(
            "jwks" if jwks is not None else "jwks_uri",
            "Only a private_key_jwt client has jwks or jwks_uri.",
        )


def origin_of(uri: str) -> str:
    """`scheme://host[:port]`, lower-cased as browsers compare origins."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}".lower()


def registered_origins(client: Client) -> frozenset[str]:
    """The origins an app has registered: those of its redirect URIs and its
    `initiate_login_uri`. A workbench link's `target_link_uri` must be on one of them."""
    uris = [*client.redirect_uris, *filter(None, [client.initiate_login_uri])]
    return frozenset(origin_of(uri) for uri in uris)


#: The default port of each scheme an origin may have: a browser's `Origin` leaves it out.
_DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_ORIGINS = 20


def browser_origin(uri: str) -> str | None:
    """The origin a browser on `uri` sends (`Origin`, RFC 6454): `scheme://host[:port]`,
    lower-cased, the host in ASCII (IDNA), without userinfo and the scheme's default port; None
    for what has no such origin (not http(s), no host)."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
        if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
            return None
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
    except (ValueError, UnicodeError):
        return None
    scheme = parts.scheme.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, _DEFAULT_PORTS[scheme]) else "")


def check_origin(origin: str, field: str = "allowed_origins") -> str:
    """An origin a single-page app calls from: `scheme://host[:port]`, https unless on a
    loopback host, without path (not even `/`), query, fragment, userinfo or wildcard. Given
    back as browsers send it (`browser_origin`)."""
    problem = f"{field}: an origin is scheme://host[:port] (https, or http on loopback), "
    problem += f"without a path, query, fragment or wildcard: {origin[:100]!r}"
    if not origin or _CONTROL.search(origin) or " " in origin or len(origin) > 300:
        raise ValidationError(field, problem)
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        raise ValidationError(field, problem) from None
    normal = browser_origin(origin)
    if (
        normal is None
        or parts.path
        or parts.query
        or parts.fragment
        or any(mark in origin for mark in "?#*@")
        or (normal.startswith("http:") and not is_loopback_host(parts.hostname or ""))
    ):
        raise ValidationError(field, problem)
    return normal


def check_allowed_origins(origins: Sequence[str]) -> list[str]:
    """Each origin checked (`check_origin`), duplicates dropped, order kept."""
    if isinstance(origins, str):  # one origin, not its characters
        origins = [origins]
    checked = [check_origin(origin) for origin in origins]
    if len(checked) > MAX_ORIGINS:
        raise ValidationError("allowed_origins", f"At most {MAX_ORIGINS} allowed origins.")
    return list(dict.fromkeys(checked))


def cors_origins(db: Session) -> frozenset[str]:
    """Every origin a browser may call the token endpoints from (`iam.oidc.cors`): those of all
    clients' redirect URIs and all their `allowed_origins`."""
    origins: set[str] = set()
    for redirect_uris, allowed in db.execute(select(Client.redirect_uris, Client.allowed_origins)):
        origins.update(filter(None, map(browser_origin, redirect_uris or ())))
        origins.update(allowed or ())
    return frozenset(origins)


#: Per database (engine), a new number each time a unit that changed a client commits in this
#: process: `iam.oidc.cors` reads its set of origins again when the number moves.
_CHANGES: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_TICKS = itertools.count(1)


def changes_seen(engine: Engine) -> int:
    """The number of the last committed change of a client on `engine` (0: none yet)."""
    return _CHANGES.get(engine, 0)


def _changed(db: Session) -> None:
    """Mark a change of a client, once the unit commits (a unit rolled back changed nothing)."""
    engine = db.get_bind().engine

    def committed(_session: Session) -> None:
        _CHANGES[engine] = next(_TICKS)

    event.listen(db, "after_commit", committed, once=True)


def workbench_link(issuer: str, client_id: str, corp_id: str) -> str:
    """An app's link for one corporation's WeCom workbench (its homepage, 应用主页 there):
    `{issuer}/launch/{client_id}/wecom/{corp_id}`, each id quoted as one path segment."""
    return f"{issuer}/launch/{quote(client_id, safe='')}/wecom/{quote(corp_id, safe='')}"


def initiate_login_url(
    db: Session, client_id: str, issuer: str, target_link_uri: str | None = None
) -> str:
    """Where a workbench link sends the browser once signed in: the app's `initiate_login_uri`
    with `iss` and, when given, `target_link_uri` (OIDC Core 4), which must be on one of the
    app's registered origins (no open redirect through us). `NotFoundError` for no such app,
    `ValidationError` for an app that takes no such links or a target elsewhere."""
    client = _find(db, client_id)
    if not client.initiate_login_uri:
        raise ValidationError(
            "initiate_login_uri", f"The app {client_id!r} has no initiate_login_uri."
        )
    params = {"iss": issuer}
    if target_link_uri:
        try:
            on_origin = origin_of(target_link_uri) in registered_origins(client)
        except ValueError:
            on_origin = False
        if not on_origin or len(target_link_uri) > 2000 or _CONTROL.search(target_link_uri):
            raise ValidationError(
                "target_link_uri", "target_link_uri is not on one of the app's origins."
            )
        params["target_link_uri"] = target_link_uri
    separator = "&" if urlsplit(client.initiate_login_uri).query else "?"
    return f"{client.initiate_login_uri}{separator}{urlencode(params)}"


def check_scopes(scopes: str, *, admin: bool = False, field: str = "scopes") -> str:
    requested = list(dict.fromkeys(scopes.split()))
    allowed = (*SUPPORTED_SCOPES, ADMIN_SCOPE) if admin else SUPPORTED_SCOPES
    unknown = [scope for scope in requested if scope not in allowed]
    if unknown:
        raise ValidationError(field, f"Unsupported scopes: {' '.join(unknown)}")
    return " ".join(requested)


def check_name(name: str, field: str = "name") -> str:
    """1 to 200 characters once trimmed, no control characters (a NUL breaks PostgreSQL)."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationError(field, "A client name of 1 to 200 characters is required.")
    if _CONTROL.search(name):
        raise ValidationError(field, "A client name must not contain control characters.")
    return name


def check_redirect_uris(uris: Sequence[str], field: str, *, required: bool) -> list[str]:
    """Each URI checked, duplicates dropped, order kept; at least one when `required`."""
    if isinstance(uris, str):  # one URI, not its characters
        uris = [uris]
    if required and not uris:
        raise ValidationError(field, "At least one redirect URI is required.")
    return [check_redirect_uri(uri, field) for uri in dict.fromkeys(uris)]


def check_context_policy(policy: str) -> str:
    if policy not in CONTEXT_POLICIES:
        raise ValidationError(
            "context_policy", f"context_policy must be one of {', '.join(CONTEXT_POLICIES)}"
        )
    return policy


def check_context_claim(claim: str | None) -> str:
    """The claim's name, `wecom_context` when none is given; never one the tokens already use."""
    claim = claim or DEFAULT_CONTEXT_CLAIM
    if not _CLAIM_NAME.fullmatch(claim) or claim in RESERVED_CLAIMS:  # fullmatch: no final \n
        raise ValidationError("context_claim", f"Not a usable claim name: {claim!r}")
    return claim


def check_lifetime(field: str, seconds: int) -> int:
    """A whole number of seconds within the bounds `LIFETIMES` gives for `field`."""
    _default, least, most = LIFETIMES[field]
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not least <= seconds <= most:
        raise ValidationError(field, f"{field} must be {least} to {most} seconds.")
    return seconds


def grant_types_for(*, public: bool, refresh_token_ttl: int) -> list[str]:
    """Code flow always; refresh unless its lifetime is 0; `client_credentials` only with a
    secret."""
    grant_types = ["authorization_code"]
    if refresh_token_ttl > 0:
        grant_types.append("refresh_token")
    if not public:
        grant_types.append("client_credentials")
    return grant_types


def _new_client_id() -> str:
    return "c_" + secrets.token_hex(12)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _encrypted(box: SecretBox | None, secret: str) -> str:
    """A `client_secret_jwt` client's secret as kept: encrypted with the at-rest key."""
    if box is None:
        raise TypeError("a client_secret_jwt client's secret is kept encrypted: pass box")
    return box.encrypt(secret)


def create_client(
    db: Session,
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
    access_token_ttl: int = LIFETIMES["access_token_ttl"][0],
    id_token_ttl: int = LIFETIMES["id_token_ttl"][0],
    refresh_token_ttl: int = LIFETIMES["refresh_token_ttl"][0],
    initiate_login_uri: str | None = None,
    backchannel_logout_uri: str | None = None,
    token_endpoint_auth_method: str | None = None,
    jwks: str | dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    allowed_origins: Sequence[str] = (),
    access_token_signing_alg: str | None = None,
    actor: str = "cli",
    box: SecretBox | None = None,
) -> RegisteredClient:
    """Register a client. Confidential clients also get `client_credentials`; `actor` is who
    did it, for the audit trail (`cli`, `admin:<username>`, `client:<client_id>`). `box`
    encrypts a `client_secret_jwt` client's secret (no other client needs it)."""
    name = check_name(name)
    uris = check_redirect_uris(redirect_uris, "redirect_uri", required=True)
    logout_uris = check_redirect_uris(
        post_logout_redirect_uris, "post_logout_redirect_uri", required=False
    )
    context_policy = check_context_policy(context_policy)
    claim = check_context_claim(context_claim)
    access_token_ttl = check_lifetime("access_token_ttl", access_token_ttl)
    id_token_ttl = check_lifetime("id_token_ttl", id_token_ttl)
    refresh_token_ttl = check_lifetime("refresh_token_ttl", refresh_token_ttl)
    initiate_login_uri = check_initiate_login_uri(initiate_login_uri)
    backchannel_logout_uri = check_backchannel_logout_uri(backchannel_logout_uri)
    auth_method = check_auth_method(token_endpoint_auth_method, public=public)
    key_set, key_set_uri = check_jwks(jwks), check_jwks_uri(jwks_uri)
    check_client_keys(auth_method, key_set, key_set_uri)
    origins = check_allowed_origins(allowed_origins)
    alg = check_access_token_alg(access_token_signing_alg)
    if client_id is not None and not re.fullmatch(r"[A-Za-z0-9_\-.]{3,64}", client_id):
        raise ValidationError("client_id", "client_id must be 3-64 letters, digits, _ - .")
    if admin and public:
        raise ValidationError("admin", "An admin client must be confidential (client_credentials).")
    grant_types = grant_types_for(public=public, refresh_token_ttl=refresh_token_ttl)
    secret = None if public or auth_method == "private_key_jwt" else _new_secret()
    kept = _encrypted(box, secret) if secret and auth_method == SECRET_JWT else None
    client = Client(
        client_id=client_id or _new_client_id(),
        name=name,
        is_public=public,
        is_admin=admin,
        secret_hash=digest(secret) if secret else None,
        secret_encrypted=kept,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        grant_types=grant_types,
        access_token_signing_alg=alg,
        allowed_scopes=check_scopes(f"{scopes} {ADMIN_SCOPE}" if admin else scopes, admin=admin),
        context_policy=context_policy,
        context_claim=claim,
        access_token_ttl=access_token_ttl,
        id_token_ttl=id_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        initiate_login_uri=initiate_login_uri,
        backchannel_logout_uri=backchannel_logout_uri,
        token_endpoint_auth_method=auth_method,
        jwks=key_set,
        jwks_uri=key_set_uri,
        allowed_origins=origins,
    )
    if db.get(Client, client.client_id) is not None:
        # (Registered meanwhile by someone else: the unit's commit fails, it runs again and
        # lands here.)
        raise ConflictError(f"client_id {client.client_id!r} is taken.")
    db.add(client)
    _changed(db)
    audit.record(db.connection(), "client.created", client_id=client.client_id, actor=actor)
    return RegisteredClient(client, secret)


def _find(db: Session, client_id: str) -> Client:
    return found(db, Client, client_id, "client")


def get_client(db: Session, client_id: str) -> Client:
    return _find(db, client_id)


def list_clients(db: Session) -> list[Client]:
    return list(db.scalars(select(Client).order_by(Client.created_at)))


def rotate_secret(
    db: Session,
    client_id: str,
    keep_previous: bool = True,
    *,
    box: SecretBox | None = None,
    actor: str = "cli",
) -> RegisteredClient:
    """A new secret; the current one stays valid as the previous until retired. (The first
    secret of a client that moved to `client_secret_jwt` comes this way too.)"""
    client = _find(db, client_id)
    if client.is_public:
        raise ValidationError("client_id", "A public client has no secret to rotate.")
    if client.token_endpoint_auth_method == "private_key_jwt":
        raise ValidationError("client_id", "A private_key_jwt client has keys, not a secret.")
    secret = _new_secret()
    client.previous_secret_hash = client.secret_hash if keep_previous else None
    client.secret_hash = digest(secret)
    if client.token_endpoint_auth_method == SECRET_JWT:
        client.previous_secret_encrypted = client.secret_encrypted if keep_previous else None
        client.secret_encrypted = _encrypted(box, secret)
    client.secret_rotated_at = utcnow()
    audit.record(db.connection(), "client.secret_rotated", client_id=client_id, actor=actor)
    return RegisteredClient(client, secret)


def delete_client(db: Session, client_id: str, *, actor: str = "cli") -> None:
    db.delete(_find(db, client_id))
    _changed(db)
    audit.record(db.connection(), "client.deleted", client_id=client_id, actor=actor)


def update_client(
    db: Session,
    client_id: str,
    *,
    actor: str,
    name: str | None = None,
    redirect_uris: Sequence[str] | None = None,
    post_logout_redirect_uris: Sequence[str] | None = None,
    allowed_scopes: str | Sequence[str] | None = None,
    context_policy: str | None = None,
    context_claim: str | None = None,
    access_token_ttl: int | None = None,
    id_token_ttl: int | None = None,
    refresh_token_ttl: int | None = None,
    initiate_login_uri: str | None = None,
    backchannel_logout_uri: str | None = None,
    token_endpoint_auth_method: str | None = None,
    jwks: str | dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    access_token_signing_alg: str | None = None,
) -> Client:
    """Change what is given (None leaves a setting as it is), with create_client's checks;
    all or nothing. An empty `context_claim` means the default, `wecom_context`.

    Public or confidential is fixed at creation: a public app has no secret to hand out and a
    confidential app's users rely on its secret, so switching means registering a new app.
    An admin client keeps `iam:admin` whatever scopes it is given (its admin flag grants it);
    any other client may not get it. A refresh token lifetime of 0 turns refresh tokens off
    (refresh tokens already issued stop working too); issued ones keep their original expiry
    otherwise. An empty `initiate_login_uri` removes it (the app's workbench links stop); so
    does an empty `backchannel_logout_uri` (the app is no longer told of logouts).
    `allowed_origins` replaces the list (empty: none)."""
    client = _find(db, client_id)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = check_name(name)
    if redirect_uris is not None:
        changes["redirect_uris"] = check_redirect_uris(
            redirect_uris, "redirect_uris", required=True
        )
    if post_logout_redirect_uris is not None:
        changes["post_logout_redirect_uris"] = check_redirect_uris(
            post_logout_redirect_uris, "post_logout_redirect_uris", required=False
        )
    if allowed_scopes is not None:
        scopes = allowed_scopes if isinstance(allowed_scopes, str) else " ".join(allowed_scopes)
        if client.is_admin:
            scopes = f"{scopes} {ADMIN_SCOPE}"
        changes["allowed_scopes"] = check_scopes(
            scopes, admin=client.is_admin, field="allowed_scopes"
        )
    if context_policy is not None:
        changes["context_policy"] = check_context_policy(context_policy)
    if context_claim is not None:
        changes["context_claim"] = check_context_claim(context_claim)
    for field, seconds in (
        ("access_token_ttl", access_token_ttl),
        ("id_token_ttl", id_token_ttl),
        ("refresh_token_ttl", refresh_token_ttl),
    ):
        if seconds is not None:
            changes[field] = check_lifetime(field, seconds)
    if initiate_login_uri is not None:
        changes["initiate_login_uri"] = check_initiate_login_uri(initiate_login_uri)
    if backchannel_logout_uri is not None:
        changes["backchannel_logout_uri"] = check_backchannel_logout_uri(backchannel_logout_uri)
    changes.update(_auth_changes(client, token_endpoint_auth_method, jwks, jwks_uri))
    if allowed_origins is not None:
        changes["allowed_origins"] = check_allowed_origins(allowed_origins)
    if access_token_signing_alg is not None:
        changes["access_token_signing_alg"] = check_access_token_alg(access_token_signing_alg)
    if "refresh_token_ttl" in changes:
        changes["grant_types"] = grant_types_for(
            public=client.is_public, refresh_token_ttl=changes["refresh_token_ttl"]
        )
    changed = {key: value for key, value in changes.items() if getattr(client, key) != value}
    if not changed:
        return client
    for key, value in changed.items():
        setattr(client, key, value)
    _changed(db)
    audit.record(
        db.connection(), "client.updated", client_id=client_id, actor=actor, changed=sorted(changed)
    )
    return client


def _auth_changes(
    client: Client,
    method: str | None,
    jwks: str | dict[str, Any] | None,
    jwks_uri: str | None,
) -> dict[str, Any]:
    """What changes in how the client authenticates, checked as a whole. Leaving
    `private_key_jwt` drops the keys not given anew; moving to it drops the secrets (the client
    gets one again by a rotation once it uses a secret method again). Moving to
    `client_secret_jwt` drops the secrets too (only their digests are known): a rotation gives
    the client its first secret for it; leaving it keeps the secret (its digest).

    A conflict with what the client has (keys asked for that it was not given, keys given to a
    client that uses a secret) is a `ConflictError`; a change inconsistent in itself, a
    `ValidationError`."""
    changes: dict[str, Any] = {}
    if method is not None:
        if method in AUTH_METHODS and (method == "none") != client.is_public:
            kind = "public" if client.is_public else "confidential"
            raise ConflictError(
                f"The app is {kind}, fixed at creation: it cannot authenticate with {method}."
            )
        changes["token_endpoint_auth_method"] = check_auth_method(method, public=client.is_public)
    if jwks is not None:
        changes["jwks"] = check_jwks(jwks)
    if jwks_uri is not None:
        changes["jwks_uri"] = check_jwks_uri(jwks_uri)
    if not changes:
        return changes
    final_method = changes.get("token_endpoint_auth_method", client.token_endpoint_auth_method)
    if final_method != "private_key_jwt" and method is not None:
        changes.setdefault("jwks", None)
        changes.setdefault("jwks_uri", None)
    elif changes.get("jwks") is not None:  # one kind of keys replaces the other
        changes.setdefault("jwks_uri", None)
    elif changes.get("jwks_uri") is not None:
        changes.setdefault("jwks", None)
    both_given = changes.get("jwks") is not None and changes.get("jwks_uri") is not None
    if both_given or method is not None and final_method != "private_key_jwt":
        check_client_keys(final_method, changes.get("jwks"), changes.get("jwks_uri"))
    try:
        check_client_keys(
            final_method,
            changes.get("jwks", client.jwks),
            changes.get("jwks_uri", client.jwks_uri),
        )
    except ValidationError as error:
        raise ConflictError(f"{error} (The app authenticates with {final_method}.)") from None
    if final_method != client.token_endpoint_auth_method:
        if final_method in ("private_key_jwt", SECRET_JWT):
            changes.update(secret_hash=None, previous_secret_hash=None)
        changes.update(secret_encrypted=None, previous_secret_encrypted=None)
    return changes


def retire_previous_secret(db: Session, client_id: str, *, actor: str) -> Client:
    """End a rotation: the previous secret stops working, only the current one is left.
    Nothing to retire is not an error (the end state is the one asked for)."""
    client = _find(db, client_id)
    if client.is_public:
        raise ValidationError("client_id", "A public client has no secret to retire.")
    if client.previous_secret_hash is None:
        return client
    client.previous_secret_hash = None
    client.previous_secret_encrypted = None
    audit.record(
        db.connection(), "client.previous_secret_retired", client_id=client_id, actor=actor
    )
    return client
