"""An app may have its access tokens signed with ES256 (issue #17): its code flow and
`client_credentials` give ES256 access tokens that a resource server verifies against
/jwks.json; the ID token stays RS256 (contract); userinfo, introspection and revocation take
them; a rotation keeps old and new verifiable; no other algorithm is taken for a key than its
own; every other app is unchanged."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, RP_REDIRECT
from support.units import in_unit
from support.world import World

from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import clients, signing_keys
from iam.services.clients import RegisteredClient

pytestmark = pytest.mark.usefixtures("reused_signing_key")


@pytest.fixture
def es256_rp(store: Store, world: World) -> RegisteredClient:
    """An ES256 app (the world's person signs into it)."""
    return in_unit(
        store, clients.create_client, "Fast API", [RP_REDIRECT], access_token_signing_alg="ES256"
    )


def auth_of(rp: RegisteredClient) -> tuple[str, str]:
    return rp.client.client_id, str(rp.client_secret)


def code_flow(front: Front, rp: RegisteredClient) -> dict[str, Any]:
    code, verifier, _ = front.get_code(rp.client.client_id, RP_REDIRECT)
    answer = front.exchange(code, verifier, RP_REDIRECT, rp)
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


def client_credentials(client: TestClient, rp: RegisteredClient) -> str:
    answer = client.post("/token", data={"grant_type": "client_credentials"}, auth=auth_of(rp))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def published(client: TestClient) -> dict[str, dict[str, Any]]:
    return {key["kid"]: key for key in client.get("/jwks.json").json()["keys"]}


def verified(client: TestClient, token: str, audience: str) -> dict[str, Any]:
    """As a resource server verifies it: the key by `kid` from /jwks.json, the algorithm the
    key says, nothing else."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict({"keys": [published(client)[kid]]})[kid]
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[key.algorithm_name], audience=audience, issuer=ISSUER
    )
    return claims


def userinfo(client: TestClient, token: str) -> int:
    return client.get("/userinfo", headers={"authorization": f"Bearer {token}"}).status_code


def introspected(client: TestClient, rp: RegisteredClient, token: str) -> dict[str, Any]:
    answer = client.post("/introspect", data={"token": token}, auth=auth_of(rp))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_es256(client: TestClient, token: str, rp: RegisteredClient) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("ES256", "at+jwt")
    key = published(client)[header["kid"]]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key
    return verified(client, token, rp.client.client_id)


# --- what an ES256 app gets --------------------------------------------------------------------


def test_the_code_flow_gives_an_es256_access_token_and_an_rs256_id_token(
    front: Front, es256_rp: RegisteredClient
) -> None:
    tokens = code_flow(front, es256_rp)
    claims = assert_es256(front.client, tokens["access_token"], es256_rp)
    assert claims["client_id"] == es256_rp.client.client_id and claims["sub"]
    id_header = jwt.get_unverified_header(tokens["id_token"])
    assert id_header["alg"] == "RS256"
    assert published(front.client)[id_header["kid"]]["kty"] == "RSA"
    id_claims = verified(front.client, tokens["id_token"], es256_rp.client.client_id)
    # at_hash by the ID token's algorithm (RS256: SHA-256), OIDC Core 3.1.3.6
    digest = __import__("hashlib").sha256(tokens["access_token"].encode()).digest()[:16]
    assert id_claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert id_claims["sub"] == claims["sub"]


def test_client_credentials_gives_an_es256_access_token(
    client: TestClient, es256_rp: RegisteredClient
) -> None:
    claims = assert_es256(client, client_credentials(client, es256_rp), es256_rp)
    assert claims["sub"] == es256_rp.client.client_id


def test_userinfo_and_introspection_take_an_es256_access_token(
    front: Front, es256_rp: RegisteredClient
) -> None:
    token = code_flow(front, es256_rp)["access_token"]
    answer = front.client.get("/userinfo", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["sub"] == jwt.decode(token, options={"verify_signature": False})["sub"]
    body = introspected(front.client, es256_rp, token)
    assert (body["active"], body["client_id"]) == (True, es256_rp.client.client_id)


def test_an_es256_access_token_is_revoked(front: Front, es256_rp: RegisteredClient) -> None:
    token = code_flow(front, es256_rp)["access_token"]
    revoked = front.client.post("/revoke", data={"token": token}, auth=auth_of(es256_rp))
    assert revoked.status_code == 200, revoked.text
    assert userinfo(front.client, token) == 401
    assert introspected(front.client, es256_rp, token) == {"active": False}


def test_a_default_app_is_unchanged(front: Front, world: World) -> None:
    assert world.rp.client.access_token_signing_alg == "RS256"
    tokens = code_flow(front, world.rp)
    for token in (tokens["access_token"], client_credentials(front.client, world.rp)):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "RS256"
        assert published(front.client)[header["kid"]]["kty"] == "RSA"
        verified(front.client, token, world.rp.client.client_id)
        assert userinfo(front.client, token) in (200, 403)  # (403: no openid in its scope)


def test_jwks_publishes_one_key_of_each_algorithm(client: TestClient) -> None:
    keys = list(published(client).values())
    assert sorted((key["kty"], key["alg"]) for key in keys) == [("EC", "ES256"), ("RSA", "RS256")]
    assert not any("d" in key for key in keys)


def test_an_app_switched_to_es256_gets_es256_tokens_at_once(
    client: TestClient, world: World, store: Store
) -> None:
    before = client_credentials(client, world.rp)
    in_unit(
        store,
        clients.update_client,
        world.rp.client.client_id,
        actor="cli",
        access_token_signing_alg="ES256",
    )
    after = client_credentials(client, world.rp)
    assert [jwt.get_unverified_header(t)["alg"] for t in (before, after)] == ["RS256", "ES256"]
    assert introspected(client, world.rp, before)["active"] is True  # issued ones still work
    assert introspected(client, world.rp, after)["active"] is True


# --- rotation ----------------------------------------------------------------------------------


def test_a_rotation_keeps_old_and_new_es256_tokens_verifiable(
    front: Front, es256_rp: RegisteredClient, store: Store, box: SecretBox
) -> None:
    old = code_flow(front, es256_rp)
    in_unit(store, signing_keys.rotate, box)
    front.client.app.state.oidc.keys.invalidate()  # (another instance: within the ring's ttl)
    new = code_flow(front, es256_rp)
    old_kid, new_kid = (jwt.get_unverified_header(t["access_token"])["kid"] for t in (old, new))
    assert old_kid != new_kid
    assert (
        jwt.get_unverified_header(new["id_token"])["kid"]
        != jwt.get_unverified_header(old["id_token"])["kid"]
    )
    for tokens in (old, new):
        assert_es256(front.client, tokens["access_token"], es256_rp)
        verified(front.client, tokens["id_token"], es256_rp.client.client_id)
        assert userinfo(front.client, tokens["access_token"]) == 200
    assert len(published(front.client)) == 4


# --- no algorithm confusion --------------------------------------------------------------------


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _kid_of(client: TestClient, kty: str) -> str:
    return next(kid for kid, key in published(client).items() if key["kty"] == kty)


def forgeries(client: TestClient, genuine: str) -> dict[str, str]:
    """Tokens with the claims of a genuine one (its jti is live), each signed in a way that
    must be refused."""
    claims = _claims_of(genuine)
    ec_kid, rsa_kid = _kid_of(client, "EC"), _kid_of(client, "RSA")
    ec_public = json.dumps(published(client)[ec_kid]).encode()
    head = {"typ": "at+jwt"}
    return {
        # HMAC keyed by the public key: the classic confusion
        "HS256 on the EC key": jose_jwt.encode(
            {"alg": "HS256", "kid": ec_kid, **head},
            claims,
            OctKey.import_key(ec_public),
            algorithms=["HS256"],
        ),
        "none": f"{_b64({'alg': 'none', 'kid': ec_kid, **head})}.{_segments(genuine)[1]}.",
        "RS256 header on the EC key": jose_jwt.encode(
            {"alg": "RS256", "kid": ec_kid, **head}, claims, RSAKey.generate_key(2048)
        ),
        "ES256 header on the RSA key": jose_jwt.encode(
            {"alg": "ES256", "kid": rsa_kid, **head}, claims, ECKey.generate_key("P-256")
        ),
        "ES256 by another key with our kid": jose_jwt.encode(
            {"alg": "ES256", "kid": ec_kid, **head}, claims, ECKey.generate_key("P-256")
        ),
        "no kid": jose_jwt.encode({"alg": "ES256", **head}, claims, ECKey.generate_key("P-256")),
        "a genuine signature under another header": ".".join(
            [_b64({"alg": "RS256", "kid": ec_kid, **head}), *_segments(genuine)[1:]]
        ),
    }


def test_only_the_keys_own_algorithm_is_taken(front: Front, es256_rp: RegisteredClient) -> None:
    genuine = code_flow(front, es256_rp)["access_token"]
    assert userinfo(front.client, genuine) == 200
    for name, forged in forgeries(front.client, genuine).items():
        assert userinfo(front.client, forged) == 401, name
        assert introspected(front.client, es256_rp, forged) == {"active": False}, name
    assert userinfo(front.client, genuine) == 200
