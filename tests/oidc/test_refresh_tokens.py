"""The refresh_token grant: rotation, reuse detection, scope, and the refreshed ID token."""

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
from iam.db.models import SsoSession, User
from iam.db.store import Store
from iam.services import clients

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"


# --- helpers ---
def rp_auth(world: World) -> tuple[str, str]:
    return world.rp.client.client_id, world.rp.client_secret


def refresh(client: TestClient, world: World, refresh_token: str, **extra: str):
    return client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
        auth=rp_auth(world),
    )


def refreshed(client: TestClient, world: World, refresh_token: str, **extra: str) -> dict:
    answer = refresh(client, world, refresh_token, **extra)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()


def assert_oauth_error(response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def verify(client: TestClient, token: str, audience: str) -> dict:
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").json())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=ISSUER)


def is_active(client: TestClient, world: World, token: str) -> bool:
    answer = client.post("/introspect", data={"token": token}, auth=rp_auth(world))
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])


def userinfo(client: TestClient, access_token: str):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


# --- rotation and reuse ---


def test_refresh_gives_new_tokens_and_a_new_refresh_token(front: Front, world: World) -> None:
    first = front.tokens(world)
    second = refreshed(front.client, world, first["refresh_token"])
    assert second["token_type"] == "Bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == first["scope"]
    assert userinfo(front.client, second["access_token"]).status_code == 200


def test_rotated_refresh_token_is_refused(front: Front, world: World) -> None:
    first = front.tokens(world)
    refreshed(front.client, world, first["refresh_token"])
    assert_oauth_error(refresh(front.client, world, first["refresh_token"]), "invalid_grant")


def test_reuse_of_a_rotated_refresh_token_revokes_the_family(front: Front, world: World) -> None:
    first = front.tokens(world)
    second = refreshed(front.client, world, first["refresh_token"])
    third = refreshed(front.client, world, second["refresh_token"])
    assert is_active(front.client, world, third["access_token"])

    assert_oauth_error(refresh(front.client, world, first["refresh_token"]), "invalid_grant")

    assert_oauth_error(refresh(front.client, world, third["refresh_token"]), "invalid_grant")
    for tokens in (first, second, third):
        assert not is_active(front.client, world, tokens["access_token"])
    assert userinfo(front.client, third["access_token"]).status_code == 401


def test_reuse_does_not_touch_another_login(front: Front, world: World) -> None:
    mine = front.tokens(world)
    other = front.tokens(world)
    refreshed(front.client, world, mine["refresh_token"])
    refresh(front.client, world, mine["refresh_token"])  # replay: kills `mine` only
    assert is_active(front.client, world, other["access_token"])
    assert refresh(front.client, world, other["refresh_token"]).status_code == 200


def test_unknown_refresh_token_is_invalid_grant(client: TestClient, world: World) -> None:
    assert_oauth_error(refresh(client, world, "no-such-token"), "invalid_grant")


def test_missing_refresh_token_is_invalid_request(client: TestClient, world: World) -> None:
    answer = client.post("/token", data={"grant_type": "refresh_token"}, auth=rp_auth(world))
    assert_oauth_error(answer, "invalid_request")


def test_refresh_token_of_another_client_is_invalid_grant(
    front: Front, world: World, store: Store
) -> None:
    tokens = front.tokens(world)
    other = in_unit(store, clients.create_client, "Other RP", [RP_REDIRECT])
    answer = front.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(other.client.client_id, other.client_secret),
    )
    assert_oauth_error(answer, "invalid_grant")
    # Presented by a stranger, the token is neither consumed nor its family revoked.
    assert refresh(front.client, world, tokens["refresh_token"]).status_code == 200


def test_refresh_needs_client_authentication(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": world.rp.client.client_id,
        },
    )
    assert_oauth_error(answer, "invalid_client", 401)


def disable_user(store: Store) -> None:
    with store() as db:
        db.execute(update(User).values(status="disabled"))
        db.commit()


def test_refresh_for_a_disabled_user_is_refused(front: Front, world: World, store: Store) -> None:
    tokens = front.tokens(world)
    disable_user(store)
    answer = refresh(front.client, world, tokens["refresh_token"])
    assert answer.status_code == 400, answer.text
    assert "access_token" not in answer.json()


def test_refresh_for_a_disabled_user_is_invalid_grant(
    front: Front, world: World, store: Store
) -> None:
    tokens = front.tokens(world)
    disable_user(store)
    assert_oauth_error(refresh(front.client, world, tokens["refresh_token"]), "invalid_grant")


