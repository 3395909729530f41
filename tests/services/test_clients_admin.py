"""iam/services/clients.py, what the admin console and API add: update_client,
retire_previous_secret, token lifetimes, and who did it in the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from support.units import in_unit

from iam.db.base import Base
from iam.db.models import AuditEvent, Client
from iam.db.store import Store, create_db_engine
from iam.errors import NotFoundError, ValidationError
from iam.services import clients

REDIRECT = "https://app.example.com/callback"
UNKNOWN = "c_000000000000000000000000"
ACTOR = "admin:root"


@pytest.fixture
def mem_store() -> Iterator[Store]:
    """An in-memory SQLite store, for refusals decided before anything is written."""
    engine = create_db_engine("sqlite:///:memory:")
    Base.metadata.create_all(engine)
    yield Store(engine)
    engine.dispose()


def _create(store: Store, **options: Any) -> clients.RegisteredClient:
    return in_unit(store, clients.create_client, "CRM", [REDIRECT], **options)


def _audit(store: Store, client_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(
            select(AuditEvent).where(AuditEvent.client_id == client_id).order_by(AuditEvent.id)
        )
        return [(row.event, row.actor, row.detail) for row in rows]


def _columns(store: Store, client_id: str) -> dict[str, Any]:
    with store() as db:
        client = db.get(Client, client_id)
        assert client is not None
        return {column.key: getattr(client, column.key) for column in Client.__table__.columns}


# --- create, with lifetimes and an actor ---------------------------------------------------


def test_create_takes_lifetimes_and_records_the_actor(store: Store) -> None:
    registered = _create(
        store, access_token_ttl=300, id_token_ttl=900, refresh_token_ttl=86400, actor=ACTOR
    )
    client = in_unit(store, clients.get_client, registered.client.client_id)
    assert (client.access_token_ttl, client.id_token_ttl, client.refresh_token_ttl) == (
        300,
        900,
        86400,
    )
    assert _audit(store, client.client_id) == [("client.created", ACTOR, {})]


def test_create_keeps_the_cli_as_default_actor_and_the_default_lifetimes(store: Store) -> None:
    client = _create(store).client
    assert (client.access_token_ttl, client.id_token_ttl, client.refresh_token_ttl) == (
        600,
        3600,
        30 * 86400,
    )
    assert _audit(store, client.client_id)[0][1] == "cli"


def test_a_refresh_lifetime_of_zero_means_no_refresh_tokens(mem_store: Store) -> None:
    assert _create(mem_store, refresh_token_ttl=0).client.grant_types == [
        "authorization_code",
        "client_credentials",
    ]
    assert _create(mem_store, refresh_token_ttl=0, public=True).client.grant_types == [
        "authorization_code"
    ]


@pytest.mark.parametrize(
    ("field", "seconds"),
    [
        ("access_token_ttl", 59),
        ("access_token_ttl", 86401),
        ("id_token_ttl", 0),
        ("id_token_ttl", 86401),
        ("refresh_token_ttl", -1),
        ("refresh_token_ttl", 90 * 86400 + 1),
        ("access_token_ttl", True),
    ],
)
def test_lifetimes_out_of_bounds_are_refused(mem_store: Store, field: str, seconds: int) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, **{field: seconds})
    assert caught.value.field == field
    assert in_unit(mem_store, clients.list_clients) == []


def test_rotate_and_delete_record_the_actor(store: Store) -> None:
    client_id = _create(store).client.client_id
    in_unit(store, clients.rotate_secret, client_id, actor="client:ops")
    in_unit(store, clients.delete_client, client_id, actor=ACTOR)
    assert [(event, actor) for event, actor, _ in _audit(store, client_id)] == [
        ("client.created", "cli"),
        ("client.secret_rotated", "client:ops"),
        ("client.deleted", ACTOR),
    ]


# --- update_client ------------------------------------------------------------------------


def test_update_changes_what_is_given_and_nothing_else(store: Store) -> None:
    registered = _create(store, post_logout_redirect_uris=["https://app.example.com/bye"])
    client_id = registered.client.client_id
    before = _columns(store, client_id)
    updated = in_unit(
        store,
        clients.update_client,
        client_id,
        actor=ACTOR,
        name="  CRM 2  ",
        redirect_uris=["https://crm.example.com/cb", "https://crm.example.com/cb"],
        allowed_scopes=["openid", "email"],
        context_policy="required",
        context_claim="https://group.example.com/context",
        access_token_ttl=120,
    )
    assert updated.name == "CRM 2"
    after = _columns(store, client_id)
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {
        "name",
        "redirect_uris",
        "allowed_scopes",
        "context_policy",
        "context_claim",
        "access_token_ttl",
        "updated_at",
    }
    assert after["redirect_uris"] == ["https://crm.example.com/cb"]
    assert after["allowed_scopes"] == "openid email"
    assert after["post_logout_redirect_uris"] == ["https://app.example.com/bye"]
    assert after["secret_hash"] == before["secret_hash"]
    event, actor, detail = _audit(store, client_id)[-1]
    assert (event, actor) == ("client.updated", ACTOR)
    assert detail["changed"] == [
        "access_token_ttl",
        "allowed_scopes",
        "context_claim",
        "context_policy",
        "name",
        "redirect_uris",
    ]


def test_update_without_a_change_writes_no_audit_event(store: Store) -> None:
    client_id = _create(store).client.client_id
    in_unit(store, clients.update_client, client_id, actor=ACTOR)
    in_unit(store, clients.update_client, client_id, actor=ACTOR, name="CRM", context_policy="none")
    assert [event for event, _, _ in _audit(store, client_id)] == ["client.created"]


def test_an_empty_context_claim_means_the_default(store: Store) -> None:
    client_id = _create(store, context_claim="org_context").client.client_id
    in_unit(store, clients.update_client, client_id, actor=ACTOR, context_claim="")
    assert in_unit(store, clients.get_client, client_id).context_claim == "wecom_context"


def test_post_logout_redirect_uris_may_be_emptied(store: Store) -> None:
    client_id = _create(store, post_logout_redirect_uris=["https://a.example/bye"]).client.client_id
    in_unit(store, clients.update_client, client_id, actor=ACTOR, post_logout_redirect_uris=[])
    assert in_unit(store, clients.get_client, client_id).post_logout_redirect_uris == []


def test_refresh_lifetime_zero_turns_refresh_tokens_off_and_back_on(store: Store) -> None:
    client_id = _create(store).client.client_id
    in_unit(store, clients.update_client, client_id, actor=ACTOR, refresh_token_ttl=0)
    client = in_unit(store, clients.get_client, client_id)
    assert client.grant_types == ["authorization_code", "client_credentials"]
    assert not client.check_grant_type("refresh_token")
    in_unit(store, clients.update_client, client_id, actor=ACTOR, refresh_token_ttl=3600)
    assert in_unit(store, clients.get_client, client_id).grant_types == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]


def test_an_admin_client_keeps_iam_admin_and_no_other_may_get_it(store: Store) -> None:
    admin_id = _create(store, admin=True).client.client_id
    in_unit(store, clients.update_client, admin_id, actor=ACTOR, allowed_scopes=["profile"])
    assert (
        in_unit(store, clients.get_client, admin_id).allowed_scopes
        == f"profile {clients.ADMIN_SCOPE}"
    )
    plain_id = _create(store).client.client_id
    with pytest.raises(ValidationError) as caught:
        in_unit(
            store,
            clients.update_client,
            plain_id,
            actor=ACTOR,
            allowed_scopes=[clients.ADMIN_SCOPE],
        )
    assert caught.value.field == "allowed_scopes"
    assert clients.ADMIN_SCOPE not in in_unit(store, clients.get_client, plain_id).allowed_scopes


BAD_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": " "}),
    ("name", {"name": "x" * 201}),
    ("name", {"name": "CRM\x00"}),
    ("redirect_uris", {"redirect_uris": []}),
    ("redirect_uris", {"redirect_uris": ["https://app.example.com/cb#x"]}),
    ("redirect_uris", {"redirect_uris": ["https://*.example.com/cb"]}),
    ("redirect_uris", {"redirect_uris": ["http://app.example.com/cb"]}),
    ("redirect_uris", {"redirect_uris": ["https://[::1/cb"]}),
    ("redirect_uris", {"redirect_uris": ["https://app.example.com/a b"]}),
    ("post_logout_redirect_uris", {"post_logout_redirect_uris": ["ftp://a.example/"]}),
    ("allowed_scopes", {"allowed_scopes": "openid admin"}),
    ("context_policy", {"context_policy": "always"}),
    ("context_claim", {"context_claim": "sub"}),
    ("context_claim", {"context_claim": "has space"}),
    ("context_claim", {"context_claim": "claim\n"}),
    ("access_token_ttl", {"access_token_ttl": 59}),
    ("id_token_ttl", {"id_token_ttl": 86401}),
    ("refresh_token_ttl", {"refresh_token_ttl": 90 * 86400 + 1}),
]


@pytest.mark.parametrize(("field", "change"), BAD_CHANGES)
def test_a_bad_change_is_refused_naming_the_field(
    mem_store: Store, field: str, change: dict[str, Any]
) -> None:
    client_id = _create(mem_store).client.client_id
    before = _columns(mem_store, client_id)
    with pytest.raises(ValidationError) as caught:
        valid = {"context_policy": "required"} if field != "context_policy" else {"name": "New"}
        in_unit(mem_store, clients.update_client, client_id, actor=ACTOR, **valid, **change)
    assert caught.value.field == field
    assert _columns(mem_store, client_id) == before  # not even the valid change


def test_updating_an_unknown_client_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, clients.update_client, UNKNOWN, actor=ACTOR, name="x")


# --- retire_previous_secret ---------------------------------------------------------------


def test_retiring_leaves_only_the_current_secret(store: Store) -> None:
    registered = _create(store)
    client_id = registered.client.client_id
    new = in_unit(store, clients.rotate_secret, client_id).client_secret or ""
    retired = in_unit(store, clients.retire_previous_secret, client_id, actor=ACTOR)
    assert retired.previous_secret_hash is None
    client = in_unit(store, clients.get_client, client_id)
    assert client.check_client_secret(new)
    assert not client.check_client_secret(registered.client_secret or "")
    assert _audit(store, client_id)[-1][:2] == ("client.previous_secret_retired", ACTOR)


def test_retiring_when_there_is_no_previous_secret_changes_nothing(store: Store) -> None:
    registered = _create(store)
    client_id = registered.client.client_id
    in_unit(store, clients.retire_previous_secret, client_id, actor=ACTOR)
    assert in_unit(store, clients.get_client, client_id).check_client_secret(
        registered.client_secret or ""
    )
    assert [event for event, _, _ in _audit(store, client_id)] == ["client.created"]


def test_retiring_refuses_a_public_client_and_an_unknown_one(store: Store) -> None:
    public_id = _create(store, public=True).client.client_id
    with pytest.raises(ValidationError):
        in_unit(store, clients.retire_previous_secret, public_id, actor=ACTOR)
    with pytest.raises(NotFoundError):
        in_unit(store, clients.retire_previous_secret, UNKNOWN, actor=ACTOR)


# --- the checks create_client and update_client share ---------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/\x00",
        "https://app.example.com/a b",
        "https://app.example.com/\ttab",
        "https://[::1/callback",
        "https://[not-ip]/callback",
    ],
)
def test_malformed_redirect_uris_are_refused_not_crashed_on(uri: str) -> None:
    with pytest.raises(ValidationError) as caught:
        clients.check_redirect_uri(uri)
    assert caught.value.field == "redirect_uri"


@pytest.mark.parametrize("name", ["CRM\x00", "a\nb", "tab\there", "del\x7f"])
def test_names_with_control_characters_are_refused(mem_store: Store, name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(mem_store, clients.create_client, name, [REDIRECT])
    assert caught.value.field == "name"
