"""iam/services/users.py: core users and their WeCom identity links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from support.units import in_unit

from iam.db.base import Base
from iam.db.models import AuditEvent, IdentityLink, User
from iam.db.store import Store, create_db_engine
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.services import users


@pytest.fixture
def mem_store() -> Iterator[Store]:
    """An in-memory SQLite store, for refusals decided before any database work."""
    engine = create_db_engine("sqlite:///:memory:")
    Base.metadata.create_all(engine)
    yield Store(engine)
    engine.dispose()


def _audit(store: Store, event: str) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [(row.user_id, row.actor, dict(row.detail)) for row in rows]


def _row(store: Store, user_id: str) -> dict[str, Any]:
    with store() as db:
        user = db.get(User, user_id)
        assert user is not None
        return {"name": user.name, "phone": user.phone, "email": user.email, "status": user.status}


def _link_rows(store: Store) -> list[dict[str, Any]]:
    with store() as db:
        links = db.scalars(select(IdentityLink).order_by(IdentityLink.created_at)).all()
        return [
            {
                "id": link.id,
                "user_id": link.user_id,
                "provider": link.provider,
                "provider_user_id": link.provider_user_id,
                "provider_user_key": link.provider_user_key,
                "metadata": dict(link.link_metadata),
                "status": link.status,
            }
            for link in links
        ]


def _ids(objects: Any) -> list[str]:
    return [obj.id for obj in objects]


# --- create_user ------------------------------------------------------------------------


def test_create_user_stores_the_phone_in_e164(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "138 0013 8000")
    assert user.phone == "+8613800138000"
    assert _row(store, user.id) == {
        "name": "Zhang San",
        "phone": "+8613800138000",
        "email": None,
        "status": "active",
    }


def test_create_user_keeps_email_and_trims_name(store: Store) -> None:
    user = in_unit(
        store, users.create_user, "  Li Si ", "+8613900139000", email=" li.si@example.com "
    )
    row = _row(store, user.id)
    assert row["name"] == "Li Si"
    assert row["email"] == "li.si@example.com"


def test_blank_email_is_stored_as_none(store: Store) -> None:
    user = in_unit(store, users.create_user, "Li Si", "13900139000", email="  ")
    assert _row(store, user.id)["email"] is None


def test_user_ids_are_distinct(store: Store) -> None:
    first = in_unit(store, users.create_user, "A", "13800138000")
    second = in_unit(store, users.create_user, "B", "13900139000")
    assert first.id and second.id and first.id != second.id


def test_duplicate_phone_is_a_conflict_in_any_spelling(store: Store) -> None:
    in_unit(store, users.create_user, "Zhang San", "+8613800138000")
    for same_phone in ("13800138000", "+8613800138000", "138-0013-8000"):
        with pytest.raises(ConflictError):
            in_unit(store, users.create_user, "Someone Else", same_phone)
    with store() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "a b@example.com"])
def test_bad_email_is_refused(mem_store: Store, email: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(mem_store, users.create_user, "Zhang San", "13800138000", email=email)
    assert caught.value.field == "email"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_name_is_refused(mem_store: Store, name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(mem_store, users.create_user, name, "13800138000")
    assert caught.value.field == "name"


def test_bad_phone_is_refused_and_nothing_is_stored(store: Store) -> None:
    with pytest.raises(ValidationError) as caught:
        in_unit(store, users.create_user, "Zhang San", "12345")
    assert caught.value.field == "phone"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(User)) == 0


def test_create_user_writes_one_audit_event(store: Store) -> None:
    in_unit(store, users.create_user, "Zhang San", "13800138000")
    rows = _audit(store, "user.created")
    assert len(rows) == 1
    assert rows[0][1] == "cli"


def test_create_user_audit_event_names_the_user(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    assert _audit(store, "user.created")[0][0] == user.id


# --- user_detail / search_users -------------------------------------------------------------


def test_user_detail_returns_the_user_with_their_links(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    other = in_unit(store, users.create_user, "Li Si", "13900139000")
    link_a = in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan_A")
    link_b = in_unit(store, users.link_wecom, user.id, "CORP_B", "zs_b")
    in_unit(store, users.link_wecom, other.id, "CORP_A", "lisi")
    shown = in_unit(store, users.user_detail, user.id)
    assert _ids([shown.user]) == [user.id]
    assert sorted(_ids(shown.links)) == sorted([link_a.id, link_b.id])


def test_user_detail_without_links_has_none(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    assert in_unit(store, users.user_detail, user.id).links == ()


def test_the_detail_of_an_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(store, users.user_detail, "00000000-0000-0000-0000-000000000000")


def test_user_detail_returns_readable_objects(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "ZhangSan", {"position": "Sales"})
    shown = in_unit(store, users.user_detail, user.id)
    assert shown.user.name == "Zhang San"
    assert [link.provider_user_id for link in shown.links] == ["CORP_A/ZhangSan"]


def _listed(store: Store, query: str | None = None) -> list[User]:
    return [row.user for row in in_unit(store, users.search_users, query, limit=100, offset=0)]


def _three_users(store: Store) -> dict[str, str]:
    return {
        "zhang": in_unit(
            store, users.create_user, "Zhang San", "13800138000", "zs@corp-a.example"
        ).id,
        "li": in_unit(store, users.create_user, "Li Si", "13900139000", "lisi@corp-b.example").id,
        "wang": in_unit(store, users.create_user, "Wang Wu", "+14155552671").id,
    }


def test_search_users_without_query_lists_everyone(store: Store) -> None:
    ids = _three_users(store)
    assert sorted(_ids(_listed(store))) == sorted(ids.values())


def test_search_users_filters_by_name_email_or_phone(store: Store) -> None:
    ids = _three_users(store)
    names = {user_id: key for key, user_id in ids.items()}
    queries = ["zhang", "LI SI", "corp-b", "1390013", "+1415", "example", "nobody"]
    found = {query: sorted(names[user.id] for user in _listed(store, query)) for query in queries}
    assert found == {
        "zhang": ["zhang"],
        "LI SI": ["li"],
        "corp-b": ["li"],
        "1390013": ["li"],
        "+1415": ["wang"],
        "example": ["li", "zhang"],
        "nobody": [],
    }


def test_search_users_matches_the_query_literally(store: Store) -> None:
    _three_users(store)
    assert _listed(store, "%") == []
    assert _listed(store, "zhang_san") == []


def test_search_users_respects_the_limit(store: Store) -> None:
    _three_users(store)
    assert len(in_unit(store, users.search_users, None, limit=2, offset=0)) == 2


def test_search_users_returns_readable_objects(store: Store) -> None:
    _three_users(store)
    assert sorted(user.name for user in _listed(store)) == [
        "Li Si",
        "Wang Wu",
        "Zhang San",
    ]


# --- link_wecom -------------------------------------------------------------------------


def test_link_wecom_stores_the_link_and_its_metadata(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    metadata = {"corp_name": "Subsidiary A", "department": ["Sales"], "position": "Manager"}
    link = in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan_A", metadata)
    assert _link_rows(store) == [
        {
            "id": link.id,
            "user_id": user.id,
            "provider": "wecom",
            "provider_user_id": "CORP_A/zhangsan_A",
            "provider_user_key": "CORP_A/zhangsan_a",
            "metadata": metadata,
            "status": "active",
        }
    ]


def test_link_wecom_without_metadata_stores_an_empty_object(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan")
    assert _link_rows(store)[0]["metadata"] == {}


def test_link_keeps_the_userid_spelling_as_given(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    link = in_unit(store, users.link_wecom, user.id, "CORP_A", "ZhangSan")
    assert link.provider_user_id == "CORP_A/ZhangSan"
    assert _link_rows(store)[0]["provider_user_id"] == "CORP_A/ZhangSan"


def test_userid_differing_only_in_case_is_the_same_member(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "ZhangSan")
    for spelling in ("zhangsan", "ZHANGSAN", "ZhangSan"):
        with pytest.raises(ConflictError):
            in_unit(store, users.link_wecom, user.id, "CORP_A", spelling)
    assert [row["provider_user_id"] for row in _link_rows(store)] == ["CORP_A/ZhangSan"]


def test_member_linked_to_one_user_cannot_be_linked_to_another(store: Store) -> None:
    first = in_unit(store, users.create_user, "Zhang San", "13800138000")
    second = in_unit(store, users.create_user, "Li Si", "13900139000")
    in_unit(store, users.link_wecom, first.id, "CORP_A", "ZhangSan")
    with pytest.raises(ConflictError):
        in_unit(store, users.link_wecom, second.id, "CORP_A", "zhangsan")
    assert [row["user_id"] for row in _link_rows(store)] == [first.id]


def test_same_userid_in_another_corp_is_another_member(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan")
    in_unit(store, users.link_wecom, user.id, "CORP_B", "zhangsan")
    assert [row["provider_user_id"] for row in _link_rows(store)] == [
        "CORP_A/zhangsan",
        "CORP_B/zhangsan",
    ]


def test_link_to_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        in_unit(
            store, users.link_wecom, "00000000-0000-0000-0000-000000000000", "CORP_A", "zhangsan"
        )
    assert _link_rows(store) == []


@pytest.mark.parametrize("corp_id", ["", "CORP A", "CORP/A", "x" * 65, "企业"])
def test_bad_corp_id_is_refused(corp_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        users.wecom_subject(corp_id, "zhangsan")
    assert caught.value.field == "corp_id"


@pytest.mark.parametrize("userid", ["", "zhang san", "zhang/san", "x" * 65, "张三"])
def test_bad_userid_is_refused(userid: str) -> None:
    with pytest.raises(ValidationError) as caught:
        users.wecom_subject("CORP_A", userid)
    assert caught.value.field == "userid"


def test_wecom_subject_keeps_spelling_and_lowercases_the_key() -> None:
    assert users.wecom_subject("CORP_A", "Zhang.San@x") == (
        "CORP_A/Zhang.San@x",
        "CORP_A/zhang.san@x",
    )


def test_link_with_bad_userid_stores_nothing(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    with pytest.raises(ValidationError) as caught:
        in_unit(store, users.link_wecom, user.id, "CORP_A", "zhang san")
    assert caught.value.field == "userid"
    assert _link_rows(store) == []


def test_metadata_must_be_an_object(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    with pytest.raises(ValidationError) as caught:
        in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan", ["Sales"])
    assert caught.value.field == "metadata"
    assert _link_rows(store) == []


def test_link_wecom_writes_an_audit_event(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "ZhangSan")
    assert _audit(store, "link.created") == [(user.id, "cli", {"link": "CORP_A/ZhangSan"})]


def test_refused_link_writes_no_audit_event(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    in_unit(store, users.link_wecom, user.id, "CORP_A", "ZhangSan")
    with pytest.raises(ConflictError):
        in_unit(store, users.link_wecom, user.id, "CORP_A", "zhangsan")
    assert len(_audit(store, "link.created")) == 1


def test_find_user_by_phone_uses_e164(store: Store) -> None:
    user = in_unit(store, users.create_user, "Zhang San", "13800138000")
    with store() as db:
        found = users.find_user_by_phone(db, "+8613800138000")
        assert found is not None and found.id == user.id
        assert users.find_user_by_phone(db, "13800138000") is None
