"""/authorize: what is shown at the server, what goes back to the client, and when to log in."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import PHONE, PUBLIC_REDIRECT, RP_REDIRECT
from support.protocol import query_of
from support.world import World

from iam.clock import utcnow
from iam.db.models import OtpChallenge, SsoSession
from iam.db.store import Store

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ISSUER = "https://testserver"


# --- helpers ---
def assert_error_page(response) -> None:
    """An error shown at the server: HTML, 400, and never a redirect."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers


def redirected_error(response, redirect_uri: str = RP_REDIRECT) -> dict[str, str]:
    """The query of an error sent back to the client's registered redirect URI."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = query_of(location)
    assert "code" not in query
    return query


def assert_login_page(response) -> str:
    """A 303 to the login page for a saved request; its flow id."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/login?flow="), location
    return query_of(location)["flow"]


def age_session(store: Store, seconds: int) -> None:
    """Pretend the browser signed in `seconds` ago."""
    with store() as db:
        db.execute(update(SsoSession).values(auth_time=utcnow() - timedelta(seconds=seconds)))
        db.commit()


def allow_another_sms(store: Store) -> None:
    """Move earlier SMS codes out of the 60 s resend window, so the person can log in again."""
    with store() as db:
        db.execute(update(OtpChallenge).values(created_at=utcnow() - timedelta(minutes=2)))
        db.commit()


def signed_in(front: Front) -> None:
    response = front.login()
    assert response.status_code == 303, response.text


def id_token_claims(client: TestClient, id_token: str, audience: str) -> dict:
    jwks = jwt.PyJWKSet.from_dict(client.get("/jwks.json").json())
    key = jwks[jwt.get_unverified_header(id_token)["kid"]]
    return jwt.decode(id_token, key, algorithms=["RS256"], audience=audience, issuer=ISSUER)


def exchange(front: Front, world: World, code: str, verifier: str | None) -> dict:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": RP_REDIRECT}
    if verifier is not None:
        data["code_verifier"] = verifier
    answer = front.client.post(
        "/token", data=data, auth=(world.rp.client.client_id, world.rp.client_secret)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- errors shown at the server, never redirected ---


def test_unknown_client_is_an_error_page(front: Front, world: World) -> None:
    params, _ = front.code_params("c_no_such_client", RP_REDIRECT)
    assert_error_page(front.authorize(**params))


def test_missing_client_id_is_an_error_page(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    del params["client_id"]
    assert_error_page(front.authorize(**params))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/cb",
        RP_REDIRECT + "/",
        RP_REDIRECT + "?next=1",
        "https://RP.example/cb",
        "https://rp.example/CB",
        "http://rp.example/cb",
        "https://rp.example:8443/cb",
    ],
    ids=[
        "other-host",
        "trailing-slash",
        "extra-query",
        "host-case",
        "path-case",
        "http",
        "other-port",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page(
    front: Front, world: World, redirect_uri: str
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, redirect_uri)
    assert_error_page(front.authorize(**params))


def test_unregistered_redirect_uri_wins_over_other_errors(front: Front, world: World) -> None:
    """Even a request that is wrong in other ways is never sent to an unproven URI."""
    params, _ = front.code_params(
        world.rp.client.client_id,
        "https://evil.example/cb",
        response_type="token",
        prompt="none",
    )
    assert_error_page(front.authorize(**params))


@pytest.mark.parametrize("evil_first", [True, False], ids=["evil-first", "evil-second"])
def test_repeated_redirect_uri_is_an_error_page(
    front: Front, world: World, evil_first: bool
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    evil = [("redirect_uri", "https://evil.example/cb")]
    items = evil + list(params.items()) if evil_first else list(params.items()) + evil
    assert_error_page(front.client.get("/authorize", params=items))


def test_error_page_even_with_a_session(front: Front, world: World) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, "https://evil.example/cb")
    assert_error_page(front.authorize(**params))


# --- errors sent back to a proven redirect URI ---


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "openid bogus"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"code_challenge": "!" * 43}, "invalid_request"),
        ({"code_challenge": "", "code_challenge_method": "S256"}, "invalid_request"),
        ({"max_age": "abc"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
    ],
    ids=[
        "token",
        "hybrid",
        "unknown-scope",
        "plain-pkce",
        "challenge-without-method",
        "short-challenge",
        "bad-chars-challenge",
        "method-without-challenge",
        "max-age-abc",
        "max-age-negative",
        "prompt-none-and-login",
    ],
)
def test_bad_request_goes_back_to_the_client(
    front: Front, world: World, extra: dict[str, str], error: str
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, **extra)
    if extra.get("code_challenge_method") == "":
        del params["code_challenge_method"]
    if extra.get("code_challenge") == "":
        del params["code_challenge"]
    query = redirected_error(front.authorize(**params))
    assert query["error"] == error
    assert query["state"] == params["state"]


def test_public_client_without_pkce_is_refused(front: Front, world: World) -> None:
    params, _ = front.code_params(world.public_rp.client.client_id, PUBLIC_REDIRECT)
    del params["code_challenge"], params["code_challenge_method"]
    query = redirected_error(front.authorize(**params), PUBLIC_REDIRECT)
    assert query["error"] == "invalid_request"
    assert query["state"] == params["state"]


