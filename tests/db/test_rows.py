"""iam/db/rows.py: rows read without the ORM become session-less model instances, and a
reused instance is handed out only while its row is exactly the same."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import inspect, select

from iam.db.models import Client, IdentityLink, User
from iam.db.rows import Reused, select_columns, shape, split
from iam.db.store import Store
from iam.services import users

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
    return tuple(values[key] for key in shape(User).keys)


def test_a_shape_names_attributes_not_columns() -> None:
    links = shape(IdentityLink)
    assert "link_metadata" in links.keys and "metadata" not in links.keys
    assert [c.name for c in links.columns][links.keys.index("link_metadata")] == "metadata"
    assert [links.keys[i] for i in links.primary_key] == ["id"]


def test_a_built_instance_has_the_values_and_no_session() -> None:
    user = shape(User).build(user_row())
    assert (user.id, user.name, user.is_active) == ("u1", "张三", True)
    assert inspect(user).transient


def test_the_same_row_gives_the_same_instance() -> None:
    reused: Reused[User] = Reused(User)
    assert reused.get(user_row()) is reused.get(user_row())


def test_a_changed_row_gives_a_new_instance_with_the_change() -> None:
    reused: Reused[User] = Reused(User)
    before = reused.get(user_row())
    after = reused.get(user_row(status="disabled"))
    assert after is not before
    assert not after.is_active and before.is_active


def test_an_outer_join_that_found_no_row_gives_none() -> None:
    reused: Reused[User] = Reused(User)
    assert reused.get_joined((None,) * len(user_row())) is None
    assert reused.get_joined(user_row()) is reused.get(user_row())


def test_past_its_limit_it_starts_over() -> None:
    reused: Reused[User] = Reused(User, limit=2)
    first = reused.get(user_row(id="a"))
    reused.get(user_row(id="b"))
    reused.get(user_row(id="c"))  # the third key: the memo is emptied, then holds "c"
    assert reused.get(user_row(id="a")) is not first


def test_select_columns_and_split_read_two_tables_in_one_row(store: Store) -> None:
    user = users.create_user(store, "李四", "13800138001", None)
    statement = select(*select_columns(shape(User), shape(Client))).join_from(
        User, Client, User.id == user.id
    )
    with store() as db:
        db.add(Client(client_id="c1", name="App", redirect_uris=[], grant_types=[]))
        db.commit()
        row = db.connection().execute(statement).one()
    user_values, client_values = split(row, shape(User), shape(Client))
    assert shape(User).build(user_values).name == "李四"
    assert shape(Client).build(client_values).client_id == "c1"
