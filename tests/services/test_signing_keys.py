"""iam/services/signing_keys.py: the token signing keys, encrypted at rest, rotated with overlap."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import AuditEvent, Client, SigningKey
from iam.db.store import Store, create_db_engine
from iam.secretbox import SecretBox, SecretBoxError
from iam.services import clients, signing_keys


def _rows(store: Store) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        return [
            {column.key: getattr(row, column.key) for column in SigningKey.__table__.columns}
            for row in rows
        ]


def _set_key(store: Store, kid: str, **values: Any) -> None:
    with store() as db:
        row = db.get(SigningKey, kid)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        db.commit()


def _audit(store: Store, event: str) -> list[dict[str, Any]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [dict(row.detail) for row in rows]


def _published_kids(material: signing_keys.KeyMaterial) -> list[str]:
    return [key["kid"] for key in material.published]


# --- ensure_key -------------------------------------------------------------------------


def test_ensure_key_creates_exactly_one_key(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [row] = _rows(store)
    assert row["alg"] == "RS256"
    assert row["retired_at"] is None
    assert len(_audit(store, "key.created")) == 1


def test_instances_starting_together_create_one_key(
    database_url: str, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several instances start at once, each with its own engine: one key, not one each.
    RSA generation is made slow so that every instance is inside `ensure_key` together."""
    real_new_key = signing_keys._new_key

    def slow_new_key(box: SecretBox) -> SigningKey:
        time.sleep(0.2)
        return real_new_key(box)

    monkeypatch.setattr(signing_keys, "_new_key", slow_new_key)
    stores = [Store(create_db_engine(database_url)) for _ in range(3)]
    threads = [
        threading.Thread(target=in_unit, args=(each, signing_keys.ensure_key, box))
        for each in stores
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with stores[0]() as db:
        assert len(db.scalars(select(SigningKey)).all()) == 1
    for each in stores:
        each.engine.dispose()


def test_ensure_key_is_idempotent(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    first = _rows(store)
    in_unit(store, signing_keys.ensure_key, box)
    assert _rows(store) == first
    assert len(_audit(store, "key.created")) == 1


def test_private_key_is_stored_encrypted(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [row] = _rows(store)
    assert "d" not in row["public_jwk"]
    assert set(row["public_jwk"]) >= {"kty", "n", "e", "kid"}
    encrypted = row["private_jwk_encrypted"]
    assert '"d"' not in encrypted and row["public_jwk"]["n"] not in encrypted
    private = json.loads(box.decrypt(encrypted))
    assert private["d"]
    assert private["kid"] == row["kid"]
    assert private["n"] == row["public_jwk"]["n"]


def test_key_does_not_decrypt_with_another_secret(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    with pytest.raises(SecretBoxError):
        in_unit(store, signing_keys.load_material, SecretBox("another-secret-key-" + "x" * 30))


def test_kid_is_the_rfc7638_thumbprint(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [row] = _rows(store)
    assert RSAKey.import_key(row["public_jwk"]).thumbprint() == row["kid"]


# --- load_material ----------------------------------------------------------------------


def test_load_material_without_a_key_says_so(store: Store, box: SecretBox) -> None:
    with pytest.raises(LookupError):
        in_unit(store, signing_keys.load_material, box)


def test_load_material_returns_the_active_key_and_publishes_it(
    store: Store, box: SecretBox
) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [row] = _rows(store)
    material = in_unit(store, signing_keys.load_material, box)
    assert material.kid == row["kid"]
    assert material.active_private_jwk["d"]
    assert material.published == (row["public_jwk"],)


def test_token_signed_with_the_active_key_verifies_with_the_published_set(
    store: Store, box: SecretBox
) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    material = in_unit(store, signing_keys.load_material, box)
    private = RSAKey.import_key(material.active_private_jwk)
    token = jwt.encode({"alg": "RS256", "kid": material.kid}, {"sub": "u1"}, private)
    public_set = KeySet.import_key_set({"keys": list(material.published)})
    assert jwt.decode(token, public_set).claims == {"sub": "u1"}


# --- rotate -----------------------------------------------------------------------------


def test_rotate_makes_a_new_active_key(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    assert new.kid != old["kid"]
    material = in_unit(store, signing_keys.load_material, box)
    assert material.kid == new.kid
    rows = {row["kid"]: row for row in _rows(store)}
    assert rows[old["kid"]]["retired_at"] is not None
    assert rows[new.kid]["retired_at"] is None


def test_old_key_stays_published_after_rotation(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    assert sorted(_published_kids(in_unit(store, signing_keys.load_material, box))) == sorted(
        [old["kid"], new.kid]
    )


def test_old_key_is_unpublished_after_publish_until(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    _set_key(store, old["kid"], publish_until=utcnow() - timedelta(seconds=1))
    assert _published_kids(in_unit(store, signing_keys.load_material, box)) == [new.kid]


def test_old_key_is_published_at_least_an_hour(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    before = utcnow()
    in_unit(store, signing_keys.rotate, box)
    retired = next(row for row in _rows(store) if row["kid"] == old["kid"])
    assert retired["publish_until"] - before >= timedelta(hours=1)
    assert retired["publish_until"] - before < timedelta(hours=1, minutes=1)


def test_old_key_is_published_as_long_as_the_longest_token_lifetime(
    store: Store, box: SecretBox
) -> None:
    client_id = in_unit(
        store, clients.create_client, "CRM", ["https://crm.example.com/cb"]
    ).client.client_id
    with store() as db:
        client = db.get(Client, client_id)
        assert client is not None
        client.access_token_ttl = 3 * 3600
        db.commit()
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    before = utcnow()
    in_unit(store, signing_keys.rotate, box)
    retired = next(row for row in _rows(store) if row["kid"] == old["kid"])
    assert timedelta(hours=3) <= retired["publish_until"] - before < timedelta(hours=3, minutes=1)


def test_second_rotation_keeps_the_first_retired_keys_window(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [first] = _rows(store)
    in_unit(store, signing_keys.rotate, box)
    window = next(row for row in _rows(store) if row["kid"] == first["kid"])["publish_until"]
    in_unit(store, signing_keys.rotate, box)
    again = next(row for row in _rows(store) if row["kid"] == first["kid"])
    assert again["publish_until"] == window
    assert len(in_unit(store, signing_keys.load_material, box).published) == 3


def test_rotate_without_a_key_creates_one(store: Store, box: SecretBox) -> None:
    key = in_unit(store, signing_keys.rotate, box)
    assert in_unit(store, signing_keys.load_material, box).kid == key.kid


def test_rotate_writes_an_audit_event(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    new = in_unit(store, signing_keys.rotate, box)
    assert _audit(store, "key.rotated") == [{"kid": new.kid}]


def test_list_keys_is_newest_first(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    [old] = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    assert [key.kid for key in in_unit(store, signing_keys.list_keys)] == [new.kid, old["kid"]]
