"""iam/services/corps.py: connected WeCom corporations, their app secrets encrypted at rest."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import text, update
from support.constants import CORP_A, CORP_B

from iam.db.models import AuditEvent, WeComCorp
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.secretbox import SecretBox
from iam.services import corps

SECRET = "s3cr3t-Of-The-App_0123456789abcdefghijklm"
OAUTH = "https://open.weixin.qq.com/connect/oauth2/authorize"
QR = "https://login.work.weixin.qq.com/wwlogin/sso/login"


def add(store: Store, box: SecretBox, corp_id: str = CORP_A, **options: Any) -> WeComCorp:
    given = {"name": "子公司A", "agent_id": 1000002, "secret": SECRET, **options}
    return corps.add_corp(
        store, box, corp_id, given.pop("name"), given.pop("agent_id"), given.pop("secret"), **given
    )


def test_add_corp_keeps_the_secret_encrypted(store: Store, box: SecretBox) -> None:
    corp = add(store, box, trust_mobile=True)
    assert (corp.corp_id, corp.name, corp.agent_id, corp.trust_mobile, corp.enabled) == (
        CORP_A,
        "子公司A",
        1000002,
        True,
        True,
    )
    with store.engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM wecom_corps")).one()
    assert all(SECRET not in str(value) for value in row)
    assert box.decrypt(row.secret_encrypted) == SECRET
    with store() as db:
        event = db.query(AuditEvent).one()
    assert (event.event, event.actor) == ("corp.added", "cli")
    assert event.detail == {"corp_id": CORP_A, "trust_mobile": True}


def test_wecom_config_gives_the_connector_what_it_needs(store: Store, box: SecretBox) -> None:
    add(store, box)
    config = corps.wecom_config(store, box, CORP_A, oauth_url=OAUTH, qr_url=QR)
    assert (config.corp_id, config.name, config.agent_id, config.secret) == (
        CORP_A,
        "子公司A",
        1000002,
        SECRET,
    )
    assert (config.trust_mobile, config.oauth_url, config.qr_url) == (False, OAUTH, QR)


def test_wecom_config_of_an_unknown_corporation_is_not_found(store: Store, box: SecretBox) -> None:
    add(store, box, CORP_B, name="子公司B")
    for corp_id in ["wwnosuchcorp", "", "a/b", "x" * 65, CORP_B.upper(), CORP_B + " "]:
        with pytest.raises(NotFoundError):
            corps.wecom_config(store, box, corp_id, oauth_url=OAUTH, qr_url=QR)


def test_a_disabled_corporation_is_not_found_nor_listed_as_enabled(
    store: Store, box: SecretBox
) -> None:
    add(store, box)
    add(store, box, CORP_B, name="子公司B")
    with store() as db:
        db.execute(update(WeComCorp).where(WeComCorp.corp_id == CORP_A).values(enabled=False))
        db.commit()
    with pytest.raises(NotFoundError):
        corps.wecom_config(store, box, CORP_A, oauth_url=OAUTH, qr_url=QR)
    assert [c.corp_id for c in corps.list_corps(store)] == [CORP_A, CORP_B]
    assert [c.corp_id for c in corps.list_corps(store, enabled_only=True)] == [CORP_B]


def test_list_corps_is_oldest_first(store: Store, box: SecretBox) -> None:
    assert corps.list_corps(store) == []
    for corp_id in ("wwzzz", "wwaaa", "wwmmm"):
        add(store, box, corp_id)
    assert [c.corp_id for c in corps.list_corps(store)] == ["wwzzz", "wwaaa", "wwmmm"]


def test_a_corporation_is_connected_once(store: Store, box: SecretBox) -> None:
    add(store, box)
    with pytest.raises(ConflictError, match="already connected"):
        add(store, box, name="again")
    assert [c.name for c in corps.list_corps(store)] == ["子公司A"]


def test_connecting_one_corporation_from_four_threads_at_once(store: Store, box: SecretBox) -> None:
    barrier = threading.Barrier(4)
    results: list[Any] = [None] * 4

    def connect(index: int) -> None:
        barrier.wait()
        try:
            results[index] = add(store, box, name=f"try {index}")
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            results[index] = error

    threads = [threading.Thread(target=connect, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    won = [r for r in results if isinstance(r, WeComCorp)]
    lost = [r for r in results if not isinstance(r, WeComCorp)]
    assert len(won) == 1
    assert all(isinstance(r, ConflictError) for r in lost), lost
    assert len(corps.list_corps(store)) == 1


#: (the field refused, the values given instead of good ones)
BAD_VALUES = [
    ("corp_id", {"corp_id": ""}),
    ("corp_id", {"corp_id": "ww corp"}),
    ("corp_id", {"corp_id": "ww/corp"}),
    ("corp_id", {"corp_id": "x" * 65}),
    ("corp_id", {"corp_id": "wwé"}),
    ("name", {"name": ""}),
    ("name", {"name": "   "}),
    ("name", {"name": "n" * 201}),
    ("agent_id", {"agent_id": 0}),
    ("agent_id", {"agent_id": -1000002}),
    ("agent_id", {"agent_id": 2**63}),
    ("agent_id", {"agent_id": "1000002"}),
    ("secret", {"secret": ""}),
    ("secret", {"secret": " padded "}),
    ("secret", {"secret": "s" * 257}),
]


def test_bad_values_are_refused_and_nothing_is_stored(store: Store, box: SecretBox) -> None:
    for field, options in BAD_VALUES:
        given = dict(options)
        corp_id = given.pop("corp_id", CORP_A)
        with pytest.raises(ValidationError) as refused:
            add(store, box, corp_id, **given)
        assert refused.value.field == field, options
        assert SECRET not in str(refused.value)
    assert corps.list_corps(store) == []
    with store() as db:
        assert db.query(AuditEvent).all() == []
