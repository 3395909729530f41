"""Token signing keys as the admin API and `iam keys ... --json` show them: public facts only,
never a private key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iam.db.models import SigningKey as SigningKeyRow
from iam.records.base import Record, Timestamp
from iam.services.signing_keys import signing_kids


class PublicJwk(BaseModel):
    """The public key as a JWK (RFC 7517), as /jwks.json has it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kty: str
    kid: str


class SigningKey(Record):
    """A token signing key's public facts (the private key never leaves the server)."""

    kid: str
    alg: str
    created_at: Timestamp
    retired_at: Timestamp | None
    publish_until: Timestamp | None = Field(
        description="A retired key stays in JWKS until then (the longest token lifetime after "
        "its retirement, an hour at least)."
    )
    signing: bool = Field(
        description="This key signs new tokens (one key per algorithm: RS256 signs ID tokens "
        "and access tokens by default, ES256 the access tokens of apps that chose it)."
    )
    published: bool = Field(description="This key is in /jwks.json.")
    public_jwk: PublicJwk

    @classmethod
    def all_of(cls, keys: Sequence[SigningKeyRow], now: datetime) -> list[SigningKey]:
        """The keys (newest first) with what the issuer makes of them: the newest unretired
        key of each algorithm signs (as `signing_keys.load_material` picks it); a key is in
        JWKS until `publish_until`."""
        signing = set(signing_kids(list(keys)).values())
        return [
            cls.from_row(
                key,
                signing=key.kid in signing,
                published=key.retired_at is None
                or (key.publish_until is not None and key.publish_until > now),
                public_jwk=PublicJwk(**_jwk(key)),
            )
            for key in keys
        ]


def _jwk(key: SigningKeyRow) -> dict[str, Any]:
    return dict(key.public_jwk)
