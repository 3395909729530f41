"""Which user claims each scope releases (OIDC Core 5.4), for ID tokens and userinfo alike."""

from __future__ import annotations

from typing import Any

from iam.clock import epoch
from iam.db.models import User

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}


def _user_values(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "updated_at": epoch(user.updated_at),
        "email": user.email,
        "email_verified": False if user.email else None,  # we never verify email addresses
        "phone_number": user.phone,
        "phone_number_verified": (user.phone_verified_at is not None) if user.phone else None,
    }


def user_claims(user: User, scope: str) -> dict[str, Any]:
    """`sub` always; the rest only for granted scopes, and only claims that have a value."""
    values = _user_values(user)
    claims: dict[str, Any] = {"sub": user.id}
    for granted in scope.split():
        for name in SCOPE_CLAIMS.get(granted, ()):
            if values[name] is not None:
                claims[name] = values[name]
    return claims
