"""/revoke (RFC 7009) and /introspect (RFC 7662): client-authenticated, about the client's own
tokens only."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import RP_REDIRECT
from support.units import in_unit
from support.world import World

from iam.clock import utcnow
from iam.db.models import AccessToken
from iam.db.store import Store
from iam.services import clients

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"


# --- helpers ---
def rp_auth(world: World) -> tuple[str, str]:
    return world.rp.client.client_id, world.rp.client_secret


def revoke(client: TestClient, auth, **data: str):
    return client.post("/revoke", data=data, auth=auth)


def introspect(client: TestClient, auth, token: str, **extra: str):
    answer = client.post("/introspect", data={"token": token, **extra}, auth=auth)
    assert answer.headers["cache-control"] == "no-store"
    return answer


def introspection(client: TestClient, world: World, token: str) -> dict:
    answer = introspect(client, rp_auth(world), token)
    assert answer.status_code == 200, answer.text
    return answer.json()


def userinfo_status(client: TestClient, access_token: str) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def refresh(client: TestClient, world: World, refresh_token: str):
    return client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=rp_auth(world),
    )


def assert_oauth_error(response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def other_client(store: Store) -> clients.RegisteredClient:
    return in_unit(store, clients.create_client, "Other RP", [RP_REDIRECT])


def public_tokens(front: Front, world: World) -> dict:
    return front.tokens(world, public=True)


# --- revocation ---


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoked_access_token_stops_working(front: Front, world: World, hint: str | None) -> None:
    tokens = front.tokens(world)
    extra = {"token_type_hint": hint} if hint else {}
    answer = revoke(front.client, rp_auth(world), token=tokens["access_token"], **extra)
    assert answer.status_code == 200, answer.text
    assert userinfo_status(front.client, tokens["access_token"]) == 401
    assert introspection(front.client, world, tokens["access_token"]) == {"active": False}


def test_revoking_an_access_token_leaves_other_tokens_alone(front: Front, world: World) -> None:
    first = front.tokens(world)
    second = front.tokens(world)
    revoke(front.client, rp_auth(world), token=first["access_token"])
    assert userinfo_status(front.client, second["access_token"]) == 200


def test_revoked_refresh_token_kills_its_family(front: Front, world: World) -> None:
    first = front.tokens(world)
    second = refresh(front.client, world, first["refresh_token"]).json()
    answer = revoke(front.client, rp_auth(world), token=second["refresh_token"])
    assert answer.status_code == 200, answer.text
    assert_oauth_error(refresh(front.client, world, second["refresh_token"]), "invalid_grant")
    for tokens in (first, second):
        assert introspection(front.client, world, tokens["access_token"]) == {"active": False}
        assert userinfo_status(front.client, tokens["access_token"]) == 401
    assert introspection(front.client, world, second["refresh_token"]) == {"active": False}


def test_public_client_may_revoke_its_own_refresh_token(front: Front, world: World) -> None:
    tokens = public_tokens(front, world)
    client_id = world.public_rp.client.client_id
    answer = front.client.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}
    )
    assert answer.status_code == 200, answer.text
    again = front.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert_oauth_error(again, "invalid_grant")


def test_revoking_an_unknown_token_is_fine(client: TestClient, world: World) -> None:
    answer = revoke(client, rp_auth(world), token="no-such-token")
    assert answer.status_code == 200, answer.text


def test_revoking_twice_is_fine(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    assert revoke(front.client, rp_auth(world), token=tokens["access_token"]).status_code == 200
    assert revoke(front.client, rp_auth(world), token=tokens["access_token"]).status_code == 200


def test_revocation_without_a_token_is_invalid_request(client: TestClient, world: World) -> None:
    assert_oauth_error(revoke(client, rp_auth(world)), "invalid_request")


def test_revocation_ignores_an_unknown_hint(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = revoke(
        front.client, rp_auth(world), token=tokens["access_token"], token_type_hint="id_token"
    )
    assert answer.status_code == 200, answer.text
    assert userinfo_status(front.client, tokens["access_token"]) == 401


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_revoking_another_clients_token_is_refused(
    front: Front, world: World, store: Store, kind: str
) -> None:
    tokens = front.tokens(world)
    other = other_client(store)
    answer = revoke(front.client, (other.client.client_id, other.client_secret), token=tokens[kind])
    assert_oauth_error(answer, "invalid_grant")
    assert introspection(front.client, world, tokens["access_token"])["active"] is True
    assert introspection(front.client, world, tokens["refresh_token"])["active"] is True


@pytest.mark.parametrize(
    "auth",
    [None, ("c_no_such_client", "x"), "wrong-secret"],
    ids=["none", "unknown-client", "wrong-secret"],
)
def test_revocation_needs_an_authenticated_client(front: Front, world: World, auth) -> None:
    tokens = front.tokens(world)
    if auth == "wrong-secret":
        auth = (world.rp.client.client_id, "wrong")
    answer = revoke(front.client, auth, token=tokens["access_token"])
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    assert userinfo_status(front.client, tokens["access_token"]) == 200


def test_confidential_client_cannot_revoke_without_its_secret(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.post(
        "/revoke",
        data={"token": tokens["access_token"], "client_id": world.rp.client.client_id},
    )
    assert_oauth_error(answer, "invalid_client", 401)
    assert userinfo_status(front.client, tokens["access_token"]) == 200


# --- introspection ---


def test_active_access_token_is_described(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    body = introspection(front.client, world, tokens["access_token"])
    header = jwt.get_unverified_header(tokens["access_token"])
    jwks = jwt.PyJWKSet.from_dict(front.client.get("/jwks.json").json())
    claims = jwt.decode(
        tokens["access_token"],
        jwks[header["kid"]],
        algorithms=["RS256"],
        audience=world.rp.client.client_id,
        issuer=ISSUER,
    )
    assert body["active"] is True
    assert body["client_id"] == world.rp.client.client_id
    assert body["sub"] == world.user.id
    assert body["scope"] == tokens["scope"]
    assert body["iss"] == ISSUER
    assert body["token_type"] == "Bearer"
    assert body["jti"] == claims["jti"]
    assert body["iat"] <= claims["iat"] + 1
    assert abs(body["exp"] - claims["exp"]) <= 1


def test_active_refresh_token_is_described(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    body = introspection(front.client, world, tokens["refresh_token"])
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["client_id"] == world.rp.client.client_id
    assert body["sub"] == world.user.id
    assert body["scope"] == tokens["scope"]
    assert body["exp"] > body["iat"]


def test_client_credentials_token_is_described_with_the_client_as_subject(
    client: TestClient, world: World
) -> None:
    token = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=rp_auth(world)
    ).json()["access_token"]
    body = introspection(client, world, token)
    assert body["active"] is True
    assert body["sub"] == world.rp.client.client_id


def test_expired_access_token_is_inactive(front: Front, world: World, store: Store) -> None:
    tokens = front.tokens(world)
    with store() as db:
        db.execute(update(AccessToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert introspection(front.client, world, tokens["access_token"]) == {"active": False}


def test_revoked_access_token_is_inactive(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    revoke(front.client, rp_auth(world), token=tokens["access_token"])
    assert introspection(front.client, world, tokens["access_token"]) == {"active": False}


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
    ids=["garbage", "three-parts", "empty", "alg-none"],
)
def test_garbage_is_inactive(client: TestClient, world: World, token: str) -> None:
    assert introspection(client, world, token) == {"active": False}


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_another_clients_token_is_inactive(
    front: Front, world: World, store: Store, kind: str
) -> None:
    tokens = front.tokens(world)
    other = other_client(store)
    answer = introspect(front.client, (other.client.client_id, other.client_secret), tokens[kind])
    assert answer.status_code == 200
    assert answer.json() == {"active": False}


def test_rotated_refresh_token_is_inactive(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    assert refresh(front.client, world, tokens["refresh_token"]).status_code == 200
    assert introspection(front.client, world, tokens["refresh_token"]) == {"active": False}


def test_public_client_may_not_introspect(front: Front, world: World) -> None:
    tokens = public_tokens(front, world)
    answer = front.client.post(
        "/introspect",
        data={"token": tokens["access_token"], "client_id": world.public_rp.client.client_id},
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"


def test_introspection_needs_an_authenticated_client(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = introspect(front.client, (world.rp.client.client_id, "wrong"), tokens["access_token"])
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert "active" not in answer.json()


def test_introspection_without_a_token_is_invalid_request(client: TestClient, world: World) -> None:
    answer = client.post("/introspect", data={}, auth=rp_auth(world))
    assert_oauth_error(answer, "invalid_request")