# --- scope ---


def test_refresh_may_narrow_the_scope(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    narrowed = refreshed(front.client, world, tokens["refresh_token"], scope="openid profile")
    assert narrowed["scope"] == "openid profile"
    access = verify(front.client, narrowed["access_token"], world.rp.client.client_id)
    assert access["scope"] == "openid profile"
    claims = userinfo(front.client, narrowed["access_token"]).json()
    assert "name" in claims
    assert "email" not in claims
    assert "phone_number" not in claims


def test_a_narrowed_refresh_keeps_the_original_grant(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    narrowed = refreshed(front.client, world, tokens["refresh_token"], scope="openid")
    again = refreshed(front.client, world, narrowed["refresh_token"])
    assert again["scope"] == tokens["scope"]


def test_refresh_may_not_widen_the_scope(front: Front, world: World) -> None:
    tokens = front.tokens(world, scope="openid profile")
    answer = refresh(front.client, world, tokens["refresh_token"], scope="openid profile email")
    assert_oauth_error(answer, "invalid_scope")
    # The refused request did not use the token up.
    assert refresh(front.client, world, tokens["refresh_token"]).status_code == 200


# --- the ID token on refresh ---


def test_refreshed_id_token_keeps_sub_and_auth_time_without_nonce(
    front: Front, world: World
) -> None:
    tokens = front.tokens(world)
    client_id = world.rp.client.client_id
    original = verify(front.client, tokens["id_token"], client_id)
    assert original["nonce"]
    new = refreshed(front.client, world, tokens["refresh_token"])
    claims = verify(front.client, new["id_token"], client_id)
    assert claims["sub"] == original["sub"] == world.user.id
    assert claims["auth_time"] == original["auth_time"]
    assert claims["sid"] == original["sid"]
    assert claims["amr"] == original["amr"]
    assert "nonce" not in claims
    assert claims["aud"] == client_id


# --- public clients ---


def test_public_client_refreshes_with_its_client_id_only(front: Front, world: World) -> None:
    client_id = world.public_rp.client.client_id
    first = front.tokens(world, public=True)
    answer = front.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert verify(front.client, body["id_token"], client_id)["sub"] == world.user.id


# --- offline_access (OIDC Core 11; issue #15) -----------------------------------------------------


def _sign_out(front: Front) -> None:
    csrf = front.csrf("/logout")
    assert front.client.post("/logout", data={"csrf_token": csrf}).status_code in (200, 303)


def test_without_offline_access_refresh_ends_with_the_session(front: Front, world: World) -> None:
    tokens = front.tokens(world, scope="openid profile")
    assert "offline_access" not in tokens["scope"].split()
    _sign_out(front)
    assert_oauth_error(refresh(front.client, world, tokens["refresh_token"]), "invalid_grant")


def test_without_offline_access_an_expired_session_ends_refresh(
    front: Front, world: World, store: Store
) -> None:
    tokens = front.tokens(world, scope="openid profile")
    with store() as db:
        db.execute(update(SsoSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert_oauth_error(refresh(front.client, world, tokens["refresh_token"]), "invalid_grant")


def test_offline_access_outlives_the_session(front: Front, world: World, store: Store) -> None:
    tokens = front.tokens(world, scope="openid profile offline_access")
    assert "offline_access" in tokens["scope"].split()
    _sign_out(front)
    again = refreshed(front.client, world, tokens["refresh_token"])
    assert again["access_token"] and again["refresh_token"] != tokens["refresh_token"]
    with store() as db:  # and so does the rotated one, though the session is long gone
        db.execute(update(SsoSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    assert refreshed(front.client, world, again["refresh_token"])["access_token"]


def test_a_disabled_person_loses_even_offline_access(
    front: Front, world: World, store: Store
) -> None:
    tokens = front.tokens(world, scope="openid profile offline_access")
    with store() as db:
        db.execute(update(User).values(status="disabled"))
        db.commit()
    assert_oauth_error(refresh(front.client, world, tokens["refresh_token"]), "invalid_grant")


def test_discovery_does_not_offer_a_consent_prompt(client: TestClient) -> None:
    """No consent page (first-party apps): `prompt=consent` is not advertised."""
    document = client.get("/.well-known/openid-configuration").json()
    assert "consent" not in document["prompt_values_supported"]
    assert "offline_access" in document["scopes_supported"]
