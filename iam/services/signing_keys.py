"""Token signing keys: created, rotated, stored encrypted; which one signs, which are published."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from joserfc.jwk import RSAKey
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from iam.clock import utcnow
from iam.db.models import Client, SigningKey
from iam.secretbox import SecretBox
from iam.services import audit

ALGORITHM = "RS256"
RSA_BITS = 2048
#: Publish a retired key at least this long, whatever the clients' lifetimes say.
MIN_PUBLISH_AFTER_RETIRE = timedelta(hours=1)


@dataclass(frozen=True)
class KeyMaterial:
    """What the issuer needs: the private JWK that signs now, and the public JWKS."""

    active_private_jwk: dict[str, Any]
    published: tuple[dict[str, Any], ...]

    @property
    def kid(self) -> str:
        return str(self.active_private_jwk["kid"])


def _new_key(box: SecretBox) -> SigningKey:
    key = RSAKey.generate_key(RSA_BITS, parameters={"alg": ALGORITHM, "use": "sig"}, private=True)
    kid = key.thumbprint()
    private = {**key.as_dict(private=True), "kid": kid}
    public = {**key.as_dict(private=False), "kid": kid}
    return SigningKey(
        kid=kid,
        alg=ALGORITHM,
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
    """Create the first signing key if there is none (first start), in the caller's
    transaction. Instances that start together take turns (an advisory lock on PostgreSQL,
    held until the caller's transaction ends; SQLite writes one at a time), so exactly one of
    them creates it."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(select(func.pg_advisory_xact_lock(_ENSURE_KEY_LOCK)))
    else:  # take SQLite's write lock before looking, not after
        db.execute(text("UPDATE signing_keys SET kid = kid WHERE 0"))
    if db.scalar(select(SigningKey.kid).where(SigningKey.retired_at.is_(None))):
        return
    db.add(_new_key(box))
    audit.record(db.connection(), "key.created", actor="system")


def rotate(db: Session, box: SecretBox, *, actor: str = "cli") -> SigningKey:
    """A new key signs from now on; the old ones stay published until their tokens expire (in
    the caller's transaction)."""
    now = utcnow()
    publish_until = now + _longest_token_lifetime(db)
    for old in db.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        old.retired_at = now
        old.publish_until = publish_until
    key = _new_key(box)
    db.add(key)
    audit.record(db.connection(), "key.rotated", actor=actor, kid=key.kid)
    return key


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


def load_material(db: Session, box: SecretBox) -> KeyMaterial:
    """The newest unretired key signs; every key still within its publish window is in JWKS."""
    keys = _live_keys(db)
    active = next((key for key in keys if key.retired_at is None), None)
    if active is None:
        raise LookupError("no signing key: run `iam db upgrade` and start the server once")
    return KeyMaterial(
        active_private_jwk=json.loads(box.decrypt(active.private_jwk_encrypted)),
        published=tuple(key.public_jwk for key in keys),
    )
