"""Client authentication with a signed JWT: `private_key_jwt` and `client_secret_jwt` (RFC 7523
2.2, OIDC Core 9).

A client registered with one of them proves itself at `/token`, `/revoke` and `/introspect`
with `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
`client_assertion` signed by

- `private_key_jwt`: one of its keys (RS256 or ES256): the JWK Set registered with it, or the
  one its `jwks_uri` publishes;
- `client_secret_jwt`: an HMAC (HS256) keyed by its secret (the UTF-8 octets of the secret, as
  OIDC Core 9 says), which the server keeps encrypted for such a client; during a rotation the
  previous secret signs too.

Authlib's `JWTBearerClientAssertion` reads and checks the assertion; this module adds what it
leaves to us:

- the client must be registered with the method the assertion is judged for: any other client
  sending an assertion, or a request that also carries a secret, is refused (`invalid_client`,
  one method per request);
- `aud` is the token endpoint or the issuer (or the revocation or introspection endpoint when
  that is the one called); `exp` is required and at most `MAX_LIFETIME` ahead; `iat`, when sent,
  not in the future; clock skew `LEEWAY`;
- every `jti` is used once: remembered until the assertion expires, in Redis when
  `IAM_REDIS_URL` is set (`SET NX EX`, so every instance sees it), in this process otherwise
  (enough for one instance only; also the fallback, with a warning, while Redis fails);
- keys at a `jwks_uri` are fetched with a short timeout, kept `JWKS_TTL`, and fetched again for
  an unknown `kid`, at most once per `REFETCH_INTERVAL` for a client (a stream of made-up kids
  must not turn us into a fetcher of its URL). A fetch runs in the protocol request's worker
  thread (`iam.oidc.runner.Runner`), never on the event loop.

Every refusal is `invalid_client` with status 401.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import httpx
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, Key, KeySet, OctKey, RSAKey
from redis import Redis, RedisError

from iam.db.fastpath import ClientView
from iam.errors import ValidationError
from iam.secretbox import SecretBox, SecretBoxError, digest
from iam.services.clients import check_jwks

log = logging.getLogger("iam.oidc")

ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
#: The methods of this module, tried before the secret ones so that a request carrying an
#: assertion is judged by it.
JWT_METHODS = ("private_key_jwt", "client_secret_jwt")
#: Algorithms a `private_key_jwt` assertion may be signed with, and the key type each needs.
ALGORITHMS = {"RS256": RSAKey, "ES256": ECKey}
#: The algorithm of a `client_secret_jwt` assertion.
SECRET_ALGORITHMS = ("HS256",)
#: Every algorithm an assertion may be signed with (discovery says these).
SIGNING_ALGORITHMS = (*ALGORITHMS, *SECRET_ALGORITHMS)
#: Seconds of clock skew allowed on `exp` and `iat`.
LEEWAY = 30
#: The furthest ahead an assertion's `exp` may be (seconds): a short-lived, single-use proof.
MAX_LIFETIME = 300
JWKS_TTL = 300
REFETCH_INTERVAL = 60
FETCH_TIMEOUT = 3.0
MAX_JWKS_RESPONSE = 64 * 1024
#: How many used `jti`s this process remembers at most: beyond it (after forgetting the
#: expired ones), assertions are refused rather than memory grown without end.
MAX_REMEMBERED = 200_000

#: The audiences of the request being checked (set for the duration of one check).
_audiences: ContextVar[list[str]] = ContextVar("assertion_audiences")


def refused(description: str) -> InvalidClientError:
    return InvalidClientError(status_code=401, description=description)


# --- used `jti`s ---------------------------------------------------------------------------


class Replays(Protocol):
    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Remember this `jti` of this client until `expires_at`; False if it was seen."""


class MemoryReplays:
    """Used `jti`s in this process: a single instance's memory (and Redis's fallback)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        key = _jti_key(client_id, jti)
        now = self._clock()
        with self._lock:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen = {k: until for k, until in self._seen.items() if until > now}
                if len(self._seen) >= MAX_REMEMBERED:
                    return False
            until = self._seen.get(key)
            if until is not None and until > now:
                return False
            self._seen[key] = expires_at
            return True


class RedisReplays:
    """Used `jti`s in Redis, shared by every instance: `SET key 1 NX EX ttl` is one atomic
    "first one wins". While Redis fails, this process's memory stands in (with a warning)."""

    def __init__(self, redis: Redis, fallback: MemoryReplays | None = None) -> None:
        self._redis = redis
        self._fallback = fallback or MemoryReplays()

    def first_use(self, client_id: str, jti: str, expires_at: float) -> bool:
        ttl = max(1, int(expires_at - time.time()) + 1)
        try:
            return bool(self._redis.set(_jti_key(client_id, jti), b"1", nx=True, ex=ttl))
        except RedisError as error:
            log.warning("Redis failed remembering an assertion's jti, in-process: %s", error)
            return self._fallback.first_use(client_id, jti, expires_at)


