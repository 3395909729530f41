"""A registered world for the protocol and page tests: a user and two relying parties."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from iam.db.models import User
from iam.db.store import Store
from iam.services import clients, users
from iam.services.clients import RegisteredClient
from support.constants import PHONE, PUBLIC_REDIRECT, RP_LOGOUT, RP_REDIRECT
from support.units import in_unit


@dataclass(frozen=True)
class World:
    user: User
    rp: RegisteredClient  # confidential
    public_rp: RegisteredClient  # public, PKCE required


@pytest.fixture
def world(store: Store) -> World:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE, "zhangsan@example.com")
    rp = in_unit(
        store, clients.create_client, "CRM", [RP_REDIRECT], post_logout_redirect_uris=[RP_LOGOUT]
    )
    public_rp = in_unit(store, clients.create_client, "Mobile app", [PUBLIC_REDIRECT], public=True)
    return World(user, rp, public_rp)
