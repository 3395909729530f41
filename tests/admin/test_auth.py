"""Admin sign-in, lock-out, the address guard, and who may call the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import jwt
import pytest
from joserfc import jwt as joserfc_jwt
from sqlalchemy import select, update
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.browser import Front
from support.constants import ADMIN_PASSWORD, ADMIN_USER, ISSUER, RP_REDIRECT
from support.protocol import query_of
from support.units import in_unit
from support.world import World

from iam.db.models import AccessToken, RefreshToken, SigningKey
from iam.db.store import Store
from iam.services import admins, clients
from iam.services.clients import RegisteredClient

pytestmark = pytest.mark.usefixtures("reused_signing_key")


def _login(console, username: str, password: str):
    page = console.get("/admin/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    data = {"csrf_token": csrf, "username": username, "password": password}
    return console.post("/admin/login", data=data)


def test_console_needs_a_sign_in(app) -> None:
    with admin_console(app) as console:
        answer = console.get("/admin/")
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login")


def test_sign_in_sets_a_strict_admin_cookie(app, store: Store) -> None:
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        answer = _login(console, ADMIN_USER, ADMIN_PASSWORD)
        cookie = answer.headers["set-cookie"]
        assert answer.status_code == 303
        assert "iam_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/admin" in cookie and "Secure" in cookie
        assert console.get("/admin/").status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(app, store: Store) -> None:
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        wrong = _login(console, ADMIN_USER, "not the password")
        unknown = _login(console, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        "Wrong username or password." in wrong.text
        and "Wrong username or password." in unknown.text
    )


def test_five_failures_lock_the_account(app, store: Store) -> None:
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        for _ in range(admins.MAX_FAILED_LOGINS):
            assert _login(console, ADMIN_USER, "wrong").status_code == 401
        locked = _login(console, ADMIN_USER, ADMIN_PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "iam_admin=" not in locked.headers.get("set-cookie", "")


def test_sign_in_without_csrf_is_refused(app, store: Store) -> None:
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        answer = console.post(
            "/admin/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
    assert answer.status_code == 403
    assert "iam_admin=" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "path",
    ["/admin", "/admin/", "/admin/login", "/admin/api/openapi.json", "/admin/x%0Ay", "/admin/nope"],
)
def test_an_address_outside_the_allowed_networks_gets_403_and_no_page(app, path: str) -> None:
    with admin_console(app, "203.0.113.9") as console:
        answer = console.get(path)
    assert (answer.status_code, answer.text) == (403, "")


def test_sign_out_ends_the_admin_session(admin_world: AdminWorld) -> None:
    csrf = admin_world.csrf()
    answer = admin_world.console.post("/admin/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert admin_world.console.get("/admin/").status_code == 303


def test_the_api_description_needs_no_sign_in(app) -> None:
    with admin_console(app) as console:
        answer = console.get("/admin/api/openapi.json")
    assert answer.status_code == 200  # public, but behind the address guard
    assert answer.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_token_of_a_non_admin_client_cannot_get_iam_admin(app, store: Store) -> None:
    plain = in_unit(store, clients.create_client, "Plain", [RP_REDIRECT])
    with admin_console(app) as console:
        answer = console.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "iam:admin"},
            auth=(plain.client.client_id, plain.client_secret or ""),
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"


# --- iam:admin only through client_credentials: an admin app's end-user tokens are not admin ---


def _admin_app(store: Store) -> RegisteredClient:
    return in_unit(store, clients.create_client, "Admin app", [RP_REDIRECT], admin=True)


def _code_flow(front: Front, app_: RegisteredClient, scope: str | None) -> dict:
    params, verifier = front.code_params(app_.client.client_id, RP_REDIRECT)
    if scope is None:
        del params["scope"]
    else:
        params["scope"] = scope
    answer = front.follow_to_client(front.authorize(**params))
    code = query_of(answer.headers["location"])["code"]
    exchanged = front.exchange(code, verifier, RP_REDIRECT, app_)
    assert exchanged.status_code == 200, exchanged.text
    return exchanged.json()


def _scopes(token: dict) -> set[str]:
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["scope"] == token["scope"]
    return set(token["scope"].split())


def _is_admin_token(app, access_token: str) -> bool:
    with admin_console(app) as script:
        answer = script.get("/admin/api/apps", headers={"authorization": f"Bearer {access_token}"})
    assert answer.status_code in (200, 401, 403), answer.text
    return answer.status_code == 200


@pytest.mark.parametrize("scope", [None, "openid iam:admin", "openid profile iam:admin"])
def test_an_admin_apps_code_flow_never_grants_iam_admin(
    app, store: Store, front: Front, world: World, scope: str | None
) -> None:
    tokens = _code_flow(front, _admin_app(store), scope)
    assert "iam:admin" not in _scopes(tokens)
    assert "openid" in _scopes(tokens) and "id_token" in tokens
    assert not _is_admin_token(app, tokens["access_token"])


def test_asking_for_iam_admin_alone_in_the_code_flow_is_invalid_scope(
    store: Store, front: Front, world: World
) -> None:
    admin_app = _admin_app(store)
    params, _ = front.code_params(admin_app.client.client_id, RP_REDIRECT, scope="iam:admin")
    answer = front.follow_to_client(front.authorize(**params))
    assert query_of(answer.headers["location"])["error"] == "invalid_scope"


def test_a_refresh_never_grants_iam_admin(app, store: Store, front: Front, world: World) -> None:
    admin_app = _admin_app(store)
    auth = (admin_app.client.client_id, admin_app.client_secret or "")
    tokens = _code_flow(front, admin_app, None)
    asked = front.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid iam:admin",
        },
        auth=auth,
    )
    assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"

    # A refresh token from before this rule, whose grant holds iam:admin: refreshed without it.
    with store() as db:
        db.execute(update(RefreshToken).values(scope=f"{tokens['scope']} iam:admin"))
        db.commit()
    for scope in (None, "openid iam:admin"):
        data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        if scope:
            data["scope"] = scope
        refreshed = front.client.post("/token", data=data, auth=auth)
        assert refreshed.status_code == 200, refreshed.text
        tokens = refreshed.json()
        assert "iam:admin" not in _scopes(tokens)
        assert not _is_admin_token(app, tokens["access_token"])


def test_a_user_token_that_holds_iam_admin_is_refused_by_the_api(
    app, store: Store, front: Front, world: World
) -> None:
    """Even a token minted before this rule, with iam:admin in its scope: the API takes only
    tokens without a user (`client_credentials`)."""
    admin_app = _admin_app(store)
    tokens = _code_flow(front, admin_app, None)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    keys = app.state.oidc.keys
    forged = joserfc_jwt.encode(
        {"alg": keys.algorithm, "typ": "at+jwt"},
        {**claims, "scope": f"{claims['scope']} iam:admin"},
        keys.current().signing,
    )
    with store() as db:
        db.execute(update(AccessToken).values(scope=f"{claims['scope']} iam:admin"))
        db.commit()
    assert not _is_admin_token(app, forged)


def test_client_credentials_with_iam_admin_still_works(app, store: Store) -> None:
    admin_app = _admin_app(store)
    with admin_console(app) as script:
        answer = script.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "iam:admin"},
            auth=(admin_app.client.client_id, admin_app.client_secret or ""),
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "iam:admin"
    assert _is_admin_token(app, answer.json()["access_token"])


# --- the console cookie calls the API only from the console's own origin (CSRF) ---


@contextmanager
def _the_admins_browser(admin_world: AdminWorld) -> Iterator[TestClient]:
    """The signed-in admin's browser (its cookies), sending only the headers a test names: a
    page of another site, a page of the console, or a script."""
    with admin_console(admin_world.console.app) as browser:
        for cookie in admin_world.console.cookies.jar:
            browser.cookies.jar.set_cookie(cookie)
        yield browser


def _kids(store: Store) -> list[str]:
    """The RS256 keys: one more per rotation (which makes an ES256 key beside it)."""
    with store() as db:
        return list(db.scalars(select(SigningKey.kid).where(SigningKey.alg == "RS256")))


def _secret_digest(store: Store, client_id: str) -> str | None:
    return in_unit(store, clients.get_client, client_id).secret_hash


#: Stands for the console's own CSRF token in a parameter list.
VALID_TOKEN = "the console's CSRF token"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://testserver"},  # another scheme is another origin
        {"origin": "https://testserver.evil.example"},
        {"origin": ISSUER, "sec-fetch-site": "cross-site"},
        {"origin": ISSUER, "sec-fetch-site": "same-site"},
        {"x-csrf-token": "not-the-token"},
        {"x-csrf-token": VALID_TOKEN, "origin": "https://evil.example"},
        {"x-csrf-token": VALID_TOKEN, "sec-fetch-site": "cross-site"},
        {"referer": f"{ISSUER}/admin/keys"},  # not an answer: Referer is often left out
    ],
)
def test_the_console_cookie_makes_no_cross_site_change(
    admin_world: AdminWorld, store: Store, headers: dict[str, str]
) -> None:
    token = admin_world.csrf()
    headers = {name: token if value is VALID_TOKEN else value for name, value in headers.items()}
    script_id = next(
        c.client_id for c in in_unit(store, clients.list_clients) if c.name == "Ops script"
    )
    kids, secret = _kids(store), _secret_digest(store, script_id)
    with _the_admins_browser(admin_world) as browser:
        for method, path in [
            ("POST", "/admin/api/keys/rotate"),
            ("POST", f"/admin/api/apps/{script_id}/secret"),
            ("DELETE", f"/admin/api/apps/{script_id}"),
            ("PATCH", f"/admin/api/apps/{script_id}"),
        ]:
            body = {"name": "renamed"} if method == "PATCH" else None
            answer = browser.request(method, path, headers=headers, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"] == "csrf"
            assert answer.headers["cache-control"] == "no-store"
    assert _kids(store) == kids
    assert _secret_digest(store, script_id) == secret
    assert in_unit(store, clients.get_client, script_id).name == "Ops script"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": ISSUER},
        {"origin": ISSUER, "sec-fetch-site": "same-origin"},
        {"x-csrf-token": VALID_TOKEN},
        {"x-csrf-token": VALID_TOKEN, "origin": ISSUER},
    ],
)
def test_the_console_cookie_changes_things_from_the_console(
    admin_world: AdminWorld, store: Store, headers: dict[str, str]
) -> None:
    token = admin_world.csrf()
    headers = {name: token if value is VALID_TOKEN else value for name, value in headers.items()}
    before = _kids(store)
    with _the_admins_browser(admin_world) as browser:
        answer = browser.post("/admin/api/keys/rotate", headers=headers)
    assert answer.status_code == 201, answer.text
    assert len(_kids(store)) == len(before) + 1


def test_reading_with_the_console_cookie_needs_no_origin(admin_world: AdminWorld) -> None:
    with _the_admins_browser(admin_world) as browser:
        assert browser.get("/admin/api/keys").status_code == 200


def test_bearer_calls_need_no_origin(admin_world: AdminWorld, app, store: Store) -> None:
    before = _kids(store)
    with admin_console(app) as script:
        for headers in ({}, {"origin": "https://evil.example"}):
            answer = script.post(
                "/admin/api/keys/rotate", headers={**admin_world.bearer, **headers}
            )
            assert answer.status_code == 201, answer.text
    assert len(_kids(store)) == len(before) + 2


def test_a_cross_site_call_with_a_bearer_token_and_the_cookie_is_the_tokens(
    admin_world: AdminWorld, store: Store
) -> None:
    """A script that happens to hold the cookie too: its token speaks for it."""
    with _the_admins_browser(admin_world) as browser:
        answer = browser.post("/admin/api/keys/rotate", headers=admin_world.bearer)
    assert answer.status_code == 201, answer.text