def _jti_key(client_id: str, jti: str) -> str:
    """The key a used `jti` is kept under: a digest, so any `jti` makes a short, plain key."""
    return "iam:jti:" + digest(f"{client_id}\x1f{jti}")


# --- the keys of a `jwks_uri` --------------------------------------------------------------


class JwksCache:
    """Key sets fetched from clients' `jwks_uri`s, per client and URI."""

    def __init__(self, http: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self.clock = clock
        self._lock = threading.Lock()
        #: (client_id, uri) → (keys, fetched at)
        self._sets: dict[tuple[str, str], tuple[KeySet, float]] = {}

    def keys(self, client_id: str, uri: str, kid: str | None) -> KeySet:
        """The client's keys: fetched when not held or older than `JWKS_TTL`, and again when
        `kid` names none of them and the last fetch is `REFETCH_INTERVAL` old."""
        entry = self._sets.get((client_id, uri))
        now = self.clock()
        if entry is not None:
            keys, fetched_at = entry
            fresh = now - fetched_at < JWKS_TTL
            known = kid is None or any(key.kid == kid for key in keys)
            if fresh and (known or now - fetched_at < REFETCH_INTERVAL):
                return keys
        try:
            keys = self._fetch(uri)
        except (httpx.HTTPError, ValueError, ValidationError) as error:
            log.warning("cannot fetch the keys of client %s at %s: %s", client_id, uri, error)
            if entry is not None:  # keep what was held; ask again after the interval
                with self._lock:
                    self._sets[(client_id, uri)] = (entry[0], now - JWKS_TTL + REFETCH_INTERVAL)
                return entry[0]
            raise refused("The client's keys cannot be fetched from its jwks_uri.") from None
        with self._lock:
            self._sets[(client_id, uri)] = (keys, now)
        return keys

    def close(self) -> None:
        self._http.close()

    def _fetch(self, uri: str) -> KeySet:
        with self._http.stream("GET", uri, timeout=FETCH_TIMEOUT, follow_redirects=False) as reply:
            if reply.status_code != 200:
                raise ValueError(f"HTTP {reply.status_code}")
            body = b""
            for chunk in reply.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_RESPONSE:
                    raise ValueError("the key set is too large")
        checked = check_jwks(body.decode("utf-8"))
        assert checked is not None  # noqa: S101 - an empty body is not JSON
        return KeySet.import_key_set(checked)  # type: ignore[arg-type]


# --- the assertion -------------------------------------------------------------------------


class ClientAssertion(JWTBearerClientAssertion):
    """Authlib's JWT client assertion (RFC 7523 3), for clients registered with one of
    `JWT_METHODS`; see the module's docstring for what is checked besides. Authlib names the
    method a client authenticated with by the function that accepted it: `authenticator`
    gives one function per method."""

    def __init__(self, issuer: str, replays: Replays, jwks: JwksCache, box: SecretBox) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.issuer = issuer
        self.replays = replays
        self.jwks = jwks
        self.box = box

    def authenticator(self, method: str) -> Callable[[Any, Any], ClientView | None]:
        """Authlib's client authentication function for `method` (one of `JWT_METHODS`)."""
        return lambda query_client, request: self.authenticate(method, query_client, request)

    def authenticate(self, method: str, query_client: Any, request: Any) -> ClientView | None:
        """The client the request's assertion proves, if it is registered with `method`; None
        for a request without an assertion or a client registered with the other method."""
        form = request.form
        if "client_assertion" not in form and "client_assertion_type" not in form:
            return None
        try:
            return self._authenticate(method, query_client, request)
        except InvalidClientError as error:
            error.status_code = 401
            raise

    def _authenticate(self, method: str, query_client: Any, request: Any) -> ClientView | None:
        form = request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise refused(f"client_assertion_type must be {ASSERTION_TYPE}, with an assertion.")
        if form.get("client_secret") or extract_basic_authorization(request.headers)[0]:
            raise refused("Use one client authentication method, not several.")
        assertion = form["client_assertion"]
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise refused("The assertion has no 'sub' naming the client.")
        if form.get("client_id") not in (None, client_id):
            raise refused("client_id is not the assertion's subject.")
        client: ClientView | None = query_client(client_id)
        if client is None:
            raise refused("The client does not exist on this server.")
        registered = client.token_endpoint_auth_method
        if client.is_public or registered not in JWT_METHODS:
            raise refused(f"The client authenticates with {registered}, not an assertion.")
        if registered != method:
            return None
        request.client = client
        token = _audiences.set(self._audiences_for(request))
        resolver = (
            self._secret_resolver(client, assertion)
            if method == "client_secret_jwt"
            else self._key_resolver(client)
        )
        try:
            self.process_assertion_claims(assertion, resolver)
        finally:
            _audiences.reset(token)
        return client

    def _audiences_for(self, request: Any) -> list[str]:
        """The token endpoint and the issuer; also the endpoint called, when it is another of
        ours that takes client authentication (revocation, introspection)."""
        audiences = [f"{self.issuer}/token", self.issuer]
        called = str(request.uri).split("?", 1)[0]
        if called in (f"{self.issuer}/revoke", f"{self.issuer}/introspect"):
            audiences.append(called)
        return audiences

    def get_audiences(self) -> list[str]:
        return _audiences.get()

    def _key_resolver(self, client: ClientView) -> Callable[[Any], Key]:
        """joserfc's key callback: the client's key for the assertion's `alg` and `kid`."""

        def resolve(obj: Any) -> Key:
            header = obj.headers()
            key_type = ALGORITHMS.get(header.get("alg"))
            if key_type is None:
                raise refused(f"The assertion must be signed with {' or '.join(ALGORITHMS)}.")
            kid = header.get("kid")
            if not isinstance(kid, str | None):
                raise refused("The assertion's kid is not a string.")
            keys = self._client_keys(client, kid)
            matching = [
                key for key in keys if isinstance(key, key_type) and (kid is None or key.kid == kid)
            ]
            if len(matching) != 1:
                raise refused(
                    "No key of the client matches the assertion's kid and alg."
                    if matching == []
                    else "The client has several such keys: the assertion must name its kid."
                )
            return matching[0]

        return resolve

    def _secret_resolver(self, client: ClientView, assertion: str) -> Callable[[Any], Key]:
        """joserfc's key callback for a `client_secret_jwt` assertion: the client's secret (the
        previous one when that is the one that signed it)."""

        def resolve(obj: Any) -> Key:
            if obj.headers().get("alg") not in SECRET_ALGORITHMS:
                raise refused(
                    f"The assertion must be signed with {' or '.join(SECRET_ALGORITHMS)}."
                )
            stored = [s for s in (client.secret_encrypted, client.previous_secret_encrypted) if s]
            if not stored:
                raise refused("The client has no secret yet: an administrator rotates it.")
            try:
                keys = [OctKey.import_key(self.box.decrypt(each).encode()) for each in stored]
            except SecretBoxError as error:
                log.error("client %s: its secret does not decrypt: %s", client.client_id, error)
                raise refused("The client's secret cannot be read on this server.") from None
            for key in keys[:-1]:
                try:
                    jws.deserialize_compact(assertion, key, algorithms=list(SECRET_ALGORITHMS))
                except BadSignatureError:
                    continue
                return key
            return keys[-1]

        return resolve

    def _client_keys(self, client: ClientView, kid: str | None) -> list[Key]:
        if client.jwks_uri:
            keys = self.jwks.keys(client.client_id, client.jwks_uri, kid)
        elif client.jwks:
            keys = KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        else:
            raise refused("The client has no keys.")
        return list(keys)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        """After Authlib's checks (signature, iss = sub, aud, exp): `exp` not too far ahead,
        then the `jti` used once."""
        exp = claims["exp"]
        if exp > time.time() + MAX_LIFETIME + LEEWAY:
            raise refused(f"The assertion's exp is more than {MAX_LIFETIME} seconds ahead.")
        if not isinstance(jti, str) or not jti or len(jti) > 500:
            raise refused("The assertion's jti must be a string of 1 to 500 characters.")
        return self.replays.first_use(claims["sub"], jti, float(exp) + LEEWAY)
