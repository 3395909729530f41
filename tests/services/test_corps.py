"""iam/services/corps.py: connected WeCom corporations, their app secrets encrypted at rest."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import text, update
from support.constants import CORP_A, CORP_B
from support.units import in_unit

from iam.db.models import AuditEvent, WeComCorp
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.federation.wecom.connector import WeComConfig
from iam.secretbox import SecretBox
from iam.services import corps

SECRET = "s3cr3t-Of-The-App_0123456789abcdefghijklm"
OAUTH = "https://open.weixin.qq.com/connect/oauth2/authorize"
QR = "https://login.work.weixin.qq.com/wwlogin/sso/login"


def add(store: Store, box: SecretBox, corp_id: str = CORP_A, **options: Any) -> WeComCorp:
    given = {"name": "子公司A", "agent_id": 1000002, "secret": SECRET, **options}
    return in_unit(
        store,
        corps.add_corp,
        box,
        corp_id,
        given.pop("name"),
        given.pop("agent_id"),
        given.pop("secret"),
        **given,
    )


def config(store: Store, box: SecretBox, corp_id: str) -> WeComConfig:
    return in_unit(store, corps.wecom_config, box, corp_id, oauth_url=OAUTH, qr_url=QR)


def listed(store: Store, *, enabled_only: bool = False) -> list[str]:
    return [c.corp_id for c in in_unit(store, corps.list_corps, enabled_only=enabled_only)]


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
    assert event.detail == {"corp_id": CORP_A, "trust_mobile": True, "callback": False}


def test_wecom_config_gives_the_connector_what_it_needs(store: Store, box: SecretBox) -> None:
    add(store, box)
    found = config(store, box, CORP_A)
    assert (found.corp_id, found.name, found.agent_id, found.secret) == (
        CORP_A,
        "子公司A",
        1000002,
        SECRET,
    )
    assert (found.trust_mobile, found.oauth_url, found.qr_url) == (False, OAUTH, QR)


@pytest.mark.parametrize(
    "corp_id", ["wwnosuchcorp", "", "a/b", "x" * 65, CORP_B.upper(), CORP_B + " "]
)
def test_wecom_config_of_an_unknown_corporation_is_not_found(
    store: Store, box: SecretBox, corp_id: str
) -> None:
    add(store, box, CORP_B, name="子公司B")
    with pytest.raises(NotFoundError):
        config(store, box, corp_id)


def test_a_disabled_corporation_is_not_found_nor_listed_as_enabled(
    store: Store, box: SecretBox
) -> None:
    add(store, box)
    add(store, box, CORP_B, name="子公司B")
    with store() as db:
        db.execute(update(WeComCorp).where(WeComCorp.corp_id == CORP_A).values(enabled=False))
        db.commit()
    with pytest.raises(NotFoundError):
        config(store, box, CORP_A)
    assert listed(store) == [CORP_A, CORP_B]
    assert listed(store, enabled_only=True) == [CORP_B]


def test_list_corps_is_oldest_first(store: Store, box: SecretBox) -> None:
    assert listed(store) == []
    for corp_id in ("wwzzz", "wwaaa", "wwmmm"):
        add(store, box, corp_id)
    assert listed(store) == ["wwzzz", "wwaaa", "wwmmm"]


def test_a_corporation_is_connected_once(store: Store, box: SecretBox) -> None:
    add(store, box)
    with pytest.raises(ConflictError, match="already connected"):
        add(store, box, name="again")
    assert [c.name for c in in_unit(store, corps.list_corps)] == ["子公司A"]


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
    assert len(listed(store)) == 1


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


@pytest.mark.parametrize(
    ("field", "options"), BAD_VALUES, ids=[repr(options)[:40] for _, options in BAD_VALUES]
)
def test_bad_values_are_refused_and_nothing_is_stored(
    store: Store, box: SecretBox, field: str, options: dict[str, Any]
) -> None:
    given = dict(options)
    corp_id = given.pop("corp_id", CORP_A)
    with pytest.raises(ValidationError) as refused:
        add(store, box, corp_id, **given)
    assert refused.value.field == field
    assert SECRET not in str(refused.value)
    assert listed(store) == []
    with store() as db:
        assert db.query(AuditEvent).all() == []
