"""Admin sign-in, lock-out, the address guard, and who may call the API."""

from __future__ import annotations

import re

import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, RP_REDIRECT, AdminWorld, admin_console

from iam.db.store import Store
from iam.services import admins, clients

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
    admins.create_admin(store, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        answer = _login(console, ADMIN_USER, ADMIN_PASSWORD)
        cookie = answer.headers["set-cookie"]
        assert answer.status_code == 303
        assert "iam_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Path=/admin" in cookie and "Secure" in cookie
        assert console.get("/admin/").status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(app, store: Store) -> None:
    admins.create_admin(store, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        wrong = _login(console, ADMIN_USER, "not the password")
        unknown = _login(console, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        "Wrong username or password." in wrong.text
        and "Wrong username or password." in unknown.text
    )


def test_five_failures_lock_the_account(app, store: Store) -> None:
    admins.create_admin(store, ADMIN_USER, ADMIN_PASSWORD)
    with admin_console(app) as console:
        for _ in range(admins.MAX_FAILED_LOGINS):
            assert _login(console, ADMIN_USER, "wrong").status_code == 401
        locked = _login(console, ADMIN_USER, ADMIN_PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "iam_admin=" not in locked.headers.get("set-cookie", "")


def test_sign_in_without_csrf_is_refused(app, store: Store) -> None:
    admins.create_admin(store, ADMIN_USER, ADMIN_PASSWORD)
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
    plain = clients.create_client(store, "Plain", [RP_REDIRECT])
    with admin_console(app) as console:
        answer = console.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "iam:admin"},
            auth=(plain.client.client_id, plain.client_secret or ""),
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"
