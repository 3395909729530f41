"""Reading the hot path's rows without the ORM's loading machinery.

A plain SELECT of a model's columns costs a fraction of an ORM load (no identity map, no
loading context, no per-row state); `Shape.build` turns its values into a model instance that
belongs to no session. Such an instance is for reading: change it and nothing is written.

Clients and users are read on every protocol request and change rarely: `Reused` keeps the
instance built from a row and hands it out again while the row read is the same. The row is
still read each time, so a change (a rotated secret, a disabled user) is seen at once; only the
building of the object is saved. Shared instances must never be modified.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, inspect

from iam.db.models import Client, User

M = TypeVar("M")


@dataclass(frozen=True)
class Shape(Generic[M]):
    """A model's mapped columns in table order, with the attribute name of each."""

    model: type[M]
    keys: tuple[str, ...]
    columns: tuple[Column[Any], ...]
    primary_key: tuple[int, ...]  # positions of the primary key's columns

    def build(self, values: Sequence[Any]) -> M:
        """A new, session-less instance with exactly these values."""
        return self.model(**dict(zip(self.keys, values, strict=True)))

    def key_of(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[i] for i in self.primary_key)


def shape(model: type[M]) -> Shape[M]:
    """The model's shape, worked out once per model."""
    # The cache takes Hashable arguments: mypy sees a plain `type` as one, not a type[M].
    model_class: type = model
    return _shape(model_class)


@cache
def _shape(model: type[Any]) -> Shape[Any]:
    mapper = inspect(model)
    by_column = {attr.columns[0]: attr.key for attr in mapper.column_attrs}
    columns = tuple(mapper.local_table.columns)
    return Shape(
        model=model,
        keys=tuple(by_column[column] for column in columns),
        columns=columns,
        primary_key=tuple(i for i, column in enumerate(columns) if column.primary_key),
    )


class Reused(Generic[M]):
    """Instances built from rows, given out again while their row is unchanged (see above).
    Bounded: past `limit` distinct keys it starts over."""

    def __init__(self, model: type[M], limit: int = 4096) -> None:
        self.shape = shape(model)
        self._limit = limit
        self._built: dict[tuple[Any, ...], tuple[tuple[Any, ...], M]] = {}
        self._lock = threading.Lock()

    def get(self, values: Sequence[Any]) -> M:
        row = tuple(values)
        key = self.shape.key_of(row)
        known = self._built.get(key)
        if known is not None and known[0] == row:
            return known[1]
        instance = self.shape.build(row)
        with self._lock:
            if len(self._built) >= self._limit:
                self._built.clear()
            self._built[key] = (row, instance)
        return instance

    def get_joined(self, values: Sequence[Any]) -> M | None:
        """`get` for the values of an outer join: None when the join found no row."""
        if all(values[i] is None for i in self.shape.primary_key):
            return None
        return self.get(values)


#: The process's clients and users, reused while their rows are unchanged.
CLIENTS: Reused[Client] = Reused(Client)
USERS: Reused[User] = Reused(User)


def select_columns(*shapes: Shape[Any]) -> list[Column[Any]]:
    """The columns of each shape, in order: one SELECT that `split` cuts back apart."""
    return [column for each in shapes for column in each.columns]


def split(values: Sequence[Any], *shapes: Shape[Any]) -> list[Sequence[Any]]:
    """A row of `select_columns(*shapes)` cut into each shape's values."""
    parts, start = [], 0
    for each in shapes:
        parts.append(values[start : start + len(each.columns)])
        start += len(each.columns)
    return parts