def test_prompt_none_without_a_session_is_login_required(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="none")
    query = redirected_error(front.authorize(**params))
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]


def test_prompt_none_with_a_too_old_session_is_login_required(
    front: Front, world: World, store: Store
) -> None:
    signed_in(front)
    age_session(store, 120)
    params, _ = front.code_params(
        world.rp.client.client_id, RP_REDIRECT, prompt="none", max_age="60"
    )
    assert redirected_error(front.authorize(**params))["error"] == "login_required"


# --- when a code is issued, and when the person must log in (again) ---


def test_without_a_session_the_login_page_comes_first(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    assert_login_page(front.authorize(**params))


def test_prompt_none_with_a_session_issues_a_code_at_once(front: Front, world: World) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="none")
    answer = front.authorize(**params)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"].startswith(RP_REDIRECT + "?")
    query = query_of(answer.headers["location"])
    assert query["code"]
    assert query["state"] == params["state"]
    assert "error" not in query


def test_a_session_gives_a_code_without_a_page(front: Front, world: World) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.authorize(**params)
    assert answer.status_code == 302
    assert query_of(answer.headers["location"])["code"]


def test_prompt_login_with_a_session_asks_to_log_in_again(front: Front, world: World) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="login")
    assert_login_page(front.authorize(**params))


def test_prompt_login_is_satisfied_by_the_new_login(
    front: Front, world: World, store: Store
) -> None:
    signed_in(front)
    allow_another_sms(store)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="login")
    answer = front.follow_to_client(front.authorize(**params))
    assert query_of(answer.headers["location"])["code"]


def test_max_age_zero_after_an_earlier_login_asks_to_log_in_again(
    front: Front, world: World, store: Store
) -> None:
    signed_in(front)
    age_session(store, 30)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, max_age="0")
    assert_login_page(front.authorize(**params))


def test_max_age_exceeded_then_logged_in_again_gives_a_fresh_auth_time(
    front: Front, world: World, store: Store
) -> None:
    signed_in(front)
    age_session(store, 600)
    allow_another_sms(store)
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT, max_age="60")
    response = front.authorize(**params)
    assert_login_page(response)
    answer = front.follow_to_client(response)
    tokens = exchange(front, world, query_of(answer.headers["location"])["code"], verifier)
    claims = id_token_claims(front.client, tokens["id_token"], world.rp.client.client_id)
    assert claims["iat"] - claims["auth_time"] <= 60


def test_max_age_not_exceeded_issues_a_code(front: Front, world: World, store: Store) -> None:
    signed_in(front)
    age_session(store, 30)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, max_age="3600")
    answer = front.authorize(**params)
    assert answer.status_code == 302, answer.text
    assert query_of(answer.headers["location"])["code"]


def test_confidential_client_may_skip_pkce(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    del params["code_challenge"], params["code_challenge_method"]
    answer = front.follow_to_client(front.authorize(**params))
    query = query_of(answer.headers["location"])
    assert query["state"] == params["state"]
    tokens = exchange(front, world, query["code"], None)
    assert tokens["access_token"]


def test_public_client_with_pkce_gets_a_code(front: Front, world: World) -> None:
    code, _, params = front.get_code(world.public_rp.client.client_id, PUBLIC_REDIRECT)
    assert code
    assert params["code_challenge_method"] == "S256"


def test_openid_request_without_redirect_uri_gives_no_code(front: Front, world: World) -> None:
    """OIDC Core 3.1.2.1: redirect_uri is required in an OpenID request."""
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    del params["redirect_uri"]
    signed_in(front)
    answer = front.authorize(**params)
    if answer.status_code == 302:
        assert redirected_error(answer)["error"] == "invalid_request"
    else:
        assert_error_page(answer)


def test_plain_oauth_request_may_omit_the_only_redirect_uri(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, scope="profile")
    del params["redirect_uri"]
    answer = front.follow_to_client(front.authorize(**params))
    assert answer.headers["location"].startswith(RP_REDIRECT + "?")
    assert query_of(answer.headers["location"])["code"]


# --- the pending request belongs to the browser that started it ---


def test_flow_from_another_browser_is_an_error_page(app, front: Front, world: World, sms) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    flow = assert_login_page(front.authorize(**params))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as other:
        other_front = Front(other, sms)
        signed_in(other_front)  # even a signed-in browser may not take over the request
        answer = other.get(f"/flow/{flow}")
        assert_error_page(answer)
        assert "code=" not in answer.text
        login_page = other.get("/login", params={"flow": flow})
        assert login_page.status_code == 400
        assert "location" not in login_page.headers


def test_flow_still_works_for_its_own_browser(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    flow = assert_login_page(front.authorize(**params))
    after_login = front.login(PHONE, flow)
    assert after_login.headers["location"] == f"/flow/{flow}"
    answer = front.client.get(after_login.headers["location"])
    assert answer.status_code == 302
    assert query_of(answer.headers["location"])["state"] == params["state"]


def test_a_finished_flow_cannot_be_resumed(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    flow = assert_login_page(front.authorize(**params))
    after_login = front.login(PHONE, flow)
    assert front.client.get(after_login.headers["location"]).status_code == 302
    assert_error_page(front.client.get(f"/flow/{flow}"))
