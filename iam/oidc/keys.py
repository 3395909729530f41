"""The key ring: the private key that signs now and the published public keys, cached briefly.

A few seconds of cache keeps the database and the RSA import off the hot path; a key rotated
by another process (the CLI, another instance) is picked up within `ttl` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet

from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services.signing_keys import ALGORITHM, load_material


@dataclass(frozen=True)
class LoadedKeys:
    signing: KeySet  # exactly one private key, so joserfc writes its kid
    verifying: KeySet  # every published public key
    jwks: dict[str, Any]


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
            if self._loaded is None or time.monotonic() - self._loaded_at > self._ttl:
                material = load_material(self._store, self._box)
                jwks = {"keys": [dict(key) for key in material.published]}
                self._loaded = LoadedKeys(
                    signing=KeySet.import_key_set({"keys": [material.active_private_jwk]}),
                    verifying=KeySet.import_key_set(jwks),
                    jwks=jwks,
                )
                self._loaded_at = time.monotonic()
            return self._loaded
