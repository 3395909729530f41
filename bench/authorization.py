"""The silent-SSO authorization request the measurement scripts send (one place for its shape)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

#: The bench client's redirect URI (`seed.py` registers it; port 9 is never contacted).
REDIRECT_URI = "http://127.0.0.1:9/cb"


def authorization_query(client_id: str) -> tuple[str, str]:
    """(query string for GET /authorize with PKCE S256, its code_verifier)."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": "s",
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return query, verifier
