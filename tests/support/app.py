"""The app under test, its settings and parts (secret box, SMS outbox, signing key), and a
client over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import select
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from iam.app import create_app
from iam.db.models import SigningKey
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import admins, signing_keys
from iam.services.sms import ConsoleSms
from iam.settings import Settings
from support.constants import ISSUER, TEST_SECRET
from support.units import in_unit

_SIGNING_KEYS: list[dict[str, Any]] = []


#: argon2 at its cheapest (t=1, 8 KiB): the tests hash admin passwords often, and the real
#: parameters (64 MiB, a sixth of a second a hash) prove nothing more there.
CHEAP_PASSWORD_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test hashes with `CHEAP_PASSWORD_HASHER`; `verify` reads the cost from the hash,
    so hashes made with the real parameters still verify (`monkeypatch.undo()` gives a test
    the real hasher back)."""
    monkeypatch.setattr(admins, "PASSWORD_HASHER", CHEAP_PASSWORD_HASHER)


@pytest.fixture
def reused_signing_key(store: Store) -> None:
    """One key of each algorithm (RSA, EC), made once per run, put into each test's database
    before the app starts: `ensure_key` then finds them instead of generating keys per test
    (the protocol suites)."""
    if not _SIGNING_KEYS:
        in_unit(store, signing_keys.ensure_key, SecretBox(TEST_SECRET))
        with store() as db:
            for key in db.scalars(select(SigningKey)):
                _SIGNING_KEYS.append(
                    dict(
                        kid=key.kid,
                        alg=key.alg,
                        private_jwk_encrypted=key.private_jwk_encrypted,
                        public_jwk=key.public_jwk,
                    )
                )
        return
    with store() as db:
        db.add_all(SigningKey(**key) for key in _SIGNING_KEYS)
        db.commit()


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(TEST_SECRET)


@pytest.fixture
def sms() -> ConsoleSms:
    return ConsoleSms()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=ISSUER,
        database_url=database_url,
        sms_backend="webhook:https://sms.example.com/send",  # `console` is for dev mode only
    )


@pytest.fixture
def app(settings: Settings, store: Store, sms: ConsoleSms):
    return create_app(settings, store=store, sms=sms)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """A browser-like client over HTTPS that does not follow redirects."""
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        yield test_client
