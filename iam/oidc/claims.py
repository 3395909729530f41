"""Which user claims each scope releases (OIDC Core 5.4), and the identity context claim each
app's policy releases, for ID tokens, access tokens, userinfo and introspection alike."""

from __future__ import annotations

from typing import Any

from iam.clock import epoch
from iam.db.fastpath import ClientView, UserView
from iam.db.models import IdentityLink
from iam.db.unit import current_session

SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}


def _user_values(user: UserView) -> dict[str, Any]:
    return {
        "name": user.name,
        "updated_at": epoch(user.updated_at),
        "email": user.email,
        "email_verified": False if user.email else None,  # we never verify email addresses
        "phone_number": user.phone,
        "phone_number_verified": (user.phone_verified_at is not None) if user.phone else None,
    }


def user_claims(user: UserView, scope: str) -> dict[str, Any]:
    """`sub` always; the rest only for granted scopes, and only claims that have a value."""
    values = _user_values(user)
    claims: dict[str, Any] = {"sub": user.id}
    for granted in scope.split():
        for name in SCOPE_CLAIMS.get(granted, ()):
            if values[name] is not None:
                claims[name] = values[name]
    return claims


def context_claims(client: ClientView, context_link_id: str | None) -> dict[str, Any]:
    """The identity context claim (contract: Tokens and claims) for apps whose policy takes it,
    when the token has a context: never for `none` apps, whatever the session holds."""
    if client.context_policy == "none" or context_link_id is None:
        return {}
    link = current_session().get(IdentityLink, context_link_id)
    if link is None or link.status != "active":
        return {}
    meta = link.link_metadata or {}
    return {
        client.context_claim: {
            "provider": link.provider,
            "corpid": meta.get("corpid"),
            "corp_name": meta.get("corp_name"),
            "userid": meta.get("userid"),
            "department": list(meta.get("department") or []),
            "position": meta.get("position") or "",
        }
    }
