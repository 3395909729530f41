"""iam/db/fastpath.py: rows read without the ORM become frozen views (clients, users), shared
while the driver's row is exactly the same, or frozen records (one request's rows), converted
by column type; a client view answers Authlib as the model does."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from support.units import in_unit

from iam.db import fastpath, prepared
from iam.db.fastpath import (
    AccessTokenRecord,
    ClientView,
    CodeRecord,
    Reused,
    SessionRecord,
    UserView,
    select_columns,
    shape,
    split,
)
from iam.db.models import AccessToken, AuthorizationCode, Client, IdentityLink, SsoSession, User
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
    return tuple(values[key] for key in fastpath.USERS.shape.keys)


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
    return tuple(values[key] for key in fastpath.CLIENTS.shape.keys)


#: A driver that hands out Python values (dates, parsed JSON): nothing for a shape to convert.
PYTHON_VALUES = postgresql.dialect()
#: SQLite's driver hands out dates and JSON as text: a shape converts them by column type.
TEXT_VALUES = sqlite.dialect()


def _column_keys(model: type) -> list[str]:
    """The attribute of each column the ORM loads (a deferred one it does not), in order."""
    mapper = inspect(model)
    loaded = [mapper.get_property_by_column(column) for column in mapper.local_table.columns]
    return [prop.key for prop in loaded if not prop.deferred]


def test_a_shape_names_attributes_not_columns() -> None:
    record = dataclasses.make_dataclass("LinkRecord", _column_keys(IdentityLink))
    links = shape(IdentityLink, record)
    assert "link_metadata" in links.keys and "metadata" not in links.keys
    assert [c.name for c in links.columns][links.keys.index("link_metadata")] == "metadata"
    assert [links.keys[i] for i in links.primary_key] == ["id"]


def test_a_record_must_have_its_tables_columns_in_order() -> None:
    keys = _column_keys(IdentityLink)
    with pytest.raises(TypeError, match="columns in order"):
        shape(IdentityLink, dataclasses.make_dataclass("Swapped", [keys[1], keys[0], *keys[2:]]))
    with pytest.raises(TypeError, match="columns in order"):
        shape(IdentityLink, dataclasses.make_dataclass("Short", keys[:-1]))


def test_the_hot_path_reads_no_deferred_column() -> None:
    """`users.search_text` (the admin search's, deferred in the model) is no part of a user
    as the hot path reads it."""
    assert "search_text" not in fastpath.USERS.shape.keys
    assert "search_text" not in str(fastpath.USER_BY_ID)
    assert "search_text" not in str(fastpath.PRESENTED_TOKEN)


def test_a_built_record_has_the_values_and_cannot_be_changed() -> None:
    values = {key: None for key in fastpath.CODE.keys} | {"id": "c1", "amr": ["sms"]}
    code = fastpath.CODE.build(tuple(values.values()), PYTHON_VALUES)
    assert isinstance(code, CodeRecord) and (code.id, code.get_amr()) == ("c1", ["sms"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        code.consumed_at = WHEN  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "record"),
    [
        (Client, ClientView),
        (User, UserView),
        (AuthorizationCode, CodeRecord),
        (AccessToken, AccessTokenRecord),
        (SsoSession, SessionRecord),
    ],
)
def test_a_view_or_record_has_every_column_of_its_model(model: type, record: type) -> None:
    assert [field.name for field in dataclasses.fields(record)] == _column_keys(model)


def test_a_view_cannot_be_changed() -> None:
    user = fastpath.USERS.build(user_row(), PYTHON_VALUES)
    client = fastpath.CLIENTS.build(client_row(), PYTHON_VALUES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.status = "disabled"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        client.redirect_uris = ()  # type: ignore[misc]
    assert client.redirect_uris == ("https://crm.example/cb",)  # a list would be changeable


def test_the_same_row_gives_the_same_view() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    assert reused.get(user_row(), PYTHON_VALUES) is reused.get(user_row(), PYTHON_VALUES)


def test_a_changed_row_gives_a_new_view_with_the_change() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    before = reused.get(user_row(), PYTHON_VALUES)
    after = reused.get(user_row(status="disabled"), PYTHON_VALUES)
    assert after is not before
    assert not after.is_active and before.is_active


def test_text_from_the_driver_is_converted_once_per_unchanged_row() -> None:
    """SQLite's text dates and JSON become datetimes and tuples; the same text again gives
    the view built the first time (nothing parsed again); changed text gives a new one."""
    reused: Reused[ClientView] = Reused(Client, ClientView)
    text_row = client_row(
        redirect_uris='["https://crm.example/cb"]',
        post_logout_redirect_uris="[]",
        grant_types='["authorization_code"]',
        allowed_origins="[]",
        is_public=0,
        is_admin=0,
        created_at="2026-12-02 09:00:00.000000",
        updated_at="2026-12-02 09:00:00.000000",
    )
    view = reused.get(text_row, TEXT_VALUES)
    assert view.redirect_uris == ("https://crm.example/cb",) and view.created_at == WHEN
    assert view.is_public is False
    assert reused.get(text_row, TEXT_VALUES) is view
    changed_row = tuple(
        "[]" if key == "grant_types" else value
        for key, value in zip(fastpath.CLIENTS.shape.keys, text_row, strict=True)
    )
    changed = reused.get(changed_row, TEXT_VALUES)
    assert changed is not view and changed.grant_types == ()


def test_an_outer_join_that_found_no_row_gives_none() -> None:
    reused: Reused[UserView] = Reused(User, UserView)
    assert reused.get_joined((None,) * len(user_row()), PYTHON_VALUES) is None
    assert reused.get_joined(user_row(), PYTHON_VALUES) is reused.get(user_row(), PYTHON_VALUES)


def test_past_its_limit_it_starts_over() -> None:
    reused: Reused[UserView] = Reused(User, UserView, limit=2)
    first = reused.get(user_row(id="a"), PYTHON_VALUES)
    reused.get(user_row(id="b"), PYTHON_VALUES)
    reused.get(user_row(id="c"), PYTHON_VALUES)  # the third key: the memo is emptied
    assert reused.get(user_row(id="a"), PYTHON_VALUES) is not first


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
    view = fastpath.CLIENTS.build(client_row(**changes), PYTHON_VALUES)
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
    users_, clients_ = fastpath.USERS.shape, fastpath.CLIENTS.shape
    statement = select(*select_columns(users_, clients_)).join_from(
        User, Client, User.id == user.id
    )
    with store() as db:
        db.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        db.commit()
        row = prepared.first(db.connection(), statement, {}, convert=False)
        dialect = db.get_bind().dialect
    assert row is not None
    user_values, client_values = split(row, users_, clients_)
    assert fastpath.USERS.build(user_values, dialect).name == "李四"
    assert fastpath.CLIENTS.build(client_values, dialect).grant_types == ()


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
