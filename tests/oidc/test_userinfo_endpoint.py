"""/userinfo (OIDC Core 5.3): claims by scope for a valid bearer token, 401 for anything else."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import update
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import RP_REDIRECT
from support.protocol import query_of
from support.world import World

from iam.clock import utcnow
from iam.db.models import AccessToken, User
from iam.db.store import Store

pytestmark = pytest.mark.usefixtures("reused_signing_key")


# --- helpers ---
def rp_auth(world: World) -> tuple[str, str]:
    return world.rp.client.client_id, world.rp.client_secret


def call(client: TestClient, method: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.request(method, "/userinfo", headers=headers)


def claims_for(front: Front, world: World, method: str, scope: str) -> dict:
    tokens = front.tokens(world, scope=scope)
    answer = call(front.client, method, tokens["access_token"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    challenge = response.headers["www-authenticate"]
    assert challenge.lower().startswith("bearer")
    assert 'error="invalid_token"' in challenge
    assert response.headers["cache-control"] == "no-store"


def forged(token: str) -> str:
    """The same header and claims, signed by a key that is not ours."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


# --- claims by scope ---


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "name", "updated_at"}),
        ("openid email", {"sub", "email", "email_verified"}),
        ("openid phone", {"sub", "phone_number", "phone_number_verified"}),
        (
            "openid profile email phone",
            {
                "sub",
                "name",
                "updated_at",
                "email",
                "email_verified",
                "phone_number",
                "phone_number_verified",
            },
        ),
    ],
    ids=["openid", "profile", "email", "phone", "all"],
)
def test_claims_follow_the_scope(
    front: Front, world: World, scope: str, expected: set[str]
) -> None:
    claims = claims_for(front, world, "GET", scope)
    assert set(claims) == expected
    assert claims["sub"] == world.user.id


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_get_and_post_give_the_same_claims(front: Front, world: World, method: str) -> None:
    tokens = front.tokens(world, scope="openid email")
    answer = call(front.client, method, tokens["access_token"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {
        "sub": world.user.id,
        "email": world.user.email,
        "email_verified": False,
    }


def test_claim_values(front: Front, world: World) -> None:
    claims = claims_for(front, world, "GET", "openid profile email phone")
    assert claims["name"] == world.user.name
    assert claims["email"] == world.user.email
    assert claims["phone_number"] == world.user.phone
    assert claims["phone_number_verified"] is True  # the SMS login proved it
    assert claims["email_verified"] is False


def test_sub_is_the_same_as_in_the_id_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert call(front.client, "GET", tokens["access_token"]).json()["sub"] == id_claims["sub"]


# --- refusals ---


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_token_is_401_with_a_challenge(client: TestClient, method: str) -> None:
    answer = call(client, method, None)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
    ids=["garbage", "three-parts", "alg-none"],
)
def test_garbage_token_is_invalid_token(client: TestClient, world: World, token: str) -> None:
    assert_invalid_token(call(client, "GET", token))


def test_basic_credentials_are_not_a_bearer_token(client: TestClient, world: World) -> None:
    answer = client.get("/userinfo", auth=rp_auth(world))
    assert answer.status_code == 401


def test_revoked_token_is_invalid_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    front.client.post("/revoke", data={"token": tokens["access_token"]}, auth=rp_auth(world))
    assert_invalid_token(call(front.client, "GET", tokens["access_token"]))


def test_expired_token_is_invalid_token(front: Front, world: World, store: Store) -> None:
    tokens = front.tokens(world)
    with store() as db:
        db.execute(update(AccessToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert_invalid_token(call(front.client, "GET", tokens["access_token"]))


def test_token_signed_by_another_key_is_invalid_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    assert call(front.client, "GET", tokens["access_token"]).status_code == 200
    assert_invalid_token(call(front.client, "GET", forged(tokens["access_token"])))


def test_tampered_claims_are_invalid_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    header, payload, signature = tokens["access_token"].split(".")
    other = jwt.encode({"sub": "someone-else"}, "x" * 32, algorithm="HS256").split(".")[1]
    assert_invalid_token(call(front.client, "GET", f"{header}.{other}.{signature}"))


def test_id_token_is_not_an_access_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    assert_invalid_token(call(front.client, "GET", tokens["id_token"]))


def test_refresh_token_is_not_an_access_token(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    assert_invalid_token(call(front.client, "GET", tokens["refresh_token"]))


def test_token_of_a_disabled_user_is_invalid_token(
    front: Front, world: World, store: Store
) -> None:
    tokens = front.tokens(world)
    assert call(front.client, "GET", tokens["access_token"]).status_code == 200  # user read once
    with store() as db:
        db.execute(update(User).where(User.id == world.user.id).values(status="disabled"))
        db.commit()
    assert_invalid_token(call(front.client, "GET", tokens["access_token"]))


def test_client_credentials_token_has_no_user(client: TestClient, world: World) -> None:
    token = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=rp_auth(world)
    ).json()["access_token"]
    answer = call(client, "GET", token)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "insufficient_scope"


def test_token_without_openid_scope_is_insufficient_scope(front: Front, world: World) -> None:
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT, scope="profile")
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    tokens = front.exchange(code, verifier, RP_REDIRECT, world.rp).json()
    answer = call(front.client, "GET", tokens["access_token"])
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "insufficient_scope"


# --- error shapes (RFC 6750 3, 3.1; issue #15) ---------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_token_is_a_bare_bearer_challenge(client: TestClient, world: World, method: str) -> None:
    """RFC 6750 3.1: a request without any authentication information gets no error code."""
    answer = call(client, method, None)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.lower().startswith("bearer") and "error=" not in challenge
    assert answer.headers["cache-control"] == "no-store"


def test_insufficient_scope_carries_its_challenge(front: Front, world: World) -> None:
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT, scope="profile")
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    tokens = front.exchange(code, verifier, RP_REDIRECT, world.rp).json()
    refused = call(front.client, "GET", tokens["access_token"])
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert challenge.lower().startswith("bearer")
    assert 'error="insufficient_scope"' in challenge and 'scope="openid"' in challenge
