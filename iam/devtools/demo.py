"""The demo world `iam demo` serves: one confidential app and one person who can sign in.

Seeding is idempotent, so `iam demo` can be run again and again on the same database; each run
rotates the demo app's secret because the plaintext is never stored and must be printed anew.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
from dataclasses import dataclass
from urllib.parse import urlencode

from iam.db.models import User
from iam.db.store import Store
from iam.devtools.wecom_simulator import demo_corps
from iam.errors import NotFoundError
from iam.secretbox import SecretBox
from iam.services import clients, corps, signing_keys, users
from iam.services.clients import RegisteredClient

DEMO_CLIENT_ID = "demo-app"
DEMO_CLIENT_NAME = "Demo app"
DEMO_USER_NAME = "张三 Zhang San"
DEMO_PHONE = "+8613800138000"
DEMO_SCOPE = "openid profile phone"


@dataclass(frozen=True)
class DemoWorld:
    """What a person needs to try the demo: the app's credentials and whom to sign in as."""

    client_id: str
    client_secret: str
    redirect_uri: str
    user_id: str
    phone: str
    corp_names: tuple[str, ...]


@dataclass(frozen=True)
class ExampleAuthorization:
    """A ready-made PKCE (S256) authorization request and the command that redeems its code."""

    url: str
    code_verifier: str
    token_command: str


def seed_demo(store: Store, box: SecretBox, issuer: str) -> DemoWorld:
    """Make sure the demo app, the demo user, the simulator's two corporations and a signing key
    exist; return fresh credentials."""
    signing_keys.ensure_key(store, box)
    _demo_corps(store, box)
    redirect_uri = f"{issuer}/dev/callback"
    registered = _demo_client(store, redirect_uri)
    user = _demo_user(store)
    assert registered.client_secret is not None  # the demo app is confidential
    return DemoWorld(
        client_id=registered.client.client_id,
        client_secret=registered.client_secret,
        redirect_uri=redirect_uri,
        user_id=user.id,
        phone=DEMO_PHONE,
        corp_names=tuple(corp.name for corp in demo_corps()),
    )


def _demo_client(store: Store, redirect_uri: str) -> RegisteredClient:
    """Rotate the demo app's secret (the old one was printed to a past terminal only), or register
    the app: on first run, and again when the issuer moved (another --port) since it was made."""
    try:
        existing = clients.get_client(store, DEMO_CLIENT_ID)
    except NotFoundError:
        existing = None
    if existing is not None and redirect_uri in existing.redirect_uris:
        return clients.rotate_secret(store, DEMO_CLIENT_ID, keep_previous=False)
    if existing is not None:
        clients.delete_client(store, DEMO_CLIENT_ID)
    return clients.create_client(store, DEMO_CLIENT_NAME, [redirect_uri], client_id=DEMO_CLIENT_ID)


def _demo_corps(store: Store, box: SecretBox) -> None:
    """Connect the simulator's subsidiaries (with the simulator's secrets), once."""
    connected = {corp.corp_id for corp in corps.list_corps(store)}
    for corp in demo_corps():
        if corp.corp_id not in connected:
            corps.add_corp(
                store, box, corp.corp_id, corp.name, corp.agent_id, corp.secret, actor="demo"
            )


def _demo_user(store: Store) -> User:
    with store() as session:
        existing = users.find_user_by_phone(session, DEMO_PHONE)
    return existing or users.create_user(store, DEMO_USER_NAME, DEMO_PHONE)


def example_authorization(world: DemoWorld, issuer: str) -> ExampleAuthorization:
    """An authorization URL a person can open, with the verifier and a curl command for /token."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": world.client_id,
            "redirect_uri": world.redirect_uri,
            "scope": DEMO_SCOPE,
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    command = " ".join(
        [
            "curl -s",
            "-u",
            shlex.quote(f"{world.client_id}:{world.client_secret}"),
            "-d grant_type=authorization_code",
            '-d "code=$CODE"',
            "--data-urlencode",
            shlex.quote(f"redirect_uri={world.redirect_uri}"),
            "-d",
            shlex.quote(f"code_verifier={verifier}"),
            shlex.quote(f"{issuer}/token"),
        ]
    )
    return ExampleAuthorization(f"{issuer}/authorize?{query}", verifier, command)
