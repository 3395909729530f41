"""The admin tests' console browser sends its page's Origin, as browsers do on every POST,
PATCH and DELETE (Fetch standard: the `Origin` header); the API refuses changes made with the
console cookie without it (or the console's CSRF token)."""

from __future__ import annotations

import pytest
from support.admin import AdminWorld
from support.constants import ISSUER


@pytest.fixture
def admin_world(admin_world: AdminWorld) -> AdminWorld:
    admin_world.console.headers["origin"] = ISSUER
    return admin_world
