"""The ID token (OIDC Core 2) and the JWT access token (RFC 9068), verified with PyJWT against
the published JWKS, independently of the server's own code."""

from __future__ import annotations

import base64
import hashlib
import time

import jwt
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import PUBLIC_REDIRECT, RP_REDIRECT
from support.protocol import query_of
from support.world import World

from iam.clock import epoch
from iam.db.models import SsoSession
from iam.db.store import Store

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"


# --- helpers ---
def verify(client: TestClient, token: str, audience: str) -> dict:
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").json())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "aud", "exp", "iat", "sub"]},
    )


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def the_session(store: Store) -> SsoSession:
    with store() as db:
        return db.scalars(select(SsoSession)).one()


# --- the ID token ---


def test_id_token_carries_the_standard_claims(front: Front, world: World, store: Store) -> None:
    client_id = world.rp.client.client_id
    code, verifier, params = front.get_code(client_id, RP_REDIRECT)
    tokens = front.exchange(code, verifier, RP_REDIRECT, world.rp).json()
    claims = verify(front.client, tokens["id_token"], client_id)
    sso = the_session(store)
    now = int(time.time())
    assert claims["iss"] == ISSUER
    assert claims["aud"] == client_id
    assert claims["sub"] == world.user.id
    assert abs(claims["iat"] - now) <= 5
    assert claims["exp"] - claims["iat"] == world.rp.client.id_token_ttl
    assert claims["auth_time"] == epoch(sso.auth_time)
    assert claims["auth_time"] <= claims["iat"]
    assert claims["nonce"] == params["nonce"]
    assert claims["sid"] == sso.id
    assert claims["amr"] == ["sms"]
    assert claims["at_hash"] == at_hash(tokens["access_token"])


def test_id_token_header(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    assert header["kid"]


def test_no_nonce_when_none_was_sent(front: Front, world: World) -> None:
    client_id = world.rp.client.client_id
    params, verifier = front.code_params(client_id, RP_REDIRECT)
    del params["nonce"]
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    tokens = front.exchange(code, verifier, RP_REDIRECT, world.rp).json()
    assert "nonce" not in verify(front.client, tokens["id_token"], client_id)


def test_public_clients_id_token_is_for_that_client(front: Front, world: World) -> None:
    client_id = world.public_rp.client.client_id
    code, verifier, params = front.get_code(client_id, PUBLIC_REDIRECT)
    tokens = front.exchange(code, verifier, PUBLIC_REDIRECT, world.public_rp).json()
    claims = verify(front.client, tokens["id_token"], client_id)
    assert claims["aud"] == client_id
    assert claims["nonce"] == params["nonce"]
    with pytest.raises(jwt.InvalidAudienceError):
        verify(front.client, tokens["id_token"], world.rp.client.client_id)


@pytest.mark.parametrize(
    ("scope", "present", "absent"),
    [
        ("openid", set(), {"name", "email", "phone_number"}),
        ("openid profile", {"name"}, {"email", "phone_number"}),
        ("openid email", {"email"}, {"name", "phone_number"}),
        ("openid phone", {"phone_number", "phone_number_verified"}, {"name", "email"}),
        ("openid profile email phone", {"name", "email", "phone_number"}, set()),
    ],
    ids=["openid", "profile", "email", "phone", "all"],
)
def test_person_claims_follow_the_scope(
    front: Front, world: World, scope: str, present: set[str], absent: set[str]
) -> None:
    tokens = front.tokens(world, scope=scope)
    claims = verify(front.client, tokens["id_token"], world.rp.client.client_id)
    assert present <= set(claims)
    assert not absent & set(claims)


def test_person_claim_values(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    claims = verify(front.client, tokens["id_token"], world.rp.client.client_id)
    assert claims["name"] == world.user.name
    assert claims["email"] == world.user.email
    assert claims["phone_number"] == world.user.phone
    assert claims["phone_number_verified"] is True


def test_no_wecom_context_for_a_none_policy_app(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    client_id = world.rp.client.client_id
    for token in (tokens["id_token"], tokens["access_token"]):
        assert "wecom_context" not in verify(front.client, token, client_id)


# --- the access token (RFC 9068) ---


def test_access_token_is_an_at_jwt(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"]


def test_access_token_claims(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    client_id = world.rp.client.client_id
    claims = verify(front.client, tokens["access_token"], client_id)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == world.user.id
    assert claims["aud"] == client_id
    assert claims["client_id"] == client_id
    assert claims["scope"] == tokens["scope"]
    assert claims["jti"]
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    assert abs(claims["iat"] - int(time.time())) <= 5


def test_each_access_token_has_its_own_jti(front: Front, world: World) -> None:
    client_id = world.rp.client.client_id
    first = verify(front.client, front.tokens(world)["access_token"], client_id)
    second = verify(front.client, front.tokens(world)["access_token"], client_id)
    assert first["jti"] != second["jti"]
