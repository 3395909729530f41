"""The key ring: the private keys that sign now (one per algorithm: RS256, ES256) and the
published public keys, cached briefly.

A few seconds of cache keeps the database and the RSA import off the hot path. A key rotated by
another process (the CLI, another instance) signs here within `ttl` seconds; meanwhile the
old key still signs, and stays published. What must not wait is verification and publication:
a token whose kid this ring has not loaded makes it ask the database whether that key is
published (one primary-key lookup, like the token's own), and reload if it is; `/jwks.json`
reads the published keys from the database on each request.

The ring's reads serve a cache shared by every request, so each is a short unit of work of its
own (`one_unit`), never the unit of the request that happens to need them.

The ring also remembers the access tokens whose signature it has checked (`verified`), by their
exact text, while the key that signed each is published: a token presented again skips the
signature check and the parsing, never the token's record (`iam.oidc.tokens`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet, KeySetSerialization

from iam import metrics
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.secretbox import SecretBox
from iam.services.signing_keys import ALGORITHM, is_published, load_material, published


@dataclass(frozen=True)
class LoadedKeys:
    by_algorithm: Mapping[str, KeySet]  # each exactly one private key, so joserfc writes its kid
    verifying: KeySet  # every published public key
    kids: frozenset[str]  # of the published keys

    @property
    def signing(self) -> KeySet:
        """The RS256 key: ID tokens and logout tokens (contract), default access tokens."""
        return self.by_algorithm[ALGORITHM]

    def signing_for(self, alg: str) -> KeySet:
        """The active key of `alg` (KeyError for an algorithm we do not sign with)."""
        return self.by_algorithm[alg]


#: How many checked access tokens a ring remembers (`KeyRing.verified`); past it, it starts over.
VERIFIED_LIMIT = 4096


class KeyRing:
    algorithm = ALGORITHM

    def __init__(self, store: Store, box: SecretBox, ttl: float = 10.0) -> None:
        self._store = store
        self._box = box
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded: LoadedKeys | None = None
        self._loaded_at = 0.0
        #: Private keys already imported, by kid: importing an RSA one checks it (tens of ms of
        #: CPU), and a reload every `ttl` mostly finds the same keys.
        self._imported: dict[str, KeySet] = {}
        #: Access tokens whose signature this ring has checked, by their exact text: the kid
        #: that signed each and its claims (`iam.oidc.tokens.decode_access_token`).
        self._verified: dict[str, tuple[str, dict[str, Any]]] = {}
        self._verified_lock = threading.Lock()

    def invalidate(self) -> None:
        self._loaded = None
        self._verified = {}

    def verified(self, token: str) -> dict[str, Any] | None:
        """The claims of `token` if this ring has checked its signature before and the key that
        signed it is still published (once it is not, the token is checked again, and fails)."""
        known = self._verified.get(token)
        if known is None or known[0] not in self.current().kids:
            return None
        return dict(known[1])

    def remember_verified(self, token: str, kid: str, claims: dict[str, Any]) -> None:
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_LIMIT:
                self._verified = {}
            self._verified[token] = (kid, dict(claims))

    def current(self) -> LoadedKeys:
        """The cached keys. When they are stale, one thread reloads them while the others go on
        with the stale ones (no request waits for a reload it does not need); only a ring with
        nothing loaded (at start, after `invalidate`) makes callers wait."""
        loaded = self._loaded
        fresh = loaded is not None and time.monotonic() - self._loaded_at <= self._ttl
        metrics.count_cache("signing_keys", hit=fresh)
        if fresh and loaded is not None:
            return loaded
        if loaded is None:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            return loaded  # another thread is reloading
        try:
            if self._loaded is None or self._loaded is loaded:  # nobody reloaded meanwhile
                self._loaded = self._load()
                self._loaded_at = time.monotonic()
            return self._loaded
        finally:
            self._lock.release()

    def _load(self) -> LoadedKeys:
        material = one_unit(self._store, lambda db: load_material(db, self._box))
        signing = {
            alg: self._imported.get(str(jwk["kid"])) or KeySet.import_key_set(_key_set([jwk]))
            for alg, jwk in material.active_private_jwks.items()
        }
        self._imported = {next(iter(keys.keys)).kid or "": keys for keys in signing.values()}
        return LoadedKeys(
            by_algorithm=signing,
            verifying=KeySet.import_key_set(_key_set(material.published)),
            kids=frozenset(str(key["kid"]) for key in material.published),
        )

    def verifying(self, kid: str | None = None) -> KeySet:
        """The public keys, reloaded first when `kid` is a published key this ring has not
        loaded yet (made by another instance since it loaded)."""
        loaded = self.current()
        if (
            kid is None
            or kid in loaded.kids
            or not one_unit(self._store, lambda db: is_published(db, kid))
        ):
            return loaded.verifying
        self.invalidate()
        return self.current().verifying

    def published_jwks(self) -> KeySetSerialization:
        """The JWKS document, from the database: a rotation anywhere is published everywhere."""
        return _key_set(one_unit(self._store, published))


def _key_set(jwks: Iterable[Mapping[str, Any]]) -> KeySetSerialization:
    """A JWKS document of these JWKs (JSON objects, typed as joserfc takes them)."""
    return {"keys": [dict(key) for key in jwks]}
