"""The admin console and API: a browser on the console, and a signed-in admin with a bearer
token of an admin client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from iam.db.store import Store
from iam.services import admins, clients
from support.constants import ADMIN_PASSWORD, ADMIN_USER, ISSUER, RP_REDIRECT
from support.units import in_unit


@dataclass(frozen=True)
class AdminWorld:
    """A signed-in admin console browser, and a bearer token of an admin client."""

    console: TestClient  # signed in as ADMIN_USER, from 127.0.0.1
    token: str  # client_credentials access token with scope iam:admin

    @property
    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def csrf(self, path: str = "/admin/") -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.console.get(path).text)
        assert match, path
        return match.group(1)


def admin_console(app, address: str = "127.0.0.1") -> TestClient:
    """A browser on the admin console from `address` (not yet signed in)."""
    return TestClient(app, base_url=ISSUER, follow_redirects=False, client=(address, 50000))


@pytest.fixture
def admin_world(app, store: Store) -> Iterator[AdminWorld]:
    in_unit(store, admins.create_admin, ADMIN_USER, ADMIN_PASSWORD)
    script = in_unit(store, clients.create_client, "Ops script", [RP_REDIRECT], admin=True)
    with admin_console(app) as console:
        page = console.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        form = {"csrf_token": csrf.group(1), "username": ADMIN_USER, "password": ADMIN_PASSWORD}
        signed_in = console.post("/admin/login", data=form)
        assert signed_in.status_code == 303, signed_in.text
        answer = console.post(
            "/token",
            data={"grant_type": "client_credentials", "scope": "iam:admin"},
            auth=(script.client.client_id, script.client_secret or ""),
        )
        assert answer.status_code == 200, answer.text
        yield AdminWorld(console, answer.json()["access_token"])
