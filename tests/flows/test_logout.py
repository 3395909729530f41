"""RP-initiated logout: confirmation without a hint, redirect only to registered URIs, never on
an invalid request; the session and its tokens end."""

from __future__ import annotations

import re

from conftest import RP_LOGOUT, Front, World, query_of

from iam.web import SESSION_COOKIE


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
