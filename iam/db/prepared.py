"""The hot path's statements, compiled once per dialect by SQLAlchemy and run on the driver's
own cursor, in the transaction of the caller's connection.

`Connection.execute` costs about 65 µs a statement on SQLite where the driver alone takes 13 µs
for the same SQL (issue #17): each call looks the compiled form up in a cache, builds an
execution context, runs the engine's events and wraps the cursor in a Result. The protocol's
dozen statements are fixed, so this module does that work once per statement and dialect (the
SQL text, the order of its parameters, the column types' converters, the INSERT's Python-side
defaults) and each call only converts the values, runs the cursor and converts the row back.

What this gives up, on purpose: engine events (`before_cursor_execute` and the like) do not see
these statements, and results are plain tuples. What it keeps: the SQL is SQLAlchemy's own
(`tests/db/test_query_plans.py` checks its plans), values go through the same type converters
(a DateTime is stored as SQLAlchemy stores it, a JSON column as its JSON), the connection's
transaction is the caller's (begun here if it was not yet, so the caller's commit commits it),
and a driver error is raised as SQLAlchemy's (`IntegrityError`, ...), invalidating the
connection when it was lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """One statement as one dialect runs it."""

    sql: str
    #: Each parameter's name and converter (None: passed as is), in the SQL's order.
    binds: tuple[tuple[str, Converter | None], ...]
    #: Values the statement fixes itself (a LIMIT's), and an INSERT's Python-side defaults
    #: (each a function called for each row that leaves its column out).
    fixed: Mapping[str, Any]
    defaults: tuple[tuple[str, Callable[[], Any]], ...]
    #: The converter of each result column that has one, by position.
    results: tuple[tuple[int, Converter], ...]
    positional: bool

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.defaults:
            values = dict(values)
            for name, default in self.defaults:
                if name not in values:
                    values[name] = default()
        converted = []
        for name, convert in self.binds:
            value = values[name] if name in values else self.fixed[name]
            converted.append((name, value if convert is None else convert(value)))
        if self.positional:
            return tuple(value for _, value in converted)
        return dict(converted)

    def row(self, found: Sequence[Any]) -> tuple[Any, ...]:
        if not self.results:
            return tuple(found)
        row = list(found)
        for position, convert in self.results:
            row[position] = convert(row[position])
        return tuple(row)


_compiled: dict[tuple[int, type, tuple[str, ...]], tuple[ClauseElement, _Compiled]] = {}
_lock = threading.Lock()


def _compile(statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    """What SQLAlchemy would send for `statement` with parameters named `keys` (an INSERT's
    columns; a SELECT's or UPDATE's names are its own)."""
    is_insert = isinstance(statement, Insert)
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) if is_insert else None)
    assert isinstance(compiled, SQLCompiler)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise NotImplementedError("statements rendered at execution time are not supported")
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    names = list(compiled.positiontup or []) if compiled.positional else list(by_name)
    binds = tuple(
        (name, by_name[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
    )
    fixed = {
        name: bind.effective_value
        for name, bind in by_name.items()
        if not bind.required and name not in keys
    }
    defaults = []
    for column in compiled.insert_prefetch:
        default = column.default
        if default is None or not (default.is_scalar or default.is_callable):
            raise NotImplementedError(f"the default of {column} is not a Python value")
        defaults.append((column.key, _called_without_context(default)))
        fixed.pop(column.key, None)
    if compiled.update_prefetch:
        raise NotImplementedError("onupdate defaults are not applied here: set them explicitly")
    selected = () if is_insert else getattr(statement, "selected_columns", ())
    results = []
    for position, column in enumerate(selected):
        convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if convert is not None:
            results.append((position, convert))
    return _Compiled(
        sql=compiled.string,
        binds=binds,
        fixed=fixed,
        defaults=tuple(defaults),
        results=tuple(results),
        positional=compiled.positional,
    )


def _called_without_context(default: Any) -> Callable[[], Any]:
    """A column default as a function of nothing: SQLAlchemy wraps a callable one to take the
    execution context (which ours ignore); a scalar one is its value."""
    value = default.arg
    if default.is_callable:
        return lambda: value(None)
    return lambda: value


def _prepared(connection: Connection, statement: ClauseElement, keys: tuple[str, ...]) -> _Compiled:
    dialect = connection.dialect
    key = (id(statement), type(dialect), keys)
    known = _compiled.get(key)
    if known is not None:
        return known[1]
    made = _compile(statement, dialect, keys)
    with _lock:  # the statement is kept with it: its id stays its own
        _compiled[key] = (statement, made)
    return made


def _run(connection: Connection, prepared: _Compiled, parameters: Any) -> Any:
    """The driver's cursor after running the statement, in the connection's transaction."""
    if not connection.in_transaction():
        connection.begin()  # the caller's commit (or the unit's) ends it
    proxied = connection.connection
    cursor = proxied.cursor()
    try:
        cursor.execute(prepared.sql, parameters)
    except Exception as error:
        dialect = connection.dialect
        if not isinstance(error, dialect.loaded_dbapi.Error):
            raise
        lost = dialect.is_disconnect(error, proxied.dbapi_connection, cursor)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(
            prepared.sql,
            parameters,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
    return cursor


def first(
    connection: Connection,
    statement: ClauseElement,
    values: Mapping[str, Any],
    *,
    convert: bool = True,
) -> tuple[Any, ...] | None:
    """The first row `statement` finds, its values converted as SQLAlchemy converts them (or,
    with `convert=False`, as the driver gave them: for a caller that converts only when it
    must, `iam.db.fastpath.Shape`)."""
    prepared = _prepared(connection, statement, ())
    cursor = _run(connection, prepared, prepared.parameters(values))
    try:
        found = cursor.fetchone()
    finally:
        cursor.close()
    if found is None:
        return None
    return prepared.row(found) if convert else tuple(found)


def change(connection: Connection, statement: ClauseElement, values: Mapping[str, Any]) -> int:
    """Run an INSERT, UPDATE or DELETE; the number of rows it matched."""
    keys = tuple(values) if isinstance(statement, Insert) else ()
    prepared = _prepared(connection, statement, keys)
    cursor = _run(connection, prepared, prepared.parameters(values))
    try:
        count: int = cursor.rowcount
    finally:
        cursor.close()
    return count
