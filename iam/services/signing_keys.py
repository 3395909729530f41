"""Token signing keys: created, rotated, stored encrypted; which one signs, which are published.

One active key per algorithm: RS256 (ID tokens, logout tokens, and access tokens by default)
and ES256 (the access tokens of apps that chose it, issue #17)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import Client, SigningKey
from iam.secretbox import SecretBox
from iam.services import audit

ALGORITHM = "RS256"
#: The algorithms we sign with, one active key each; the first is the default.
ALGORITHMS = (ALGORITHM, "ES256")
RSA_BITS = 2048
EC_CURVE = "P-256"
#: Publish a retired key at least this long, whatever the clients' lifetimes say.
MIN_PUBLISH_AFTER_RETIRE = timedelta(hours=1)


@dataclass(frozen=True)
class KeyMaterial:
    """What the issuer needs: the private JWK that signs now for each algorithm, and the
    public JWKS."""

    active_private_jwks: dict[str, dict[str, Any]]  # by algorithm
    published: tuple[dict[str, Any], ...]

    @property
    def active_private_jwk(self) -> dict[str, Any]:
        """The RS256 key: ID tokens, logout tokens, default access tokens."""
        return self.active_private_jwks[ALGORITHM]

    @property
    def kid(self) -> str:
        return str(self.active_private_jwk["kid"])


def _new_key(box: SecretBox, alg: str = ALGORITHM) -> SigningKey:
    parameters: Any = {"alg": alg, "use": "sig"}
    key = (
        ECKey.generate_key(EC_CURVE, parameters=parameters, private=True)
        if alg == "ES256"
        else RSAKey.generate_key(RSA_BITS, parameters=parameters, private=True)
    )
    kid = key.thumbprint()
    private = {**key.as_dict(private=True), "kid": kid}
    public = {**key.as_dict(private=False), "kid": kid}
    return SigningKey(
        kid=kid,
        alg=alg,
        private_jwk_encrypted=box.encrypt(json.dumps(private)),
        public_jwk=public,
    )


def _longest_token_lifetime(db: Session) -> timedelta:
    """Every token a retired key signed expires within the longest access/ID token lifetime."""
    row = db.execute(select(func.max(Client.access_token_ttl), func.max(Client.id_token_ttl))).one()
    longest = max(row[0] or 0, row[1] or 0)
    return max(timedelta(seconds=int(longest or 0)), MIN_PUBLISH_AFTER_RETIRE)


#: The PostgreSQL advisory lock that serializes first-start key creation across instances.
_ENSURE_KEY_LOCK = 0x69616D_6B6579  # "iam" "key"


def ensure_key(db: Session, box: SecretBox) -> None:
    """Create the signing key of each algorithm that has none (the first start; the first
    start after an upgrade that added an algorithm), in the caller's transaction. Instances
    that start together take turns (an advisory lock on PostgreSQL, held until the caller's
    transaction ends; SQLite writes one at a time), so exactly one of them creates each."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(select(func.pg_advisory_xact_lock(_ENSURE_KEY_LOCK)))
    else:  # take SQLite's write lock before looking, not after
        db.execute(text("UPDATE signing_keys SET kid = kid WHERE 0"))
    active = set(db.scalars(select(SigningKey.alg).where(SigningKey.retired_at.is_(None))))
    for alg in ALGORITHMS:
        if alg not in active:
            db.add(_new_key(box, alg))
            audit.record(db.connection(), "key.created", actor="system", alg=alg)


def rotate(db: Session, box: SecretBox, *, actor: str = "cli") -> list[SigningKey]:
    """A new key of each algorithm signs from now on (the RS256 one first); the old ones stay
    published until their tokens expire (in the caller's transaction)."""
    now = utcnow()
    publish_until = now + _longest_token_lifetime(db)
    for old in db.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        old.retired_at = now
        old.publish_until = publish_until
    keys = [_new_key(box, alg) for alg in ALGORITHMS]
    db.add_all(keys)
    for key in keys:
        audit.record(db.connection(), "key.rotated", actor=actor, kid=key.kid, alg=key.alg)
    return keys


def list_keys(db: Session) -> list[SigningKey]:
    return list(db.scalars(select(SigningKey).order_by(SigningKey.created_at.desc())))


def _live_keys(db: Session) -> list[SigningKey]:
    """The keys to publish, newest first: unretired ones and those within their window."""
    now = utcnow()
    return list(
        db.scalars(
            select(SigningKey)
            .where(or_(SigningKey.retired_at.is_(None), SigningKey.publish_until > now))
            .order_by(SigningKey.created_at.desc())
        )
    )


def published(db: Session) -> tuple[dict[str, Any], ...]:
    """The public JWKs to publish now (no private key is decrypted)."""
    return tuple(key.public_jwk for key in _live_keys(db))


def is_published(db: Session, kid: str) -> bool:
    """Whether `kid` names a key that is published now (one primary-key lookup)."""
    now = utcnow()
    key = db.get(SigningKey, kid) if len(kid) <= 100 else None
    if key is None:
        return False
    # As in `_live_keys`' query: a retired key with no window (NULL) is not published.
    return key.retired_at is None or (key.publish_until is not None and key.publish_until > now)


def signing_kids(keys: list[SigningKey]) -> dict[str, str]:
    """Which key signs for each algorithm (`keys` newest first): its newest unretired one."""
    found: dict[str, str] = {}
    for key in keys:
        if key.retired_at is None:
            found.setdefault(key.alg, key.kid)
    return found


def load_material(db: Session, box: SecretBox) -> KeyMaterial:
    """For each algorithm its newest unretired key signs; every key still within its publish
    window is in JWKS."""
    keys = _live_keys(db)
    signing = signing_kids(keys)
    missing = [alg for alg in ALGORITHMS if alg not in signing]
    if missing:
        raise LookupError(
            f"no {' or '.join(missing)} signing key: run `iam db upgrade` and start the server once"
        )
    by_kid = {key.kid: key for key in keys}
    return KeyMaterial(
        active_private_jwks={
            alg: json.loads(box.decrypt(by_kid[signing[alg]].private_jwk_encrypted))
            for alg in ALGORITHMS
        },
        published=tuple(key.public_jwk for key in keys),
    )
