"""iam/db/fastpath.py: rows read without the ORM become frozen views (clients, users), shared
while their row is exactly the same, or fresh session-less model instances (one request's rows);
a client view answers Authlib as the model does."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from sqlalchemy import inspect, select
from support.units import in_unit

from iam.db import fastpath
from iam.db.fastpath import ClientView, Reused, UserView, select_columns, shape, split
from iam.db.models import Client, IdentityLink, User
from iam.db.store import Store
from iam.services import clients, users

WHEN = datetime(2026, 12, 2, 9, 0, 0)


def user_row(**changes: object) -> tuple[object, ...]:
    values = {
        "id": "u1",
        "name": "张三",
        "email": "zs@example.com",
        "phone": "+8613800138000",
        "phone_verified_at": None,
        "status": "active",
        "created_at": WHEN,
        "updated_at": WHEN,
    }
    values.update(changes)
    return tuple(values[key] for key in shape(User).keys)


def client_values(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "client_id": "crm",
        "name": "CRM",
        "is_public": False,
        "is_admin": False,
        "secret_hash": "a" * 64,
        "previous_secret_hash": None,
        "secret_rotated_at": None,
        "secret_encrypted": None,
        "previous_secret_encrypted": None,
        "redirect_uris": ["https://crm.example/cb"],
        "post_logout_redirect_uris": ["https://crm.example/bye"],
        "grant_types": ["authorization_code", "refresh_token"],
        "allowed_scopes": "openid profile email",
        "context_policy": "none",
        "context_claim": "wecom_context",
        "access_token_ttl": 600,
        "id_token_ttl": 3600,
        "refresh_token_ttl": 86400,
        "initiate_login_uri": None,
        "backchannel_logout_uri": None,
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": None,
        "jwks_uri": None,
        "allowed_origins": [],
        "access_token_signing_alg": "RS256",
        "created_at": WHEN,
        "updated_at": WHEN,
    }
    values.update(changes)
    return values


def client_row(**changes: object) -> tuple[object, ...]:
    values = client_values(**changes)
    return tuple(values[key] for key in shape(Client).keys)


def test_a_shape_names_attributes_not_columns() -> None:
    links = shape(IdentityLink)
    assert "link_metadata" in links.keys and "metadata" not in links.keys
    assert [c.name for c in links.columns][links.keys.index("link_metadata")] == "metadata"
    assert [links.keys[i] for i in links.primary_key] == ["id"]


def test_a_built_instance_has_the_values_and_no_session() -> None:
    user = shape(User).build(user_row())
    assert (user.id, user.name, user.is_active) == ("u1", "张三", True)
    assert inspect(user).transient


@pytest.mark.parametrize(("model", "view"), [(Client, ClientView), (User, UserView)])
def test_a_view_has_every_column_of_its_model(model: type, view: type) -> None:
    assert [field.name for field in dataclasses.fields(view)] == list(shape(model).keys)


def test_a_view_cannot_be_changed() -> None:
    user = fastpath.USERS.build(user_row())
    client = fastpath.CLIENTS.build(client_row())
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.status = "disabled"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.redirect_uris = ()  # type: ignore[misc]
    assert client.redirect_uris == ("https://crm.example/cb",)  # a list would be changeable


def test_the_same_row_gives_the_same_view() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    assert reused.get(user_row()) is reused.get(user_row())


def test_a_changed_row_gives_a_new_view_with_the_change() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    before = reused.get(user_row())
    after = reused.get(user_row(status="disabled"))
    assert after is not before
    assert not after.is_active and before.is_active


def test_an_outer_join_that_found_no_row_gives_none() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    assert reused.get_joined((None,) * len(user_row())) is None
    assert reused.get_joined(user_row()) is reused.get(user_row())


def test_past_its_limit_it_starts_over() -> None:
    reused: Reused[UserView] = Reused(User, UserView, limit=2)
    first = reused.get(user_row(id="a"))
    reused.get(user_row(id="b"))
    reused.get(user_row(id="c"))  # the third key: the memo is emptied, then holds "c"
    assert reused.get(user_row(id="a")) is not first


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"is_public": True, "secret_hash": None},
        {"redirect_uris": ["https://a.example/cb", "https://b.example/cb"]},
        {"grant_types": ["client_credentials"], "previous_secret_hash": "b" * 64},
    ],
)
def test_a_client_view_answers_authlib_as_the_model_does(changes: dict[str, object]) -> None:
    model = Client(**client_values(**changes))
    view = fastpath.CLIENTS.build(client_row(**changes))
    for ask in (
        lambda c: c.get_client_id(),
        lambda c: c.get_default_redirect_uri(),
        lambda c: c.get_allowed_scope(None),
        lambda c: c.get_allowed_scope("openid email"),
        lambda c: c.get_allowed_scope("openid iam:admin"),
        lambda c: c.check_redirect_uri("https://crm.example/cb"),
        lambda c: c.check_redirect_uri("https://evil.example/cb"),
        lambda c: c.check_client_secret("not the secret"),
        lambda c: c.check_endpoint_auth_method("none", "token"),
        lambda c: c.check_endpoint_auth_method("client_secret_basic", "token"),
        lambda c: c.check_response_type("code"),
        lambda c: c.check_grant_type("refresh_token"),
        lambda c: c.check_grant_type("client_credentials"),
        lambda c: c.client_metadata,
    ):
        assert ask(view) == ask(model)


def test_select_columns_and_split_read_two_tables_in_one_row(store: Store) -> None:
    user = in_unit(store, users.create_user, "李四", "13800138001", None)
    statement = select(*select_columns(shape(User), shape(Client))).join_from(
        User, Client, User.id == user.id
    )
    with store() as db:
        db.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        db.commit()
        row = db.connection().execute(statement).one()
    user_values, client_values = split(row, shape(User), shape(Client))
    assert shape(User).build(user_values).name == "李四"
    assert shape(Client).build(client_values).client_id == "c1"


def test_the_readers_find_clients_and_users_and_see_a_change_at_once(store: Store) -> None:
    registered = in_unit(store, clients.create_client, "CRM", ["https://crm.example/cb"])
    client_id = registered.client.client_id
    user = in_unit(store, users.create_user, "王五", "13800138002", None)
    with store.engine.connect() as connection:
        found = fastpath.client_by_id(connection, client_id)
        assert isinstance(found, ClientView) and found.name == "CRM"
        assert found.check_client_secret(registered.client_secret or "")
        assert fastpath.client_by_id(connection, "nobody") is None
        seen = fastpath.user_by_id(connection, user.id)
        assert isinstance(seen, UserView) and seen.is_active
        assert fastpath.user_by_id(connection, user.id) is seen  # same row, same view
    with store() as db:
        row = db.get(User, user.id)
        assert row is not None
        row.status = "disabled"
        db.commit()
    with store.engine.connect() as connection:
        again = fastpath.user_by_id(connection, user.id)
        assert again is not None and not again.is_active
