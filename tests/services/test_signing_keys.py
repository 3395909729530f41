"""iam/services/signing_keys.py: the token signing keys, encrypted at rest, rotated with overlap."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
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


def _rsa(store: Store) -> dict[str, Any]:
    """The RS256 key (the only one of its algorithm in the database)."""
    [row] = [row for row in _rows(store) if row["alg"] == "RS256"]
    return row


def _by_alg(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["alg"]: row for row in rows}


# --- ensure_key -------------------------------------------------------------------------


def test_ensure_key_creates_exactly_one_key_per_algorithm(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    rows = _by_alg(_rows(store))
    assert sorted(rows) == ["ES256", "RS256"] and len(_rows(store)) == 2
    assert all(row["retired_at"] is None for row in rows.values())
    assert rows["RS256"]["public_jwk"]["kty"] == "RSA"
    es256 = rows["ES256"]["public_jwk"]
    assert (es256["kty"], es256["crv"], es256["alg"], es256["use"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
    )
    assert ECKey.import_key(es256).thumbprint() == rows["ES256"]["kid"]
    assert sorted(event["alg"] for event in _audit(store, "key.created")) == ["ES256", "RS256"]


def test_a_database_with_only_an_rsa_key_gains_the_ec_key_once(
    store: Store, box: SecretBox
) -> None:
    """A deployment from before ES256: its RSA key stays and signs on; the next start adds the
    EC key, and the one after adds nothing."""
    with store() as db:
        db.add(signing_keys._new_key(box, "RS256"))
        db.commit()
    [rsa] = _rows(store)
    with pytest.raises(LookupError, match="ES256"):
        in_unit(store, signing_keys.load_material, box)
    in_unit(store, signing_keys.ensure_key, box)
    in_unit(store, signing_keys.ensure_key, box)
    rows = _by_alg(_rows(store))
    assert len(_rows(store)) == 2 and rows["RS256"] == rsa
    assert [event["alg"] for event in _audit(store, "key.created")] == ["ES256"]
    material = in_unit(store, signing_keys.load_material, box)
    assert material.kid == rsa["kid"]
    assert material.active_private_jwks["ES256"]["kid"] == rows["ES256"]["kid"]


def test_instances_starting_together_create_one_key(
    database_url: str, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several instances start at once, each with its own engine: one key, not one each.
    RSA generation is made slow so that every instance is inside `ensure_key` together."""
    real_new_key = signing_keys._new_key

    def slow_new_key(box: SecretBox, alg: str = "RS256") -> SigningKey:
        time.sleep(0.2)
        return real_new_key(box, alg)

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
        made = db.scalars(select(SigningKey.alg)).all()
        assert sorted(made) == ["ES256", "RS256"]  # one each, not one each per instance
    for each in stores:
        each.engine.dispose()


def test_ensure_key_is_idempotent(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    first = _rows(store)
    in_unit(store, signing_keys.ensure_key, box)
    assert _rows(store) == first
    assert len(_audit(store, "key.created")) == 2


def test_private_key_is_stored_encrypted(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    row = _rsa(store)
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
    row = _rsa(store)
    assert RSAKey.import_key(row["public_jwk"]).thumbprint() == row["kid"]


# --- load_material ----------------------------------------------------------------------


def test_load_material_without_a_key_says_so(store: Store, box: SecretBox) -> None:
    with pytest.raises(LookupError):
        in_unit(store, signing_keys.load_material, box)


def test_load_material_returns_the_active_key_and_publishes_it(
    store: Store, box: SecretBox
) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    rows = _by_alg(_rows(store))
    material = in_unit(store, signing_keys.load_material, box)
    assert material.kid == rows["RS256"]["kid"]
    for alg, row in rows.items():
        assert material.active_private_jwks[alg]["kid"] == row["kid"]
        assert material.active_private_jwks[alg]["d"]
    assert sorted(material.published, key=str) == sorted(
        (row["public_jwk"] for row in rows.values()), key=str
    )


def test_token_signed_with_the_active_key_verifies_with_the_published_set(
    store: Store, box: SecretBox
) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    material = in_unit(store, signing_keys.load_material, box)
    public_set = KeySet.import_key_set({"keys": list(material.published)})
    for alg, jwk in material.active_private_jwks.items():
        private = (RSAKey if alg == "RS256" else ECKey).import_key(jwk)
        token = jwt.encode({"alg": alg, "kid": jwk["kid"]}, {"sub": "u1"}, private)
        assert jwt.decode(token, public_set, algorithms=[alg]).claims == {"sub": "u1"}


# --- rotate -----------------------------------------------------------------------------


def test_rotate_makes_a_new_active_key_of_each_algorithm(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    old = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    assert [key.alg for key in new] == ["RS256", "ES256"]
    assert not {key.kid for key in new} & {row["kid"] for row in old}
    material = in_unit(store, signing_keys.load_material, box)
    assert {alg: jwk["kid"] for alg, jwk in material.active_private_jwks.items()} == {
        key.alg: key.kid for key in new
    }
    rows = {row["kid"]: row for row in _rows(store)}
    assert all(rows[row["kid"]]["retired_at"] is not None for row in old)
    assert all(rows[key.kid]["retired_at"] is None for key in new)


def test_old_keys_stay_published_after_rotation(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    old = [row["kid"] for row in _rows(store)]
    new = [key.kid for key in in_unit(store, signing_keys.rotate, box)]
    assert sorted(_published_kids(in_unit(store, signing_keys.load_material, box))) == sorted(
        old + new
    )


def test_old_key_is_unpublished_after_publish_until(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    old = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    for row in old:
        _set_key(store, row["kid"], publish_until=utcnow() - timedelta(seconds=1))
    assert sorted(_published_kids(in_unit(store, signing_keys.load_material, box))) == sorted(
        key.kid for key in new
    )


def test_old_key_is_published_at_least_an_hour(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    old = _rsa(store)
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
    old = _rsa(store)
    before = utcnow()
    in_unit(store, signing_keys.rotate, box)
    retired = next(row for row in _rows(store) if row["kid"] == old["kid"])
    assert timedelta(hours=3) <= retired["publish_until"] - before < timedelta(hours=3, minutes=1)


def test_second_rotation_keeps_the_first_retired_keys_window(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    first = _rsa(store)
    in_unit(store, signing_keys.rotate, box)
    window = next(row for row in _rows(store) if row["kid"] == first["kid"])["publish_until"]
    in_unit(store, signing_keys.rotate, box)
    again = next(row for row in _rows(store) if row["kid"] == first["kid"])
    assert again["publish_until"] == window
    assert len(in_unit(store, signing_keys.load_material, box).published) == 6


def test_rotate_without_a_key_creates_them(store: Store, box: SecretBox) -> None:
    rsa, _ec = in_unit(store, signing_keys.rotate, box)
    assert in_unit(store, signing_keys.load_material, box).kid == rsa.kid


def test_rotate_writes_an_audit_event_per_key(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    new = in_unit(store, signing_keys.rotate, box)
    events = sorted(_audit(store, "key.rotated"), key=lambda event: event["alg"])
    assert events == sorted(
        ({"kid": key.kid, "alg": key.alg} for key in new), key=lambda event: event["alg"]
    )


def test_list_keys_is_newest_first(store: Store, box: SecretBox) -> None:
    in_unit(store, signing_keys.ensure_key, box)
    old = _rows(store)
    new = in_unit(store, signing_keys.rotate, box)
    listed = [key.kid for key in in_unit(store, signing_keys.list_keys)]
    assert set(listed[:2]) == {key.kid for key in new}
    assert set(listed[2:]) == {row["kid"] for row in old}
