"""The demo world `iam demo` serves: a bare demo app, the learning platform and the CRM, two
simulated subsidiaries, and one person who can sign in.

Seeding is idempotent, so `iam demo` can be run again and again on the same database; each run
rotates the demo app's secret because the plaintext is never stored and must be printed anew.
It rotates the subsidiaries' callback settings (Token, EncodingAESKey) too: `seed_demo` stores
them on the server's side and returns them, and `connect_simulator` gives the same to the
simulated WeCom, whose directory page then sends a leaver's `delete_user` to the server.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shlex
import string
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from iam.db.models import User
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.devtools.demo_apps import DemoAppConfig
from iam.devtools.wecom_simulator import Sender, WeComSimulator, demo_corps
from iam.errors import NotFoundError
from iam.secretbox import SecretBox
from iam.services import admins, clients, corps, signing_keys, users
from iam.services.clients import RegisteredClient

DEMO_CLIENT_ID = "demo-app"
DEMO_CLIENT_NAME = "Demo app"
DEMO_USER_NAME = "张三 Zhang San"
DEMO_PHONE = "+8613800138000"
DEMO_SCOPE = "openid profile phone"
DEMO_ADMIN = "admin"
AES_KEY_LENGTH = 43  # an EncodingAESKey: 43 letters and digits, as WeCom generates them
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class DemoCallback:
    """A demo subsidiary's callback settings: where the simulated WeCom POSTs its events (the
    server's receiver) and the Token and EncodingAESKey both sides know."""

    corp_id: str
    url: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)


@dataclass(frozen=True)
class DemoWorld:
    """What a person needs to try the demo: the app's credentials and whom to sign in as."""

    client_id: str
    client_secret: str
    redirect_uri: str
    user_id: str
    phone: str
    corp_names: tuple[str, ...]
    admin_username: str
    admin_password: str
    callbacks: tuple[DemoCallback, ...] = ()  # each subsidiary's, new on every start


@dataclass(frozen=True)
class ExampleAuthorization:
    """A ready-made PKCE (S256) authorization request and the command that redeems its code."""

    url: str
    code_verifier: str
    token_command: str


def seed_demo(store: Store, box: SecretBox, issuer: str) -> DemoWorld:
    """Make sure the demo app, the demo user, the simulator's two corporations and a signing key
    exist; return fresh credentials."""
    one_unit(store, lambda db: signing_keys.ensure_key(db, box))
    _demo_corps(store, box)
    callbacks = _demo_callbacks(store, box, issuer)
    redirect_uri = f"{issuer}/dev/callback"
    registered = _demo_client(store, redirect_uri)
    user = _demo_user(store)
    _demo_links(store, user)
    assert registered.client_secret is not None  # the demo app is confidential
    return DemoWorld(
        client_id=registered.client.client_id,
        client_secret=registered.client_secret,
        redirect_uri=redirect_uri,
        user_id=user.id,
        phone=DEMO_PHONE,
        corp_names=tuple(corp.name for corp in demo_corps()),
        admin_username=DEMO_ADMIN,
        admin_password=_demo_admin(store),
        callbacks=callbacks,
    )


def connect_simulator(
    simulator: WeComSimulator, world: DemoWorld, *, sender: Sender | None = None
) -> None:
    """Give the simulated WeCom the callback settings `seed_demo` stored, so its events reach
    the server (through `sender`; None: over HTTP, to the server's own URL)."""
    for callback in world.callbacks:
        simulator.configure_callback(
            callback.corp_id,
            callback.url,
            callback.token,
            callback.encoding_aes_key,
            sender=sender,
        )


def _demo_client(store: Store, redirect_uri: str) -> RegisteredClient:
    return _register(store, DEMO_CLIENT_ID, DEMO_CLIENT_NAME, redirect_uri)


def _register(
    store: Store,
    client_id: str,
    name: str,
    redirect_uri: str,
    *,
    context_policy: str = "none",
    post_logout_redirect_uris: tuple[str, ...] = (),
    initiate_login_uri: str | None = None,
) -> RegisteredClient:
    """Rotate a demo app's secret (the old one was printed to a past terminal only), or register
    the app: on first run, and again when it moved (another --port) or changed since."""

    def work(db: Session) -> RegisteredClient:
        try:
            existing = clients.get_client(db, client_id)
        except NotFoundError:
            existing = None
        if (
            existing is not None
            and redirect_uri in existing.redirect_uris
            and existing.context_policy == context_policy
            and existing.initiate_login_uri == initiate_login_uri
        ):
            return clients.rotate_secret(db, client_id, keep_previous=False)
        if existing is not None:
            clients.delete_client(db, client_id)
            db.flush()  # the new registration reuses the id
        return clients.create_client(
            db,
            name,
            [redirect_uri],
            client_id=client_id,
            context_policy=context_policy,
            post_logout_redirect_uris=post_logout_redirect_uris,
            initiate_login_uri=initiate_login_uri,
        )

    return one_unit(store, work)


@dataclass(frozen=True)
class DemoRelyingParty:
    """One of the two demo apps beside the server, and the port it is served on."""

    config: DemoAppConfig
    port: int
    policy: str


