"""iam/secretbox.py: encryption at rest and keyed digests."""

from __future__ import annotations

import hashlib

import pytest

from iam.secretbox import SecretBox, SecretBoxError, digest

KEY_A = "a" * 40
KEY_B = "b" * 40


def test_encrypt_then_decrypt_gives_the_plaintext_back() -> None:
    box = SecretBox(KEY_A)
    ciphertext = box.encrypt("wecom app secret 密钥")
    assert "wecom app secret" not in ciphertext
    assert box.decrypt(ciphertext) == "wecom app secret 密钥"


def test_a_box_with_the_same_key_decrypts() -> None:
    assert SecretBox(KEY_A).decrypt(SecretBox(KEY_A).encrypt("x")) == "x"


def test_encrypting_twice_gives_different_ciphertexts() -> None:
    box = SecretBox(KEY_A)
    assert box.encrypt("same") != box.encrypt("same")


def test_decrypt_with_another_key_is_refused() -> None:
    ciphertext = SecretBox(KEY_A).encrypt("secret")
    with pytest.raises(SecretBoxError):
        SecretBox(KEY_B).decrypt(ciphertext)


def test_tampered_ciphertext_is_refused() -> None:
    box = SecretBox(KEY_A)
    ciphertext = box.encrypt("secret")
    tampered = ciphertext[:-6] + ("A" if ciphertext[-6] != "A" else "B") + ciphertext[-5:]
    with pytest.raises(SecretBoxError):
        box.decrypt(tampered)


def test_garbage_is_refused() -> None:
    with pytest.raises(SecretBoxError):
        SecretBox(KEY_A).decrypt("not-a-fernet-token")


def test_mac_is_stable_for_one_key() -> None:
    assert SecretBox(KEY_A).mac("id", "123456") == SecretBox(KEY_A).mac("id", "123456")


def test_mac_differs_per_key() -> None:
    assert SecretBox(KEY_A).mac("id", "123456") != SecretBox(KEY_B).mac("id", "123456")


def test_mac_differs_per_part() -> None:
    box = SecretBox(KEY_A)
    assert box.mac("id", "123456") != box.mac("id", "123457")
    assert box.mac("id", "123456") != box.mac("other", "123456")


def test_mac_keeps_parts_apart() -> None:
    box = SecretBox(KEY_A)
    assert box.mac("ab", "c") != box.mac("a", "bc")


def test_mac_is_not_a_plain_hash() -> None:
    assert SecretBox(KEY_A).mac("123456") != hashlib.sha256(b"123456").hexdigest()


def test_verify_mac_accepts_the_right_parts_only() -> None:
    box = SecretBox(KEY_A)
    expected = box.mac("id", "123456")
    assert box.verify_mac(expected, "id", "123456")
    assert not box.verify_mac(expected, "id", "654321")
    assert not SecretBox(KEY_B).verify_mac(expected, "id", "123456")


def test_digest_is_sha256_hex() -> None:
    assert digest("token") == hashlib.sha256(b"token").hexdigest()
