"""Discovery metadata, the published keys, and key rotation as relying parties see it."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import jwt
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import TEST_SECRET
from support.keys import end_publication as end_publication_in_database
from support.units import in_unit
from support.world import World

from iam.db.models import SigningKey
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import signing_keys

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# --- helpers ---
def discovery(client: TestClient) -> dict:
    answer = client.get("/.well-known/openid-configuration")
    assert answer.status_code == 200, answer.text
    return answer.json()


def published_kids(client: TestClient) -> set[str]:
    return {key["kid"] for key in client.get("/jwks.json").json()["keys"]}


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def verify(client: TestClient, token: str, audience: str) -> dict:
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").json())
    return jwt.decode(
        token, jwks[kid_of(token)], algorithms=["RS256"], audience=audience, issuer=ISSUER
    )


def userinfo_status(client: TestClient, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def rotate(app, store: Store) -> str:
    """Rotate both keys; the new RS256 one's kid (the ID tokens' and default access tokens')."""
    rsa, _ec = in_unit(store, signing_keys.rotate, SecretBox(TEST_SECRET))
    app.state.oidc.keys.invalidate()
    return rsa.kid


def end_publication(app, store: Store, kid: str) -> None:
    end_publication_in_database(store, kid)
    app.state.oidc.keys.invalidate()


# --- discovery ---


@pytest.mark.parametrize(
    ("field", "path"),
    [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks.json"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("end_session_endpoint", "/logout"),
    ],
)
def test_endpoints_derive_from_the_issuer(client: TestClient, field: str, path: str) -> None:
    assert discovery(client)[field] == ISSUER + path


def test_issuer_is_the_configured_one(client: TestClient) -> None:
    assert discovery(client)["issuer"] == ISSUER


def test_protocol_choices_are_advertised(client: TestClient) -> None:
    document = discovery(client)
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        document["grant_types_supported"]
    )
    assert {"openid", "profile", "email", "phone"} <= set(document["scopes_supported"])
    assert "none" not in document["id_token_signing_alg_values_supported"]


def test_advertised_jwks_uri_serves_the_keys(client: TestClient) -> None:
    path = urlsplit(discovery(client)["jwks_uri"]).path
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.json()["keys"]


# --- JWKS ---


def test_jwks_has_public_keys_only_rsa_and_p256(client: TestClient) -> None:
    """The RS256 key (ID tokens, default access tokens) and the ES256 key (the access tokens
    of apps that chose it)."""
    keys = client.get("/jwks.json").json()["keys"]
    assert sorted((key["kty"], key["alg"]) for key in keys) == [("EC", "ES256"), ("RSA", "RS256")]
    for key in keys:
        assert key["kid"] and key["use"] == "sig"
        assert {"n", "e"} <= set(key) if key["kty"] == "RSA" else {"crv", "x", "y"} <= set(key)
        assert key.get("crv", "P-256") == "P-256"
        assert not PRIVATE_MEMBERS & set(key), sorted(key)


def test_tokens_name_a_published_kid(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    kids = published_kids(front.client)
    assert kid_of(tokens["id_token"]) in kids
    assert kid_of(tokens["access_token"]) in kids


# --- rotation ---


def test_after_rotation_new_tokens_carry_the_new_kid(
    app, front: Front, world: World, store: Store
) -> None:
    before = front.tokens(world)
    old_kid = kid_of(before["id_token"])
    new_kid = rotate(app, store)
    assert new_kid != old_kid
    after = front.tokens(world)
    assert kid_of(after["id_token"]) == new_kid
    assert kid_of(after["access_token"]) == new_kid
    assert published_kids(front.client) >= {old_kid, new_kid}
    assert verify(front.client, after["id_token"], world.rp.client.client_id)["sub"]


def test_tokens_signed_before_rotation_still_work(
    app, front: Front, world: World, store: Store
) -> None:
    before = front.tokens(world)
    rotate(app, store)
    assert userinfo_status(front.client, before["access_token"]) == 200
    client_id = world.rp.client.client_id
    assert verify(front.client, before["id_token"], client_id)["sub"] == world.user.id
    assert verify(front.client, before["access_token"], client_id)["sub"] == world.user.id


def test_old_key_stays_published_while_its_tokens_live(
    app, client: TestClient, world: World, store: Store
) -> None:
    old_kid = next(iter(published_kids(client)))  # (either key: each is retired alike)
    rotate(app, store)
    with store() as db:
        old = db.scalars(select(SigningKey).where(SigningKey.kid == old_kid)).one()
    longest = max(world.rp.client.access_token_ttl, world.rp.client.id_token_ttl)
    assert old.publish_until - old.retired_at >= timedelta(seconds=longest)


def test_old_key_leaves_jwks_after_its_publication_ends(
    app, front: Front, world: World, store: Store
) -> None:
    before = front.tokens(world)
    old_kid = kid_of(before["id_token"])
    old_kids = published_kids(front.client)
    new_kid = rotate(app, store)
    for kid in old_kids:
        end_publication(app, store, kid)
    new_kids = published_kids(front.client)
    assert new_kid in new_kids and len(new_kids) == 2 and not new_kids & old_kids
    assert old_kid in old_kids
    assert userinfo_status(front.client, before["access_token"]) == 401
    after = front.tokens(world)
    assert userinfo_status(front.client, after["access_token"]) == 200
