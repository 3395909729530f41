"""Rate limits on the admin sign-in: per address and per username, 429 with Retry-After, and a
refused attempt never reaches the password check."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from support.admin import admin_console
from support.constants import ADMIN_PASSWORD, ADMIN_USER
from support.units import in_unit

from iam.app import create_app
from iam.db.store import Store
from iam.services import admins
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key", "rate_clock")


def limited_app(settings: Settings, store: Store, limits: str):
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    return create_app(replace(settings, rate_limits=limits), store=store, sms=ConsoleSms())


def sign_in(app, username: str, password: str, address: str = "127.0.0.1"):
    with admin_console(app, address) as console:
        console.headers["accept-language"] = "en-US"
        page = console.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        data = {"csrf_token": csrf.group(1), "username": username, "password": password}
        return console.post("/admin/login", data=data)


def assert_refused(answer) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "500"
    assert "Try again in 9 minutes" in answer.text
    assert "iam_admin=" not in answer.headers.get("set-cookie", "")


def test_past_the_address_limit_even_the_right_password_is_refused(
    settings: Settings, store: Store
) -> None:
    app = limited_app(settings, store, "admin_login.ip=2/600")
    assert sign_in(app, ADMIN_USER, "wrong").status_code == 401
    assert sign_in(app, "someone", "wrong").status_code == 401
    assert_refused(sign_in(app, ADMIN_USER, ADMIN_PASSWORD))
    # another address of the admitted network is counted apart
    assert sign_in(app, ADMIN_USER, ADMIN_PASSWORD, "127.0.0.2").status_code == 303


def test_past_the_username_limit_every_address_is_refused(settings: Settings, store: Store) -> None:
    """Spreading guesses over addresses does not help; the username is counted in any case."""
    app = limited_app(settings, store, "admin_login.key=2/600")
    assert sign_in(app, ADMIN_USER, "wrong", "127.0.0.1").status_code == 401
    assert sign_in(app, ADMIN_USER.upper(), "wrong", "127.0.0.2").status_code == 401
    assert_refused(sign_in(app, ADMIN_USER, ADMIN_PASSWORD, "127.0.0.3"))
    # another username is not held back
    in_unit(store, admins.create_admin, "second", ADMIN_PASSWORD)
    assert sign_in(app, "second", ADMIN_PASSWORD, "127.0.0.3").status_code == 303


def test_refused_attempts_do_not_count_towards_the_lock_out(
    settings: Settings, store: Store
) -> None:
    """A refusal never checks the password, so it is not a failure of the account."""
    app = limited_app(settings, store, "admin_login.ip=1/600")
    assert sign_in(app, ADMIN_USER, "wrong").status_code == 401
    for _ in range(admins.MAX_FAILED_LOGINS):
        assert_refused(sign_in(app, ADMIN_USER, "wrong"))
    assert sign_in(app, ADMIN_USER, ADMIN_PASSWORD, "127.0.0.2").status_code == 303
