"""Secrets at rest and digests of bearer values, all keyed from `IAM_SECRET_KEY`.

Private signing keys and WeCom app secrets are encrypted (Fernet: AES-CBC + HMAC); tokens, codes
and session ids are stored only as digests, so a database dump grants nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBoxError(ValueError):
    """A stored secret does not decrypt with this secret key (wrong key, or tampered)."""


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode()
    )


def digest(value: str) -> str:
    """SHA-256 of a high-entropy bearer value (token, code, session id), as stored."""
    return hashlib.sha256(value.encode()).hexdigest()


class SecretBox:
    """Encrypts secrets and makes keyed digests of low-entropy values such as SMS codes."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, b"iam:at-rest")))
        self._mac_key = _derive(secret_key, b"iam:mac")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretBoxError(
                "a stored secret does not decrypt: was IAM_SECRET_KEY changed?"
            ) from None

    def mac(self, *parts: str) -> str:
        """Keyed digest: a 6-digit code's hash cannot be brute-forced without the secret key."""
        message = "\x1f".join(parts).encode()
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def verify_mac(self, expected: str, *parts: str) -> bool:
        return hmac.compare_digest(expected, self.mac(*parts))
