"""iam/services/corps.py, a corporation app's callback settings ("接收事件服务器"): the Token and
the EncodingAESKey, checked, kept encrypted like the secret, audited without their values, and
handed decrypted to the event receiver (`callback_settings`)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, text
from support.constants import CORP_A, CORP_B, TEST_SECRET
from support.units import in_unit

from iam.db.models import AuditEvent, WeComCorp
from iam.db.store import Store
from iam.errors import NotFoundError, ValidationError
from iam.secretbox import SecretBox, SecretBoxError
from iam.services import corps

SECRET = "s3cr3t-Of-The-App_0123456789abcdefghijklm"
TOKEN = "QDG6eK2xTuVw9Nf"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
NEW_TOKEN = "ZyX987wvu"
NEW_AES_KEY = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456"


def add(store: Store, box: SecretBox, corp_id: str = CORP_A, **options: Any) -> WeComCorp:
    return in_unit(store, corps.add_corp, box, corp_id, "子公司A", 1000002, SECRET, **options)


def update(store: Store, box: SecretBox, corp_id: str = CORP_A, **changes: Any) -> WeComCorp:
    return in_unit(store, corps.update_corp, box, corp_id, actor="admin:root", **changes)


def settings(store: Store, box: SecretBox, corp_id: str = CORP_A) -> corps.CallbackSettings | None:
    return in_unit(store, corps.callback_settings, box, corp_id)


def rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        found = connection.execute(text("SELECT * FROM wecom_corps ORDER BY corp_id")).all()
    return [dict(row._mapping) for row in found]


def trail(store: Store) -> list[AuditEvent]:
    with store() as db:
        return list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def no_plaintext(store: Store, *values: str) -> None:
    """No column of any corporation, and no audit row, holds any of these values."""
    stored = [str(value) for row in rows(store) for value in row.values()]
    audited = [f"{event.detail} {event.actor}" for event in trail(store)]
    for value in values:
        assert all(value not in text for text in stored + audited), value


# --- the patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", [corps.CALLBACK_TOKEN_PATTERN, corps.AES_KEY_PATTERN], ids=["token", "aes_key"]
)
def test_the_patterns_read_the_same_in_python_and_in_json_schema(pattern: str) -> None:
    assert pattern.startswith("^") and pattern.endswith("$")
    assert not re.search(r"\\[sSdDwW]", pattern), pattern
    re.compile(pattern)


def test_the_patterns_are_wecoms_rules() -> None:
    assert corps.CALLBACK_TOKEN_PATTERN == "^[A-Za-z0-9]{1,32}$"
    assert corps.AES_KEY_PATTERN == "^[A-Za-z0-9]{43}$"


# --- add_corp -----------------------------------------------------------------------------------


def test_add_corp_with_both_keeps_them_encrypted(store: Store, box: SecretBox) -> None:
    corp = add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    assert corps.has_callback(corp)
    [row] = rows(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN
    assert box.decrypt(row["encoding_aes_key_encrypted"]) == AES_KEY
    no_plaintext(store, TOKEN, AES_KEY, SECRET)


def test_add_corp_with_both_audits_that_they_are_set_without_them(
    store: Store, box: SecretBox
) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    [event] = trail(store)
    assert event.event == "corp.added"
    assert event.detail == {"corp_id": CORP_A, "trust_mobile": False, "callback": True}


def test_add_corp_without_them_stores_none(store: Store, box: SecretBox) -> None:
    corp = add(store, box)
    assert not corps.has_callback(corp)
    [row] = rows(store)
    assert (row["callback_token_encrypted"], row["encoding_aes_key_encrypted"]) == (None, None)
    assert trail(store)[0].detail["callback"] is False


def test_each_value_is_encrypted_on_its_own(store: Store, box: SecretBox) -> None:
    """The same value twice is two different ciphertexts (no value can be told by its column)."""
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    add(store, box, CORP_B, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    first, second = rows(store)
    assert first["callback_token_encrypted"] != second["callback_token_encrypted"]
    assert first["encoding_aes_key_encrypted"] != second["encoding_aes_key_encrypted"]


#: (the field refused, the callback options given to add_corp)
BAD_ADDS: list[tuple[str, dict[str, Any]]] = [
    ("encoding_aes_key", {"callback_token": TOKEN}),
    ("callback_token", {"encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": "", "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": "t" * 33, "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": "tok-en", "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": "tok en", "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": "токен", "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": TOKEN + "\n", "encoding_aes_key": AES_KEY}),
    ("callback_token", {"callback_token": 12345, "encoding_aes_key": AES_KEY}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1]}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY + "A"}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1] + "="}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1] + "+"}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY[:-1] + "/"}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": AES_KEY + "\n"}),
    ("encoding_aes_key", {"callback_token": TOKEN, "encoding_aes_key": "٣" * 43}),
]


@pytest.mark.parametrize(
    ("field", "options"), BAD_ADDS, ids=[f"{f}-{repr(o)[:50]}" for f, o in BAD_ADDS]
)
def test_bad_callback_settings_on_add_are_refused_naming_the_field(
    store: Store, box: SecretBox, field: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as refused:
        add(store, box, **options)
    assert refused.value.field == field
    assert TOKEN not in str(refused.value) and AES_KEY not in str(refused.value)
    assert rows(store) == []
    assert trail(store) == []


# --- update_corp --------------------------------------------------------------------------------


def test_update_sets_the_token_alone(store: Store, box: SecretBox) -> None:
    add(store, box)
    corp = update(store, box, callback_token=TOKEN)
    assert not corps.has_callback(corp)  # the key is still missing
    [row] = rows(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN
    assert row["encoding_aes_key_encrypted"] is None
    [_, event] = trail(store)
    assert event.detail == {
        "corp_id": CORP_A,
        "changed": ["callback_token"],
        "enabled": True,
        "trust_mobile": False,
        "callback": False,
    }
    no_plaintext(store, TOKEN)


def test_update_sets_the_aes_key_alone(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    corp = update(store, box, encoding_aes_key=NEW_AES_KEY)
    assert corps.has_callback(corp)
    [row] = rows(store)
    assert box.decrypt(row["callback_token_encrypted"]) == TOKEN  # kept
    assert box.decrypt(row["encoding_aes_key_encrypted"]) == NEW_AES_KEY
    [_, event] = trail(store)
    assert (event.detail["changed"], event.detail["callback"]) == (["encoding_aes_key"], True)
    no_plaintext(store, TOKEN, AES_KEY, NEW_AES_KEY)


def test_update_completes_the_settings_one_at_a_time(store: Store, box: SecretBox) -> None:
    add(store, box)
    update(store, box, callback_token=TOKEN)
    assert settings(store, box) is None
    update(store, box, encoding_aes_key=AES_KEY)
    assert settings(store, box) == corps.CallbackSettings(CORP_A, TOKEN, AES_KEY)
    assert [e.detail["callback"] for e in trail(store)] == [False, False, True]


def test_update_replaces_both_and_the_secret_at_once(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    update(
        store,
        box,
        name="Renamed",
        secret="n3w-secret",
        callback_token=NEW_TOKEN,
        encoding_aes_key=NEW_AES_KEY,
    )
    assert settings(store, box) == corps.CallbackSettings(CORP_A, NEW_TOKEN, NEW_AES_KEY)
    [_, event] = trail(store)
    assert event.detail["changed"] == ["name", "secret", "callback_token", "encoding_aes_key"]
    no_plaintext(store, TOKEN, AES_KEY, NEW_TOKEN, NEW_AES_KEY, "n3w-secret")


#: (the field refused, the change asked for)
BAD_UPDATES: list[tuple[str, dict[str, Any]]] = [
    ("callback_token", {"callback_token": ""}),
    ("callback_token", {"callback_token": "x" * 33}),
    ("callback_token", {"callback_token": "with_underscore"}),
    ("encoding_aes_key", {"encoding_aes_key": "short"}),
    ("encoding_aes_key", {"encoding_aes_key": " " + AES_KEY[1:]}),
    # a good value beside a bad one is not stored either
    ("encoding_aes_key", {"callback_token": NEW_TOKEN, "encoding_aes_key": "bad"}),
    ("callback_token", {"callback_token": "bad!", "encoding_aes_key": NEW_AES_KEY}),
    ("callback_token", {"name": "Fine name", "callback_token": "bad!"}),
]


@pytest.mark.parametrize(
    ("field", "changes"), BAD_UPDATES, ids=[f"{f}-{repr(c)[:50]}" for f, c in BAD_UPDATES]
)
def test_bad_callback_changes_are_refused_and_change_nothing(
    store: Store, box: SecretBox, field: str, changes: dict[str, Any]
) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    before = rows(store)
    with pytest.raises(ValidationError) as refused:
        update(store, box, **changes)
    assert refused.value.field == field
    assert rows(store) == before
    assert [e.event for e in trail(store)] == ["corp.added"]


# --- callback_settings --------------------------------------------------------------------------


def test_callback_settings_are_the_decrypted_values(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    found = settings(store, box)
    assert found == corps.CallbackSettings(corp_id=CORP_A, token=TOKEN, encoding_aes_key=AES_KEY)


def test_callback_settings_never_show_in_a_repr(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    shown = repr(settings(store, box))
    assert CORP_A in shown
    assert TOKEN not in shown and AES_KEY not in shown


def test_callback_settings_of_a_corporation_without_them_are_none(
    store: Store, box: SecretBox
) -> None:
    add(store, box)
    assert settings(store, box) is None


def test_callback_settings_with_only_the_aes_key_are_none(store: Store, box: SecretBox) -> None:
    add(store, box)
    update(store, box, encoding_aes_key=AES_KEY)
    assert settings(store, box) is None


def test_callback_settings_of_a_disabled_corporation_are_none(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    update(store, box, enabled=False)
    assert settings(store, box) is None
    update(store, box, enabled=True)
    assert settings(store, box) is not None


@pytest.mark.parametrize("corp_id", ["wwnosuchcorp", "", "a/b", CORP_A.upper(), CORP_A + "\n"])
def test_callback_settings_of_an_unknown_corporation_are_none(
    store: Store, box: SecretBox, corp_id: str
) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    assert settings(store, box, corp_id) is None


def test_callback_settings_are_per_corporation(store: Store, box: SecretBox) -> None:
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    add(store, box, CORP_B, callback_token=NEW_TOKEN, encoding_aes_key=NEW_AES_KEY)
    assert settings(store, box, CORP_B) == corps.CallbackSettings(CORP_B, NEW_TOKEN, NEW_AES_KEY)


def test_callback_settings_sealed_with_another_key_raise(store: Store, box: SecretBox) -> None:
    """IAM_SECRET_KEY changed since they were stored: an error, not settings made up."""
    add(store, box, callback_token=TOKEN, encoding_aes_key=AES_KEY)
    with pytest.raises(SecretBoxError):
        settings(store, SecretBox(TEST_SECRET + "-changed"))


def test_updating_an_unknown_corporations_callback_is_not_found(
    store: Store, box: SecretBox
) -> None:
    with pytest.raises(NotFoundError):
        update(store, box, "wwnosuchcorp", callback_token=TOKEN)
