"""RP-initiated logout: confirmation without a hint, redirect only to registered URIs, never on
an invalid request; the session and its tokens end."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, PUBLIC_REDIRECT, RP_LOGOUT, RP_REDIRECT
from support.protocol import query_of
from support.units import in_unit
from support.world import World

from iam.db.store import Store
from iam.oidc import grants
from iam.services import clients, users
from iam.web import SESSION_COOKIE

OTHER_PHONE = "+8613900139000"


def signed_in(front: Front) -> bool:
    return "Zhang San" in front.client.get("/").text


def introspect(front: Front, world: World, token: str) -> dict:
    answer = front.client.post(
        "/introspect",
        data={"token": token},
        auth=(world.rp.client.client_id, world.rp.client_secret),
    )
    return answer.json()


def test_logout_without_a_hint_asks_first_and_then_ends_everything(
    front: Front, world: World
) -> None:
    tokens = front.tokens(world)
    page = front.client.get("/logout")
    assert page.status_code == 200
    assert 'action="/logout"' in page.text
    assert signed_in(front), "a GET without a hint must not log out by itself"

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = front.client.post("/logout", data={"csrf_token": csrf})
    assert done.status_code == 200
    assert "signed out" in done.text.lower()
    assert (
        f'{SESSION_COOKIE}=""' in done.headers["set-cookie"]
        or "Max-Age=0" in done.headers["set-cookie"]
    )
    assert not signed_in(front)
    assert introspect(front, world, tokens["refresh_token"]) == {"active": False}
    assert introspect(front, world, tokens["access_token"]) == {"active": False}


def test_logout_post_without_csrf_is_refused(front: Front, world: World) -> None:
    front.tokens(world)
    assert front.client.post("/logout", data={}).status_code == 403
    assert signed_in(front)


def test_logout_with_a_valid_hint_redirects_to_the_registered_uri(
    front: Front, world: World
) -> None:
    tokens = front.tokens(world)
    answer = front.client.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": RP_LOGOUT,
            "state": "bye",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(RP_LOGOUT)
    assert query_of(answer.headers["location"]) == {"state": "bye"}
    assert not signed_in(front)


def test_an_unregistered_post_logout_uri_is_not_followed(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.get(
        "/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
    )
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert not signed_in(front)


def test_a_forged_hint_is_an_error_page_and_changes_nothing(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    forged = tokens["id_token"][:-4] + "AAAA"
    answer = front.client.get(
        "/logout", params={"id_token_hint": forged, "post_logout_redirect_uri": RP_LOGOUT}
    )
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert signed_in(front)


def test_a_hint_for_another_client_is_refused(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "client_id": world.public_rp.client.client_id},
    )
    assert answer.status_code == 400
    assert signed_in(front)


def test_logout_without_a_session_still_answers(front: Front, world: World) -> None:
    page = front.client.get("/logout")
    assert page.status_code == 200


# --- id_token_hint: only our ID tokens, and no logout without a question unless it is ours ---


def active(front: Front, world: World, token: str) -> bool:
    return introspect(front, world, token).get("active") is True


def sign_with_our_key(front: Front, claims: dict, header: dict | None = None) -> str:
    """A JWT signed with the key the server signs with now (as if the server had made it)."""
    keys = front.client.app.state.oidc.keys
    return jwt.encode({"alg": keys.algorithm, **(header or {})}, claims, keys.current().signing)


def id_token_claims(world: World, **changes: object) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": world.user.id,
        "aud": world.rp.client.client_id,
        "iat": now,
        "exp": now + 600,
        "auth_time": now,
    }
    return {**claims, **changes}


def assert_still_signed_in(front: Front, world: World, tokens: dict) -> None:
    assert signed_in(front)
    assert active(front, world, tokens["access_token"])
    assert active(front, world, tokens["refresh_token"])


def assert_error_page(answer) -> None:
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert 'action="/logout"' not in answer.text


def test_an_access_token_is_no_hint(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.get(
        "/logout",
        params={"id_token_hint": tokens["access_token"], "post_logout_redirect_uri": RP_LOGOUT},
    )
    assert_error_page(answer)
    assert_still_signed_in(front, world, tokens)


def test_a_client_credentials_token_is_no_hint(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    machine = front.client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=(world.rp.client.client_id, world.rp.client_secret),
    )
    assert machine.status_code == 200, machine.text
    for params in (
        {"id_token_hint": machine.json()["access_token"]},
        {
            "id_token_hint": machine.json()["access_token"],
            "client_id": world.rp.client.client_id,
            "post_logout_redirect_uri": RP_LOGOUT,
        },
    ):
        assert_error_page(front.client.get("/logout", params=params))
    assert_still_signed_in(front, world, tokens)


def test_a_jwt_of_ours_without_the_id_token_shape_is_no_hint(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    now = int(time.time())
    not_id_tokens = [
        sign_with_our_key(front, id_token_claims(world), {"typ": "at+jwt"}),
        sign_with_our_key(front, id_token_claims(world, scope="openid", client_id="x")),
        sign_with_our_key(front, {"iss": ISSUER, "sub": world.user.id, "iat": now}),  # no aud
        sign_with_our_key(front, {**id_token_claims(world), "sub": 7}),
    ]
    for hint in not_id_tokens:
        assert_error_page(front.client.get("/logout", params={"id_token_hint": hint}))
    assert_still_signed_in(front, world, tokens)


def test_an_id_token_of_another_issuer_is_an_error(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    claims = id_token_claims(world)
    kid = front.client.app.state.oidc.keys.current().signing.keys[0].kid
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    other_key = jwt.encode({"alg": "RS256"}, {**claims, "iss": "https://other.example"}, stranger)
    our_key_other_iss = sign_with_our_key(front, {**claims, "iss": "https://other.example"})
    for hint in (other_key, our_key_other_iss):
        answer = front.client.get(
            "/logout", params={"id_token_hint": hint, "post_logout_redirect_uri": RP_LOGOUT}
        )
        assert_error_page(answer)
    assert_still_signed_in(front, world, tokens)


def test_another_persons_id_token_asks_first(front: Front, world: World, store: Store) -> None:
    tokens = front.tokens(world)
    in_unit(store, users.create_user, "李四 Li Si", OTHER_PHONE)
    with TestClient(front.client.app, base_url=ISSUER, follow_redirects=False) as browser:
        stranger = Front(browser, front.sms)
        params, verifier = stranger.code_params(world.rp.client.client_id, RP_REDIRECT)
        answer = stranger.follow_to_client(stranger.authorize(**params), OTHER_PHONE)
        code = query_of(answer.headers["location"])["code"]
        theirs = stranger.exchange(code, verifier, RP_REDIRECT, world.rp).json()
    answer = front.client.get(
        "/logout",
        params={"id_token_hint": theirs["id_token"], "post_logout_redirect_uri": RP_LOGOUT},
    )
    assert answer.status_code == 200, answer.text
    assert 'action="/logout"' in answer.text and "location" not in answer.headers
    assert_still_signed_in(front, world, tokens)


def test_an_id_token_of_another_session_of_the_same_person_asks_first(
    front: Front, world: World
) -> None:
    tokens = front.tokens(world)
    ours = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert ours["sid"]
    elsewhere = sign_with_our_key(front, id_token_claims(world, sid="an-earlier-session"))
    answer = front.client.get("/logout", params={"id_token_hint": elsewhere})
    assert answer.status_code == 200
    assert 'action="/logout"' in answer.text
    assert_still_signed_in(front, world, tokens)


def test_an_expired_id_token_of_this_session_logs_out(
    front: Front, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, verifier = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    two_hours_ago = grants.utcnow() - timedelta(hours=2)  # the ID token was made then
    monkeypatch.setattr(grants, "utcnow", lambda: two_hours_ago)
    exchanged = front.exchange(code, verifier, RP_REDIRECT, world.rp)
    monkeypatch.undo()
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    id_token = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert id_token["exp"] < time.time()

    answer = front.client.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": RP_LOGOUT},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == RP_LOGOUT
    assert not signed_in(front)
    assert not active(front, world, tokens["refresh_token"])


def test_a_hint_of_this_session_logs_out_without_a_question(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    answer = front.client.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "client_id": world.rp.client.client_id},
    )
    assert answer.status_code == 200
    assert "signed out" in answer.text.lower() and 'action="/logout"' not in answer.text
    assert not signed_in(front)
    assert not active(front, world, tokens["access_token"])
    assert not active(front, world, tokens["refresh_token"])


def test_a_valid_hint_without_a_session_goes_back_to_the_app(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    front.client.cookies.clear()
    answer = front.client.get(
        "/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": RP_LOGOUT},
    )
    assert (answer.status_code, answer.headers.get("location")) == (303, RP_LOGOUT)


def test_confirming_a_logout_asked_for_with_another_hint(front: Front, world: World) -> None:
    tokens = front.tokens(world)
    hint = sign_with_our_key(front, id_token_claims(world, sub="somebody-else"))
    page = front.client.get(
        "/logout", params={"id_token_hint": hint, "post_logout_redirect_uri": RP_LOGOUT}
    )
    assert page.status_code == 200 and signed_in(front)
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    assert form["id_token_hint"] == hint
    done = front.client.post("/logout", data=form)
    assert (done.status_code, done.headers.get("location")) == (303, RP_LOGOUT)
    assert not signed_in(front)
    assert not active(front, world, tokens["refresh_token"])


# --- the home page (issue #16 §1, §7) -----------------------------------------------------------


def apps_on_home(front: Front) -> list[tuple[str, str]]:
    """(link, name) of each app the home page offers, in its order."""
    page = front.client.get("/")
    assert page.status_code == 200
    return [
        (href.replace("&amp;", "&"), name)
        for href, name in re.findall(
            r'<li><a class="button" href="([^"]+)">([^<]+)</a></li>', page.text
        )
    ]


def test_the_home_page_offers_the_apps_this_session_signed_into(
    front: Front, world: World, store: Store
) -> None:
    in_unit(
        store,
        clients.update_client,
        world.rp.client.client_id,
        actor="test",
        initiate_login_uri="https://rp.example/start",
    )
    front.tokens(world)  # CRM: tokens
    front.get_code(world.public_rp.client.client_id, PUBLIC_REDIRECT)  # a code, not yet used
    assert apps_on_home(front) == [
        ("https://rp.example/start?iss=https%3A%2F%2Ftestserver", "CRM"),
        ("http://127.0.0.1:8765/", "Mobile app"),
    ]
    home = front.client.get("/", params={"lang": "zh-CN"}).text
    assert "继续前往您已登录的应用" in home and "Continue to" not in home


def test_the_home_page_offers_nothing_without_apps_or_signed_out(
    front: Front, world: World
) -> None:
    assert "apps-title" not in front.client.get("/").text  # signed out
    front.login()  # signed in here, not through an app
    page = front.client.get("/")
    assert "Zhang San" in page.text and "apps-title" not in page.text


def test_the_home_page_offers_only_this_sessions_apps(
    front: Front, world: World, client: TestClient
) -> None:
    front.tokens(world)
    with TestClient(client.app, base_url=ISSUER, follow_redirects=False) as other_browser:
        other = Front(other_browser, front.sms)
        other.login()  # the same person, another session
        assert apps_on_home(other) == []
    assert apps_on_home(front) == [("https://rp.example/", "CRM")]


def test_the_favicon_is_an_icon_browsers_may_keep(client: TestClient) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/x-icon"
    assert answer.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert "public" in answer.headers["cache-control"]
    assert "set-cookie" not in answer.headers
