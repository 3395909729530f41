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
from support.units import in_unit
from support.world import World

from iam.clock import utcnow
from iam.db.models import AuthorizationCode, OtpChallenge, SsoSession
from iam.db.store import Store
from iam.services import users

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
        ({"scope": "profile bogus"}, "invalid_scope"),  # (OpenID requests ignore it)
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
    assert_error_page(answer)  # (the conformance suite's ensure-redirect-uri-in-...-request)
    assert "redirect_uri is required" in answer.text


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
        # not this browser's request: a signed-in browser goes home, not on to the request
        assert login_page.status_code == 303 and login_page.headers["location"] == "/"


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


# --- OIDC Core and RFC 9207 details (issue #15) ---------------------------------------------------


def test_post_authorize_works_as_get(front: Front, world: World) -> None:
    """OIDC Core 3.1.2.1: an OP MUST support POST; the form body is the request."""
    signed_in(front)
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.client.post("/authorize", data=params)
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query["state"] == params["state"] and query["iss"] == ISSUER
    tokens = exchange(front, world, query["code"], verifier)
    claims = id_token_claims(front.client, tokens["id_token"], world.rp.client.client_id)
    assert claims["nonce"] == params["nonce"]


def test_post_authorize_waits_for_the_login_and_resumes(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    flow = assert_login_page(front.client.post("/authorize", data=params))
    assert front.login(flow=flow).status_code == 303
    answer = front.client.get(f"/flow/{flow}")
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query["code"] and query["state"] == params["state"]


def test_post_authorize_with_a_bad_request_is_refused_like_get(front: Front, world: World) -> None:
    params, _ = front.code_params("c_no_such_client", RP_REDIRECT)
    assert_error_page(front.client.post("/authorize", data=params))


def test_every_authorization_response_carries_iss_and_is_not_cached(
    front: Front, world: World
) -> None:
    """RFC 9207: `iss` on success and on every redirected error; no-store on both."""
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="none")
    refused = front.authorize(**params)
    assert redirected_error(refused)["iss"] == ISSUER
    signed_in(front)
    issued = front.authorize(**params)
    assert issued.status_code == 302
    assert query_of(issued.headers["location"])["iss"] == ISSUER
    for answer in (refused, issued):
        assert answer.headers["cache-control"] == "no-store"
    bad, _ = front.code_params(
        world.rp.client.client_id, RP_REDIRECT, code_challenge_method="plain"
    )
    assert redirected_error(front.authorize(**bad))["iss"] == ISSUER
    discovery = front.client.get("/.well-known/openid-configuration").json()
    assert discovery["authorization_response_iss_parameter_supported"] is True


@pytest.mark.parametrize("mode", ["fragment", "form_post", "query.jwt", ""])
def test_a_response_mode_we_do_not_answer_in_is_an_error_page(
    front: Front, world: World, mode: str
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, response_mode=mode)
    assert_error_page(front.authorize(**params))


def test_response_mode_query_is_honoured(front: Front, world: World) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, response_mode="query")
    answer = front.authorize(**params)
    assert answer.status_code == 302 and query_of(answer.headers["location"])["code"]


def test_a_nonce_is_taken_only_while_a_live_code_of_that_person_carries_it(
    front: Front, world: World, store: Store, app, sms
) -> None:
    """OIDC Core 3.1.2.1 replay protection, scoped: an unredeemed code that expired frees its
    nonce; another person's code never takes it."""
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, nonce="n-fixed")
    assert front.authorize(**params).status_code == 302  # a code, left unredeemed
    again = front.authorize(**params)
    assert redirected_error(again)["error"] == "invalid_request"  # a live code holds it
    in_unit(store, users.create_user, "李四", "+8613900000001")
    other = Front(TestClient(app, base_url=ISSUER, follow_redirects=False), sms)
    assert other.login(phone="+8613900000001").status_code == 303
    other_params, _ = other.code_params(world.rp.client.client_id, RP_REDIRECT, nonce="n-fixed")
    assert query_of(other.authorize(**other_params).headers["location"])["code"]
    with store() as db:
        db.execute(update(AuthorizationCode).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    freed = front.authorize(**params)
    assert freed.status_code == 302 and query_of(freed.headers["location"])["code"]


def test_unknown_scopes_of_an_openid_request_are_ignored_and_the_grant_says_so(
    front: Front, world: World
) -> None:
    """OIDC Core 5.4: generic apps ask for `address` or `groups`; what we do not know (or the
    app was not given, like `iam:admin`) is left out, and the token response names the rest."""
    signed_in(front)
    params, verifier = front.code_params(
        world.rp.client.client_id, RP_REDIRECT, scope="openid profile address groups iam:admin"
    )
    answer = front.authorize(**params)
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert "error" not in query
    tokens = exchange(front, world, query["code"], verifier)
    assert tokens["scope"] == "openid profile"
    assert (
        "iam:admin"
        not in jwt.decode(tokens["access_token"], options={"verify_signature": False})["scope"]
    )


def test_an_unknown_scope_of_a_plain_oauth_request_is_still_invalid_scope(
    front: Front, world: World
) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, scope="profile groups")
    assert redirected_error(front.authorize(**params))["error"] == "invalid_scope"


def _id_token_of(front: Front, world: World) -> str:
    """A code flow in this (signed-in) browser: its ID token."""
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    code = query_of(front.authorize(**params).headers["location"])["code"]
    return str(exchange(front, world, code, verifier)["id_token"])


def test_an_id_token_hint_of_another_person_is_honoured(
    front: Front, world: World, store: Store, app, sms
) -> None:
    """OIDC Core 3.1.2.1: prompt=none with a hint naming someone else is login_required;
    without prompt=none the person is asked to sign in; the same person's hint is silent."""
    signed_in(front)
    theirs = _id_token_of(front, world)
    in_unit(store, users.create_user, "李四", "+8613900000002")
    other = Front(TestClient(app, base_url=ISSUER, follow_redirects=False), sms)
    assert other.login(phone="+8613900000002").status_code == 303
    mine = _id_token_of(other, world)

    silent, _ = other.code_params(
        world.rp.client.client_id, RP_REDIRECT, prompt="none", id_token_hint=theirs
    )
    assert redirected_error(other.authorize(**silent))["error"] == "login_required"
    asking, _ = other.code_params(world.rp.client.client_id, RP_REDIRECT, id_token_hint=theirs)
    assert_login_page(other.authorize(**asking))
    same, _ = other.code_params(
        world.rp.client.client_id, RP_REDIRECT, prompt="none", id_token_hint=mine
    )
    assert query_of(other.authorize(**same).headers["location"])["code"]


@pytest.mark.parametrize("hint", ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_an_id_token_hint_we_did_not_issue_is_invalid_request(
    front: Front, world: World, hint: str
) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, id_token_hint=hint)
    assert redirected_error(front.authorize(**params))["error"] == "invalid_request"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_nonce_too_long_to_keep_is_refused_not_cut(front: Front, world: World, method) -> None:
    signed_in(front)
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, nonce="n" * 501)
    answer = front.client.request(
        method, "/authorize", **({"params": params} if method == "GET" else {"data": params})
    )
    assert redirected_error(answer)["error"] == "invalid_request"


def test_a_posted_request_larger_than_a_query_may_be_is_refused(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, login_hint="a" * 9000)
    answer = front.client.post("/authorize", data=params)
    assert answer.status_code == 413 and "location" not in answer.headers
