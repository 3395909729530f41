"""/token: the authorization_code and client_credentials grants, client authentication, and
what the endpoint refuses."""

from __future__ import annotations

import json
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import PUBLIC_REDIRECT, RP_REDIRECT
from support.protocol import pkce_pair, query_of
from support.units import in_unit
from support.world import World

from iam.clock import utcnow
from iam.db.models import AuthorizationCode
from iam.db.store import Store
from iam.services import clients

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"
CODE = "authorization_code"


# --- helpers ---
def rp_auth(world: World) -> tuple[str, str]:
    return world.rp.client.client_id, world.rp.client_secret


def post_token(client: TestClient, data: dict[str, str], auth=None):
    return client.post("/token", data=data, auth=auth)


def code_request(code: str, verifier: str | None, redirect_uri: str | None = RP_REDIRECT) -> dict:
    data = {"grant_type": CODE, "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    return data


def assert_oauth_error(response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def verify(client: TestClient, token: str, audience: str) -> dict:
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").json())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=ISSUER)


def introspect(client: TestClient, world: World, token: str) -> dict:
    answer = client.post("/introspect", data={"token": token}, auth=rp_auth(world))
    assert answer.status_code == 200, answer.text
    return answer.json()


def other_confidential_client(store: Store) -> clients.RegisteredClient:
    return in_unit(store, clients.create_client, "Other RP", [RP_REDIRECT])


# --- authorization_code: the happy path ---


def test_code_exchange_gives_the_full_token_response(front: Front, world: World) -> None:
    code, verifier, params = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    answer = post_token(front.client, code_request(code, verifier), rp_auth(world))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == world.rp.client.access_token_ttl
    assert body["scope"] == params["scope"]
    assert body["refresh_token"]
    assert body["id_token"]
    claims = verify(front.client, body["access_token"], world.rp.client.client_id)
    assert claims["exp"] - claims["iat"] == body["expires_in"]


def test_client_secret_post_is_accepted(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    data = {
        **code_request(code, verifier),
        "client_id": world.rp.client.client_id,
        "client_secret": world.rp.client_secret,
    }
    assert post_token(front.client, data).status_code == 200


def test_public_client_exchanges_with_its_verifier_only(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.public_rp.client.client_id, PUBLIC_REDIRECT)
    data = {
        **code_request(code, verifier, PUBLIC_REDIRECT),
        "client_id": world.public_rp.client.client_id,
    }
    answer = post_token(front.client, data)
    assert answer.status_code == 200, answer.text
    assert answer.json()["refresh_token"]


def test_codes_live_at_most_sixty_seconds(front: Front, world: World, store: Store) -> None:
    front.get_code(world.rp.client.client_id, RP_REDIRECT)
    with store() as db:
        row = db.scalars(select(AuthorizationCode)).one()
    assert timedelta(0) < row.expires_at - row.issued_at <= timedelta(seconds=60)


# --- authorization_code: refusals ---


def test_wrong_code_verifier_is_invalid_grant(front: Front, world: World) -> None:
    code, _, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    other_verifier, _ = pkce_pair()
    answer = post_token(front.client, code_request(code, other_verifier), rp_auth(world))
    assert_oauth_error(answer, "invalid_grant")


def test_missing_code_verifier_after_a_challenge_is_invalid_request(
    front: Front, world: World
) -> None:
    code, _, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    answer = post_token(front.client, code_request(code, None), rp_auth(world))
    assert_oauth_error(answer, "invalid_request")


def test_public_client_without_verifier_is_refused(front: Front, world: World) -> None:
    code, _, _ = front.get_code(world.public_rp.client.client_id, PUBLIC_REDIRECT)
    data = {
        **code_request(code, None, PUBLIC_REDIRECT),
        "client_id": world.public_rp.client.client_id,
    }
    assert_oauth_error(post_token(front.client, data), "invalid_request")


def test_code_verifier_without_a_challenge_is_invalid_request(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    del params["code_challenge"], params["code_challenge_method"]
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    verifier, _ = pkce_pair()
    answer = post_token(front.client, code_request(code, verifier), rp_auth(world))
    assert_oauth_error(answer, "invalid_request")


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://rp.example/other", RP_REDIRECT + "/", None],
    ids=["other", "trailing-slash", "missing"],
)
def test_redirect_uri_mismatch_is_invalid_grant(
    front: Front, world: World, redirect_uri: str | None
) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    answer = post_token(front.client, code_request(code, verifier, redirect_uri), rp_auth(world))
    assert_oauth_error(answer, "invalid_grant")


def test_redirect_uri_is_not_needed_at_token_when_it_was_not_sent(
    front: Front, world: World
) -> None:
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT, scope="profile")
    del params["redirect_uri"]
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    answer = post_token(front.client, code_request(code, verifier, None), rp_auth(world))
    assert answer.status_code == 200, answer.text


def test_code_of_another_client_is_invalid_grant(front: Front, world: World, store: Store) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    other = other_confidential_client(store)
    answer = post_token(
        front.client,
        code_request(code, verifier),
        (other.client.client_id, other.client_secret),
    )
    assert_oauth_error(answer, "invalid_grant")


def test_expired_code_is_invalid_grant(front: Front, world: World, store: Store) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    with store() as db:
        db.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    answer = post_token(front.client, code_request(code, verifier), rp_auth(world))
    assert_oauth_error(answer, "invalid_grant")


def test_unknown_code_is_invalid_grant(client: TestClient, world: World) -> None:
    verifier, _ = pkce_pair()
    answer = post_token(client, code_request("no-such-code", verifier), rp_auth(world))
    assert_oauth_error(answer, "invalid_grant")


def test_missing_code_is_invalid_request(client: TestClient, world: World) -> None:
    data = {"grant_type": CODE, "redirect_uri": RP_REDIRECT}
    assert_oauth_error(post_token(client, data, rp_auth(world)), "invalid_request")


def test_replayed_code_is_refused_and_revokes_what_it_gave(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    first = post_token(front.client, code_request(code, verifier), rp_auth(world))
    assert first.status_code == 200
    tokens = first.json()
    assert (
        front.client.get(
            "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).status_code
        == 200
    )

    replay = post_token(front.client, code_request(code, verifier), rp_auth(world))
    assert_oauth_error(replay, "invalid_grant")

    userinfo = front.client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    refresh = post_token(
        front.client,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        rp_auth(world),
    )
    assert_oauth_error(refresh, "invalid_grant")
    assert introspect(front.client, world, tokens["access_token"]) == {"active": False}
    assert introspect(front.client, world, tokens["refresh_token"]) == {"active": False}


# --- client authentication ---


def test_wrong_client_secret_is_invalid_client_401(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    answer = post_token(
        front.client, code_request(code, verifier), (world.rp.client.client_id, "wrong")
    )
    assert_oauth_error(answer, "invalid_client", 401)
    assert answer.headers["www-authenticate"].startswith("Basic")


def test_wrong_client_secret_does_not_consume_the_code(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    post_token(front.client, code_request(code, verifier), (world.rp.client.client_id, "wrong"))
    assert post_token(front.client, code_request(code, verifier), rp_auth(world)).status_code == 200


def test_unknown_client_is_invalid_client(client: TestClient, world: World) -> None:
    verifier, _ = pkce_pair()
    answer = post_token(client, code_request("x", verifier), ("c_no_such_client", "secret"))
    assert_oauth_error(answer, "invalid_client", 401)


def test_public_client_with_a_secret_is_invalid_client(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.public_rp.client.client_id, PUBLIC_REDIRECT)
    data = {
        **code_request(code, verifier, PUBLIC_REDIRECT),
        "client_id": world.public_rp.client.client_id,
        "client_secret": "anything",
    }
    assert_oauth_error(post_token(front.client, data), "invalid_client", 401)


def test_confidential_client_without_authentication_is_invalid_client(
    front: Front, world: World
) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    data = {**code_request(code, verifier), "client_id": world.rp.client.client_id}
    assert_oauth_error(post_token(front.client, data), "invalid_client", 401)


# --- the endpoint itself ---


@pytest.mark.parametrize(
    "grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"]
)
def test_unsupported_grant_type(client: TestClient, world: World, grant_type: str) -> None:
    answer = post_token(client, {"grant_type": grant_type}, rp_auth(world))
    assert_oauth_error(answer, "unsupported_grant_type")


def test_get_is_not_allowed(client: TestClient) -> None:
    assert client.get("/token").status_code == 405


def test_json_body_is_an_oauth_error_not_a_crash(front: Front, world: World) -> None:
    code, verifier, _ = front.get_code(world.rp.client.client_id, RP_REDIRECT)
    answer = front.client.post(
        "/token",
        content=json.dumps(code_request(code, verifier)),
        headers={"content-type": "application/json"},
        auth=rp_auth(world),
    )
    assert answer.status_code == 400, answer.text
    # The JSON is not read as parameters: grant_type is absent.
    assert answer.json()["error"] in ("invalid_request", "unsupported_grant_type")
    assert answer.headers["cache-control"] == "no-store"


def test_oversized_body_is_413(client: TestClient, world: World) -> None:
    answer = client.post(
        "/token",
        data={"grant_type": CODE, "code": "x" * (64 * 1024 + 1)},
        auth=rp_auth(world),
    )
    assert answer.status_code == 413


def test_oversized_chunked_body_is_413(client: TestClient, world: World) -> None:
    body = b"grant_type=authorization_code&code=" + b"x" * (64 * 1024 + 1)
    answer = client.post(
        "/token",
        content=iter([body[:1000], body[1000:]]),
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=rp_auth(world),
    )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413
    assert answer.json()["error"] == "invalid_request"


def test_small_chunked_body_is_read(client: TestClient, world: World) -> None:
    body = b"grant_type=client_credentials&scope="
    answer = client.post(
        "/token",
        content=iter([body[:10], body[10:]]),
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=rp_auth(world),
    )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 200, answer.text


# --- client_credentials ---


def test_client_credentials_gives_an_access_token_for_the_client(
    client: TestClient, world: World
) -> None:
    answer = post_token(client, {"grant_type": "client_credentials"}, rp_auth(world))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert "openid" not in body.get("scope", "").split()
    claims = verify(client, body["access_token"], world.rp.client.client_id)
    assert claims["sub"] == world.rp.client.client_id
    assert claims["client_id"] == world.rp.client.client_id
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"


def test_a_secret_rotated_while_the_client_is_in_use_is_refused_at_once(
    client: TestClient, world: World, store: Store
) -> None:
    """The server reuses what it built from a client's row only while the row is unchanged."""
    grant = {"grant_type": "client_credentials"}
    assert post_token(client, grant, rp_auth(world)).status_code == 200
    rotated = in_unit(store, clients.rotate_secret, world.rp.client.client_id, keep_previous=False)
    assert_oauth_error(post_token(client, grant, rp_auth(world)), "invalid_client", 401)
    new_auth = (world.rp.client.client_id, rotated.client_secret)
    assert post_token(client, grant, new_auth).status_code == 200


def test_client_credentials_with_a_narrower_scope(client: TestClient, world: World) -> None:
    answer = post_token(
        client, {"grant_type": "client_credentials", "scope": "profile"}, rp_auth(world)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "profile"


def test_client_credentials_with_openid_is_invalid_request(
    client: TestClient, world: World
) -> None:
    answer = post_token(
        client, {"grant_type": "client_credentials", "scope": "openid profile"}, rp_auth(world)
    )
    assert_oauth_error(answer, "invalid_request")


def test_client_credentials_with_an_unknown_scope_is_invalid_scope(
    client: TestClient, world: World
) -> None:
    answer = post_token(
        client, {"grant_type": "client_credentials", "scope": "bogus"}, rp_auth(world)
    )
    assert_oauth_error(answer, "invalid_scope")


def test_client_credentials_for_a_public_client_is_refused(
    client: TestClient, world: World
) -> None:
    answer = post_token(
        client,
        {"grant_type": "client_credentials", "client_id": world.public_rp.client.client_id},
    )
    assert_oauth_error(answer, "invalid_client", 401)


def test_client_credentials_token_is_no_good_at_userinfo(client: TestClient, world: World) -> None:
    token = post_token(client, {"grant_type": "client_credentials"}, rp_auth(world)).json()
    answer = client.get("/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "insufficient_scope"


def test_a_form_with_too_many_fields_is_refused(client: TestClient, world: World) -> None:
    """The urlencoded body is split by our own reader: it keeps the form parser's limits."""
    auth = (world.rp.client.client_id, world.rp.client_secret or "")
    fields = {"grant_type": "client_credentials", **{f"x{i}": "1" for i in range(60)}}
    answer = client.post("/token", data=fields, auth=auth)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "Too many fields" in answer.json()["error_description"]


# --- request shapes (issue #15) ----------------------------------------------------------------


def test_a_json_body_is_invalid_request(client: TestClient, world: World) -> None:
    """RFC 6749 3.2: the token endpoint takes application/x-www-form-urlencoded only."""
    answer = client.post(
        "/token",
        json={"grant_type": "client_credentials"},
        auth=(world.rp.client.client_id, world.rp.client_secret),
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"


def test_basic_credentials_and_another_form_client_id_are_refused(
    client: TestClient, world: World
) -> None:
    answer = client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": world.public_rp.client.client_id},
        auth=(world.rp.client.client_id, world.rp.client_secret),
    )
    assert answer.status_code in (400, 401), answer.text
    assert answer.json()["error"] in ("invalid_request", "invalid_client")
    same = client.post(
        "/token",
        data={"grant_type": "client_credentials", "client_id": world.rp.client.client_id},
        auth=(world.rp.client.client_id, world.rp.client_secret),
    )
    assert same.status_code == 200, same.text
