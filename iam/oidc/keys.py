"""The key ring: the private key that signs now and the published public keys, cached briefly.

A few seconds of cache keeps the database and the RSA import off the hot path. A key rotated by
another process (the CLI, another instance) signs here within `ttl` seconds; meanwhile the
old key still signs, and stays published. What must not wait is verification and publication:
a token whose kid this ring has not loaded makes it ask the database whether that key is
published (one primary-key lookup, like the token's own), and reload if it is; `/jwks.json`
reads the published keys from the database on each request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet

from iam import metrics
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services.signing_keys import ALGORITHM, is_published, load_material, published


@dataclass(frozen=True)
class LoadedKeys:
    signing: KeySet  # exactly one private key, so joserfc writes its kid
    verifying: KeySet  # every published public key
    kids: frozenset[str]  # of the published keys


class KeyRing:
    algorithm = ALGORITHM

    def __init__(self, store: Store, box: SecretBox, ttl: float = 10.0) -> None:
        self._store = store
        self._box = box
        self._ttl = ttl
        self._lock = threading.Lock()
        self._loaded: LoadedKeys | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._loaded = None

    def current(self) -> LoadedKeys:
        with self._lock:
            fresh = self._loaded is not None and time.monotonic() - self._loaded_at <= self._ttl
            metrics.count_cache("signing_keys", hit=fresh)
            if not fresh or self._loaded is None:
                material = load_material(self._store, self._box)
                jwks = {"keys": [dict(key) for key in material.published]}
                self._loaded = LoadedKeys(
                    signing=KeySet.import_key_set({"keys": [material.active_private_jwk]}),
                    verifying=KeySet.import_key_set(jwks),
                    kids=frozenset(str(key["kid"]) for key in material.published),
                )
                self._loaded_at = time.monotonic()
            return self._loaded

    def verifying(self, kid: str | None = None) -> KeySet:
        """The public keys, reloaded first when `kid` is a published key this ring has not
        loaded yet (made by another instance since it loaded)."""
        loaded = self.current()
        if kid is None or kid in loaded.kids or not is_published(self._store, kid):
            return loaded.verifying
        self.invalidate()
        return self.current().verifying

    def published_jwks(self) -> dict[str, Any]:
        """The JWKS document, from the database: a rotation anywhere is published everywhere."""
        return {"keys": [dict(key) for key in published(self._store)]}
