"""iam/services/clients.py: registration, redirect URI rules, secret rotation, deletion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from support.units import in_unit

from iam.db.base import Base
from iam.db.models import AuditEvent, Client
from iam.db.store import Store, create_db_engine
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.secretbox import digest
from iam.services import clients

REDIRECT = "https://app.example.com/callback"
UNKNOWN = "c_000000000000000000000000"


@pytest.fixture
def mem_store() -> Iterator[Store]:
    """An in-memory SQLite store, for refusals decided before any database work."""
    engine = create_db_engine("sqlite:///:memory:")
    Base.metadata.create_all(engine)
    yield Store(engine)
    engine.dispose()


def _create(store: Store, **options: Any) -> clients.RegisteredClient:
    redirect_uris = options.pop("redirect_uris", [REDIRECT])
    return in_unit(store, clients.create_client, "CRM", redirect_uris, **options)


def _secret_ok(store: Store, client_id: str, secret: str) -> bool:
    with store() as db:
        client = db.get(Client, client_id)
        assert client is not None
        return client.check_client_secret(secret)


def _audit_events(store: Store, client_id: str) -> list[str]:
    with store() as db:
        return list(
            db.scalars(
                select(AuditEvent.event)
                .where(AuditEvent.client_id == client_id)
                .order_by(AuditEvent.id)
            )
        )


# --- create -----------------------------------------------------------------------------


def test_confidential_client_gets_a_secret_and_client_credentials(store: Store) -> None:
    registered = _create(store)
    assert registered.client_secret
    assert len(registered.client_secret) >= 32
    client = in_unit(store, clients.get_client, registered.client.client_id)
    assert client.is_public is False
    assert client.grant_types == ["authorization_code", "refresh_token", "client_credentials"]
    assert client.check_client_secret(registered.client_secret)


def test_client_secret_is_stored_only_as_a_digest(store: Store) -> None:
    registered = _create(store)
    client = in_unit(store, clients.get_client, registered.client.client_id)
    assert client.secret_hash == digest(registered.client_secret or "")
    assert registered.client_secret not in str(
        [getattr(client, column.key) for column in Client.__table__.columns]
    )


def test_public_client_gets_no_secret_and_no_client_credentials(store: Store) -> None:
    registered = _create(store, public=True)
    assert registered.client_secret is None
    client = in_unit(store, clients.get_client, registered.client.client_id)
    assert client.is_public is True
    assert client.secret_hash is None
    assert "client_credentials" not in client.grant_types
    assert client.grant_types == ["authorization_code", "refresh_token"]


def test_create_stores_what_was_asked(store: Store) -> None:
    registered = _create(
        store,
        redirect_uris=[REDIRECT, "http://127.0.0.1:9000/cb", REDIRECT],
        context_policy="required",
        context_claim="https://example.com/claims/wecom",
        post_logout_redirect_uris=["https://app.example.com/bye"],
        scopes="openid profile",
    )
    client = in_unit(store, clients.get_client, registered.client.client_id)
    assert client.name == "CRM"
    assert client.redirect_uris == [REDIRECT, "http://127.0.0.1:9000/cb"]
    assert client.post_logout_redirect_uris == ["https://app.example.com/bye"]
    assert client.context_policy == "required"
    assert client.context_claim == "https://example.com/claims/wecom"
    assert client.allowed_scopes == "openid profile"


def test_create_defaults(store: Store) -> None:
    client = in_unit(store, clients.get_client, _create(store).client.client_id)
    assert client.client_id.startswith("c_")
    assert client.context_policy == "none"
    assert client.context_claim == "wecom_context"
    assert client.allowed_scopes == clients.DEFAULT_SCOPES


def test_client_ids_are_distinct(store: Store) -> None:
    assert _create(store).client.client_id != _create(store).client.client_id


def test_chosen_client_id_is_used_and_must_be_free(store: Store) -> None:
    assert _create(store, client_id="crm-app").client.client_id == "crm-app"
    with pytest.raises(ConflictError, match="crm-app"):
        _create(store, client_id="crm-app")


@pytest.mark.parametrize("client_id", ["ab", "has space", "x" * 65, "crm/app"])
def test_bad_client_id_is_refused(mem_store: Store, client_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, client_id=client_id)
    assert caught.value.field == "client_id"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_name_is_refused(mem_store: Store, name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(mem_store, clients.create_client, name, [REDIRECT])
    assert caught.value.field == "name"


def test_create_writes_an_audit_event(store: Store) -> None:
    registered = _create(store)
    assert _audit_events(store, registered.client.client_id) == ["client.created"]


# --- redirect URIs ----------------------------------------------------------------------


def test_at_least_one_redirect_uri_is_required(mem_store: Store) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, redirect_uris=[])
    assert caught.value.field == "redirect_uri"


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/callback#section",
        "https://app.example.com/callback#",
        "https://*.example.com/callback",
        "https://app.example.com/*",
        "http://app.example.com/callback",
        "http://192.168.1.10/callback",
        "/callback",
        "callback",
        "//app.example.com/callback",
        "ftp://app.example.com/callback",
        "javascript://app.example.com/%0aalert(1)",
        "",
        "https://app.example.com/" + "x" * 2000,
    ],
)
def test_bad_redirect_uri_is_refused(uri: str) -> None:
    with pytest.raises(ValidationError) as caught:
        clients.check_redirect_uri(uri)
    assert caught.value.field == "redirect_uri"


def test_create_with_one_bad_redirect_uri_stores_nothing(store: Store) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(store, redirect_uris=[REDIRECT, "https://app.example.com/cb#frag"])
    assert caught.value.field == "redirect_uri"
    assert in_unit(store, clients.list_clients) == []


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8765/callback",
        "http://localhost:3000/callback",
        "http://[::1]:3000/callback",
        "https://app.example.com/callback?tenant=a",
        "https://app.example.com:8443/cb",
    ],
)
def test_loopback_http_and_https_redirect_uris_are_allowed(uri: str) -> None:
    assert clients.check_redirect_uri(uri) == uri


def test_loopback_redirect_uris_are_registered(store: Store) -> None:
    uris = ["http://127.0.0.1:8765/callback", "http://localhost:3000/callback"]
    client_id = _create(store, redirect_uris=uris).client.client_id
    assert in_unit(store, clients.get_client, client_id).redirect_uris == uris


def test_bad_post_logout_redirect_uri_is_refused(mem_store: Store) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, post_logout_redirect_uris=["http://app.example.com/bye"])
    assert caught.value.field == "post_logout_redirect_uri"


# --- context policy, claim and scopes ---------------------------------------------------


@pytest.mark.parametrize("policy", ["optional", "required", "none"])
def test_known_context_policies_are_accepted(mem_store: Store, policy: str) -> None:
    assert _create(mem_store, context_policy=policy).client.context_policy == policy


@pytest.mark.parametrize("policy", ["", "always", "REQUIRED"])
def test_unknown_context_policy_is_refused(mem_store: Store, policy: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, context_policy=policy)
    assert caught.value.field == "context_policy"


@pytest.mark.parametrize(
    "claim", ["sub", "iss", "aud", "email", "name", "sid", "wecom context", "x" * 256, "上下文"]
)
def test_reserved_or_malformed_context_claim_is_refused(mem_store: Store, claim: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, context_policy="required", context_claim=claim)
    assert caught.value.field == "context_claim"


@pytest.mark.parametrize("claim", ["org_context", "https://group.example.com/claims/context"])
def test_custom_context_claim_is_accepted(mem_store: Store, claim: str) -> None:
    assert _create(mem_store, context_claim=claim).client.context_claim == claim


def test_unsupported_scope_is_refused(mem_store: Store) -> None:
    with pytest.raises(ValidationError) as caught:
        _create(mem_store, scopes="openid admin")
    assert caught.value.field == "scopes"


# --- rotate_secret ----------------------------------------------------------------------


def test_rotation_gives_a_new_secret_and_keeps_the_previous_valid(store: Store) -> None:
    registered = _create(store)
    client_id = registered.client.client_id
    old = registered.client_secret or ""
    rotated = in_unit(store, clients.rotate_secret, client_id)
    new = rotated.client_secret or ""
    assert new and new != old
    assert _secret_ok(store, client_id, new)
    assert _secret_ok(store, client_id, old)
    assert not _secret_ok(store, client_id, "something else")


def test_second_rotation_retires_the_oldest_secret(store: Store) -> None:
    registered = _create(store)
    client_id = registered.client.client_id
    first = registered.client_secret or ""
    second = in_unit(store, clients.rotate_secret, client_id).client_secret or ""
    third = in_unit(store, clients.rotate_secret, client_id).client_secret or ""
    assert not _secret_ok(store, client_id, first)
    assert _secret_ok(store, client_id, second)
    assert _secret_ok(store, client_id, third)


def test_rotation_without_keeping_the_previous_invalidates_it(store: Store) -> None:
    registered = _create(store)
    client_id = registered.client.client_id
    new = in_unit(store, clients.rotate_secret, client_id, keep_previous=False).client_secret or ""
    assert _secret_ok(store, client_id, new)
    assert not _secret_ok(store, client_id, registered.client_secret or "")


def test_rotation_is_recorded(store: Store) -> None:
    client_id = _create(store).client.client_id
    in_unit(store, clients.rotate_secret, client_id)
    assert in_unit(store, clients.get_client, client_id).secret_rotated_at is not None
    assert _audit_events(store, client_id) == ["client.created", "client.secret_rotated"]


def test_rotating_a_public_client_is_refused(store: Store) -> None:
    client_id = _create(store, public=True).client.client_id
    with pytest.raises(ValidationError):
        in_unit(store, clients.rotate_secret, client_id)
    assert in_unit(store, clients.get_client, client_id).secret_hash is None


def test_rotating_an_unknown_client_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, clients.rotate_secret, UNKNOWN)


# --- read and delete --------------------------------------------------------------------


def test_get_unknown_client_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, clients.get_client, UNKNOWN)


def test_list_clients_lists_every_client(store: Store) -> None:
    ids = {_create(store).client.client_id, _create(store, public=True).client.client_id}
    assert {client.client_id for client in in_unit(store, clients.list_clients)} == ids


def test_delete_removes_the_client(store: Store) -> None:
    client_id = _create(store).client.client_id
    in_unit(store, clients.delete_client, client_id)
    with pytest.raises(NotFoundError):
        in_unit(store, clients.get_client, client_id)
    assert _audit_events(store, client_id) == ["client.created", "client.deleted"]


def test_delete_unknown_client_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, clients.delete_client, UNKNOWN)


def test_check_redirect_uri_names_the_field_it_was_given() -> None:
    with pytest.raises(ValidationError) as caught:
        clients.check_redirect_uri("http://app.example.com/bye", "post_logout_redirect_uri")
    assert caught.value.field == "post_logout_redirect_uri"
