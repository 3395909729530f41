"""iam/services/authorizations.py: pending authorization requests, bound to one browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import PendingAuthorization
from iam.db.store import Store
from iam.errors import NotFoundError
from iam.secretbox import digest
from iam.services import authorizations, clients, rows

BROWSER = "browser-id-of-alice-0123456789"
OTHER_BROWSER = "browser-id-of-mallory-987654321"
PARAMS = [
    ("response_type", "code"),
    ("scope", "openid profile"),
    ("scope", "duplicate keys are kept"),
    ("state", "xyz"),
]


@pytest.fixture
def client_id(store: Store) -> str:
    return in_unit(
        store, clients.create_client, "CRM", ["https://crm.example.com/cb"]
    ).client.client_id


def _expire(store: Store, flow_id: str) -> None:
    with store() as db:
        row = db.get(PendingAuthorization, flow_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()


def _flow_ids(store: Store) -> set[str]:
    with store() as db:
        return set(db.scalars(select(PendingAuthorization.id)))


def test_create_then_get_in_the_same_browser(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    found = in_unit(store, authorizations.get, created.id, BROWSER)
    assert found.id == created.id
    assert found.client_id == client_id
    assert [tuple(pair) for pair in found.params] == PARAMS


def test_flow_lives_thirty_minutes(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    assert created.expires_at - created.created_at == timedelta(minutes=30)


def test_flow_ids_are_unguessable_and_distinct(store: Store, client_id: str) -> None:
    first = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    second = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    assert first.id != second.id
    assert len(first.id) >= 32


def test_only_a_digest_of_the_browser_id_is_stored(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    with store() as db:
        row = db.get(PendingAuthorization, created.id)
        assert row is not None
        assert row.browser_hash == digest(BROWSER)
        assert BROWSER not in row.browser_hash


def test_another_browser_cannot_get_the_flow(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, created.id, OTHER_BROWSER)
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, created.id, "")


@pytest.mark.parametrize("flow_id", ["", "no-such-flow"])
def test_unknown_flow_is_not_found(store: Store, client_id: str, flow_id: str) -> None:
    in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, flow_id, BROWSER)


def test_expired_flow_is_not_found(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    _expire(store, created.id)
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, created.id, BROWSER)


def test_expired_flow_is_not_found_by_the_clock(
    store: Store, client_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    later = utcnow() + timedelta(minutes=31)
    monkeypatch.setattr(rows, "utcnow", lambda: later)  # where held rows are checked
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, created.id, BROWSER)


def test_finish_deletes_the_flow(store: Store, client_id: str) -> None:
    created = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    kept = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    in_unit(store, authorizations.finish, created.id)
    with pytest.raises(NotFoundError):
        in_unit(store, authorizations.get, created.id, BROWSER)
    assert _flow_ids(store) == {kept.id}


def test_expired_flows_are_swept_when_a_new_one_is_created(store: Store, client_id: str) -> None:
    stale = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    live = in_unit(store, authorizations.create, OTHER_BROWSER, client_id, PARAMS)
    _expire(store, stale.id)
    new = in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    assert _flow_ids(store) == {live.id, new.id}


def test_deleting_the_client_deletes_its_flows(store: Store, client_id: str) -> None:
    in_unit(store, authorizations.create, BROWSER, client_id, PARAMS)
    in_unit(store, clients.delete_client, client_id)
    assert _flow_ids(store) == set()