#: (name, client_id, title, context policy, port offset from the server's port)
RELYING_PARTIES = (
    ("learning", "learning-platform", "学习平台 Learning platform", "none", 1),
    ("crm", "crm", "CRM 客户管理", "required", 2),
)


def seed_relying_parties(store: Store, issuer: str, port: int) -> tuple[DemoRelyingParty, ...]:
    """Register the learning platform (`none`) and the CRM (`required`) on the ports after the
    server's, with fresh secrets; each takes sign-ins started elsewhere (a WeCom workbench link)
    at its `/initiate`."""
    parties = []
    for name, client_id, title, policy, offset in RELYING_PARTIES:
        base_url = f"http://127.0.0.1:{port + offset}"
        registered = _register(
            store,
            client_id,
            title,
            f"{base_url}/callback",
            context_policy=policy,
            post_logout_redirect_uris=(f"{base_url}/",),
            initiate_login_uri=f"{base_url}/initiate",
        )
        assert registered.client_secret is not None  # confidential
        config = DemoAppConfig(
            name=name,
            title=title,
            issuer=issuer,
            client_id=client_id,
            client_secret=registered.client_secret,
            base_url=base_url,
        )
        parties.append(DemoRelyingParty(config, port + offset, policy))
    return tuple(parties)


def workbench_lines(parties: tuple[DemoRelyingParty, ...], issuer: str) -> list[str]:
    """What `iam demo` prints of the workbench links: for each demo app, its link for each
    demo corporation (what that corporation's WeCom workbench would open)."""
    if not parties:
        return []
    lines = [
        "Workbench links (what each subsidiary's WeCom workbench opens: signed in as the",
        "person's identity there, then straight into the app):",
    ]
    width = max(len(corp.name) for corp in demo_corps())
    for party in parties:
        lines.append(f"  {party.config.title}:")
        client_id = party.config.client_id
        lines.extend(
            f"    {corp.name:<{width}}  {clients.workbench_link(issuer, client_id, corp.corp_id)}"
            for corp in demo_corps()
        )
    return [*lines, ""]


def _demo_corps(store: Store, box: SecretBox) -> None:
    """Connect the simulator's subsidiaries (with the simulator's secrets), once: one unit."""

    def work(db: Session) -> None:
        connected = {corp.corp_id for corp in corps.list_corps(db)}
        for corp in demo_corps():
            if corp.corp_id not in connected:
                corps.add_corp(
                    db, box, corp.corp_id, corp.name, corp.agent_id, corp.secret, actor="demo"
                )

    one_unit(store, work)


def _demo_callbacks(store: Store, box: SecretBox, issuer: str) -> tuple[DemoCallback, ...]:
    """New callback settings for each subsidiary, stored (encrypted) in one unit; the
    receiver's URL is the one the corporation's admin page shows."""
    made = tuple(
        DemoCallback(
            corp_id=corp.corp_id,
            url=f"{issuer}/events/wecom/{corp.corp_id}",
            token=secrets.token_hex(16),
            encoding_aes_key="".join(secrets.choice(_ALPHANUMERIC) for _ in range(AES_KEY_LENGTH)),
        )
        for corp in demo_corps()
    )

    def work(db: Session) -> None:
        for callback in made:
            corps.update_corp(
                db,
                box,
                callback.corp_id,
                actor="demo",
                callback_token=callback.token,
                encoding_aes_key=callback.encoding_aes_key,
            )

    one_unit(store, work)
    return made


def _demo_links(store: Store, user: User) -> None:
    """Link the demo person to their member in each subsidiary (张三 is in both), with the
    metadata a WeCom login would record, so the CRM has two identities to choose from."""
    national = DEMO_PHONE.removeprefix("+86")

    def work(db: Session) -> None:
        linked = {link.provider_user_id for link in users.user_detail(db, user.id).links}
        for corp in demo_corps():
            for member in corp.members:
                if member.mobile != national or f"{corp.corp_id}/{member.userid}" in linked:
                    continue
                metadata = {
                    "provider": "wecom",
                    "corpid": corp.corp_id,
                    "corp_name": corp.name,
                    "userid": member.userid,
                    "name": member.name,
                    "department": [corp.departments[d] for d in member.department],
                    "department_ids": list(member.department),
                    "position": member.position,
                    "avatar": member.avatar,
                    "status": member.status,
                }
                users.link_wecom(db, user.id, corp.corp_id, member.userid, metadata)

    one_unit(store, work)


def _demo_admin(store: Store) -> str:
    """The console's demo admin, with a new password each start (printed, never stored)."""
    password = secrets.token_urlsafe(12)
    one_unit(store, lambda db: _set_demo_admin(db, password))
    return password


def _set_demo_admin(db: Session, password: str) -> None:
    try:
        admins.set_password(db, DEMO_ADMIN, password, actor="demo")
    except NotFoundError:  # nothing written yet: made in the same unit
        admins.create_admin(db, DEMO_ADMIN, password)


def _demo_user(store: Store) -> User:
    """The demo person, made on the first start: one unit."""
    return one_unit(
        store,
        lambda db: (
            users.find_user_by_phone(db, DEMO_PHONE)
            or users.create_user(db, DEMO_USER_NAME, DEMO_PHONE)
        ),
    )


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
