"""iam/oidc/keys.py: the key ring's cache, and what must not wait for it. A key rotated by
another instance verifies here and is published here at once; forged kids never make the ring
reload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jws import extract_compact
from starlette.testclient import TestClient
from support.constants import ISSUER
from support.keys import end_publication
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.db.store import Store
from iam.oidc import keys as keys_module
from iam.oidc.keys import KeyRing
from iam.oidc.tokens import decode_access_token
from iam.secretbox import SecretBox
from iam.services import signing_keys
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")


class Monotonic:
    """The key ring's `time`: a monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    fake = Monotonic()
    monkeypatch.setattr(keys_module, "time", fake)
    return fake


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per time a ring read its keys from the database."""
    calls: list[int] = []
    real: Callable[..., Any] = keys_module.load_material

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(keys_module, "load_material", counting)
    return calls


def kids(key_set) -> set[str]:
    return {key.kid for key in key_set.keys}


def signed_by(ring: KeyRing) -> str:
    header = {"alg": ring.algorithm, "typ": "at+jwt"}
    return jwt.encode(header, {"iss": ISSUER, "sub": "someone"}, ring.current().signing)


def signing_kid(ring: KeyRing) -> str:
    return next(iter(kids(ring.current().signing)))


def rotated(store: Store, box: SecretBox, **kwargs: str) -> tuple[str, str]:
    """Rotate (as the CLI or another instance does): the new RS256 and ES256 kids."""
    rsa, ec = in_unit(store, signing_keys.rotate, box, **kwargs)
    return rsa.kid, ec.kid


def test_a_key_rotated_elsewhere_verifies_here_before_the_ttl(
    store: Store, box: SecretBox, clock: Monotonic
) -> None:
    here, elsewhere = KeyRing(store, box), KeyRing(store, box)
    old = here.current().kids
    clock.advance(2)  # far from the 10 s ttl
    new, new_ec = rotated(store, box)
    clock.advance(2)
    assert new not in here.current().kids  # still cached
    token = signed_by(elsewhere)  # loads now, so signs with the new key
    assert signing_kid(elsewhere) == new
    assert decode_access_token(token, here, ISSUER) == {"iss": ISSUER, "sub": "someone"}
    assert kids(here.verifying(new)) == old | {new, new_ec}


def test_the_signing_key_changes_when_the_ttl_ends(
    store: Store, box: SecretBox, clock: Monotonic
) -> None:
    """Meanwhile the old key still signs; its tokens stay valid, it stays published."""
    ring = KeyRing(store, box, ttl=10)
    old, published = signing_kid(ring), ring.current().kids
    new, new_ec = rotated(store, box)
    clock.advance(10)
    assert signing_kid(ring) == old
    clock.advance(0.5)
    assert signing_kid(ring) == new
    assert kids(ring.current().signing_for("ES256")) == {new_ec}
    assert ring.current().kids == published | {new, new_ec}


def test_a_reload_with_the_same_keys_imports_no_private_key_again(
    store: Store, box: SecretBox, clock: Monotonic, loads: list[int]
) -> None:
    """Importing an RSA private key checks it (tens of ms of CPU): a reload every ttl that finds
    the same keys keeps the imported ones; a rotation imports the new ones."""
    ring = KeyRing(store, box, ttl=10)
    first = ring.current()
    clock.advance(11)
    again = ring.current()
    assert len(loads) == 2  # read again from the database...
    for alg in ("RS256", "ES256"):  # ...but the same signing keys, not imported twice
        assert again.signing_for(alg) is first.signing_for(alg)
    new, new_ec = rotated(store, box)
    clock.advance(11)
    assert kids(ring.current().signing) == {new}
    assert kids(ring.current().signing_for("ES256")) == {new_ec}


def test_forged_kids_never_reload_the_ring(
    store: Store, box: SecretBox, clock: Monotonic, loads: list[int]
) -> None:
    """An unknown kid costs one lookup of that kid; only a published one reloads the ring."""
    ring = KeyRing(store, box, ttl=10)
    known = ring.current().kids
    for forged in ("forged", "another forgery", "x" * 500):
        assert kids(ring.verifying(forged)) == known
        ring.verifying(signing_kid(ring))
        ring.verifying(None)
    assert len(loads) == 1
    new, new_ec = rotated(store, box)
    assert kids(ring.verifying(new)) == known | {new, new_ec}
    assert len(loads) == 2
    ring.verifying(new)
    assert len(loads) == 2


def test_published_keys_are_read_fresh(store: Store, box: SecretBox, clock: Monotonic) -> None:
    ring = KeyRing(store, box)
    old = ring.current().kids
    new, new_ec = rotated(store, box)
    published = ring.published_jwks()["keys"]
    assert {key["kid"] for key in published} == old | {new, new_ec}
    assert all("d" not in key for key in published)
    assert new not in ring.current().kids  # the signing cache is another matter


def test_jwks_lists_a_key_rotated_elsewhere_at_once(
    settings: Settings, store: Store, box: SecretBox
) -> None:
    with TestClient(create_app(settings, store=store, sms=ConsoleSms()), base_url=ISSUER) as app:
        old = {key["kid"] for key in app.get("/jwks.json").json()["keys"]}
        app.get("/jwks.json")
        new = set(rotated(store, box))  # the CLI, or another instance
        assert {key["kid"] for key in app.get("/jwks.json").json()["keys"]} == old | new


def test_a_token_from_another_instance_is_accepted_at_once(
    settings: Settings, store: Store, box: SecretBox, world: World, clock: Monotonic
) -> None:
    """Two instances on one database: B has its keys cached when A rotates and signs."""
    auth = (world.rp.client.client_id, world.rp.client_secret or "")
    credentials = {"grant_type": "client_credentials"}
    app_a, app_b = (create_app(settings, store=store, sms=ConsoleSms()) for _ in range(2))
    with TestClient(app_a, base_url=ISSUER) as a, TestClient(app_b, base_url=ISSUER) as b:
        warm = b.post("/token", data=credentials, auth=auth).json()["access_token"]
        assert b.post("/introspect", data={"token": warm}, auth=auth).json()["active"] is True
        clock.advance(2)
        new, _ = rotated(store, box, actor="admin:root")
        app_a.state.oidc.keys.invalidate()  # as A's admin console does after rotating
        token = a.post("/token", data=credentials, auth=auth).json()["access_token"]
        assert extract_compact(token.encode()).protected["kid"] == new
        answer = b.post("/introspect", data={"token": token}, auth=auth)
    assert answer.status_code == 200
    assert answer.json()["active"] is True


def test_stale_keys_serve_while_another_thread_reloads(
    store: Store, box: SecretBox, clock: Monotonic, loads: list[int]
) -> None:
    """A stale ring does not make every request wait for one reload (nor hold a database
    connection while it waits): the stale keys serve until the reload is done."""
    ring = KeyRing(store, box, ttl=10)
    stale = ring.current()
    in_unit(store, signing_keys.rotate, box)
    clock.advance(11)
    with ring._lock:  # another thread is reloading
        assert ring.current() is stale
    assert len(loads) == 1
    assert ring.current() is not stale and len(loads) == 2


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature joserfc checked while the test runs."""
    checked: list[str] = []
    real = jwt.decode

    def counting(value: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(value)
        return real(value, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return checked


def test_a_token_checked_once_is_not_checked_again(
    store: Store, box: SecretBox, signature_checks: list[str]
) -> None:
    """The same token again (an app calling userinfo twice): its claims, without a second RS256
    check; the claims handed out are copies, so a caller cannot change what the ring holds."""
    ring = KeyRing(store, box)
    token = signed_by(ring)
    first = decode_access_token(token, ring, ISSUER)
    assert first == {"iss": ISSUER, "sub": "someone"}
    first["sub"] = "someone else"
    assert decode_access_token(token, ring, ISSUER) == {"iss": ISSUER, "sub": "someone"}
    assert signature_checks == [token]


def test_a_changed_token_is_checked_afresh(
    store: Store, box: SecretBox, signature_checks: list[str]
) -> None:
    ring = KeyRing(store, box)
    token = signed_by(ring)
    assert decode_access_token(token, ring, ISSUER) is not None
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert decode_access_token(forged, ring, ISSUER) is None
    assert decode_access_token(token, ring, ISSUER + "/other") is None  # another issuer's ring
    assert signature_checks == [token, forged, token]


def test_a_remembered_token_of_a_key_no_longer_published_fails(
    store: Store, box: SecretBox, clock: Monotonic, signature_checks: list[str]
) -> None:
    """The key that signed it left the JWKS (rotated, then its publication ended): the next
    reload of the ring drops its kid, and the remembered token is checked again, and fails."""
    ring = KeyRing(store, box, ttl=10)
    token = signed_by(ring)
    kid = signing_kid(ring)
    assert decode_access_token(token, ring, ISSUER) is not None
    rotated(store, box)
    end_publication(store, kid)
    assert decode_access_token(token, ring, ISSUER) is not None  # within the ring's ttl
    clock.advance(11)
    assert decode_access_token(token, ring, ISSUER) is None
    assert signature_checks == [token, token]


def test_the_memo_of_checked_tokens_is_bounded(
    store: Store, box: SecretBox, signature_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "VERIFIED_LIMIT", 2)
    ring = KeyRing(store, box)
    tokens = [
        jwt.encode(
            {"alg": ring.algorithm, "typ": "at+jwt"},
            {"iss": ISSUER, "sub": f"person {n}"},
            ring.current().signing,
        )
        for n in range(3)
    ]
    for token in (*tokens, tokens[0]):  # the third starts the memo over: the first is gone
        assert decode_access_token(token, ring, ISSUER) is not None
    assert signature_checks == [*tokens, tokens[0]]
