"""The hot path's data access: every statement the protocol requests run, and the code that turns
their rows into objects, without the ORM.

The protocol requests of every sign-in (authorize, token, userinfo, the token checks of revoke
and introspect) read and write with the statements below, built once at import and run on the
connection of the request's unit of work (`iam.db.unit.current_connection()`). A plain SELECT of
a model's columns costs a fraction of an ORM load (no identity map, no loading context, no
per-row state), and a plain INSERT a fraction of the ORM's flush. Each statement is held on an
index by `tests/db/test_query_plans.py`. They run through `first` and `change`
(`iam.db.prepared`: compiled once per dialect, run on the driver's cursor), not
`Connection.execute`.

What the readers hand out:

- **Frozen views** of the rows read on every request and changed rarely: `ClientView` (what
  Authlib asks of a client, by the same rules as the model: `iam.db.models.ClientRules`) and
  `UserView` (`UserRules`). They cannot be changed (frozen dataclasses, lists as tuples), so
  `Reused` can hand the view built from a row out again, to any request, while the row read is
  the same: the row is still read each time, so a change (a rotated secret, a disabled user) is
  seen at once; only the building of the object is saved.
- **Frozen records** (`Shape.build`: `CodeRecord`, `AccessTokenRecord`, `SessionRecord`) of the
  rows a single request owns: an authorization code, an access token's record, an SSO session.
  They are built for that request and never shared. (Plain dataclasses, not ORM instances: one
  costs a few microseconds to build where a session-less model instance cost 23, issue #17.)

Rows are read as the driver gives them and converted here, by each column's type (`Shape`):
`Reused` compares a client's or user's row before converting it, so an unchanged row costs no
JSON parsing at all.

Code that must change a client or a user loads it through the ORM where it writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, Connection, bindparam, insert, inspect, select, update
from sqlalchemy.engine import Dialect

from iam.db.models import (
    AccessToken,
    AuditEvent,
    AuthorizationCode,
    AuthorizationCodeRules,
    Client,
    ClientRules,
    RefreshToken,
    SsoSession,
    TokenRules,
    User,
    UserRules,
)
from iam.db.prepared import change as change
from iam.db.prepared import first as first

R = TypeVar("R")
V = TypeVar("V")


# --- rows to objects ---

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Shape(Generic[R]):
    """A table's columns in table order, the attribute name of each, and the record class a row
    of it becomes (its fields in the same order)."""

    model: type[Any]
    record: type[R]
    keys: tuple[str, ...]
    columns: tuple[Column[Any], ...]
    primary_key: tuple[int, ...]  # positions of the primary key's columns

    def converters(self, dialect: Dialect) -> tuple[tuple[int, Converter], ...]:
        """The column types' result converters on `dialect` (JSON text, SQLite's dates, ...),
        by position: worked out once per dialect."""
        key = (self.model, type(dialect))
        known = _CONVERTERS.get(key)
        if known is None:
            known = tuple(
                (position, convert)
                for position, column in enumerate(self.columns)
                if (convert := column.type.dialect_impl(dialect).result_processor(dialect, None))
            )
            _CONVERTERS[key] = known
        return known

    def convert(self, values: Sequence[Any], dialect: Dialect) -> list[Any]:
        """A row as the driver gave it, as SQLAlchemy would give it."""
        row = list(values)
        for position, convert in self.converters(dialect):
            row[position] = convert(row[position])
        return row

    def build(self, values: Sequence[Any], dialect: Dialect) -> R:
        """A new record of these driver values (for one request's use)."""
        return self.record(*self.convert(values, dialect))

    def key_of(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[i] for i in self.primary_key)


_CONVERTERS: dict[tuple[type, type], tuple[tuple[int, Converter], ...]] = {}


def shape(model: type[Any], record: type[R]) -> Shape[R]:
    """The shape of `model`'s table as `record`s, worked out once."""
    # The cache takes Hashable arguments: mypy sees a plain `type` as one, not a type[R].
    model_class: type = model
    record_class: type = record
    return _shape(model_class, record_class)


@cache
def _shape(model: type[Any], record: type[Any]) -> Shape[Any]:
    mapper = inspect(model)
    by_column = {attr.columns[0]: attr.key for attr in mapper.column_attrs}
    # A deferred column is left out, as the ORM leaves it out of its loads: the hot path never
    # reads `users.search_text`, the admin search's.
    deferred = {attr.columns[0] for attr in mapper.column_attrs if attr.deferred}
    columns = tuple(column for column in mapper.local_table.columns if column not in deferred)
    keys = tuple(by_column[column] for column in columns)
    if tuple(field.name for field in fields(record)) != keys:
        raise TypeError(f"{record.__name__}'s fields are not {model.__name__}'s columns in order")
    return Shape(
        model=model,
        record=record,
        keys=keys,
        columns=columns,
        primary_key=tuple(i for i, column in enumerate(columns) if column.primary_key),
    )


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


@dataclass(frozen=True)
class ClientView(ClientRules):
    """A client as the hot path reads it: every column of `clients`, frozen. Authlib's client
    (`ClientMixin`) by the model's own rules (`ClientRules`)."""

    client_id: str
    name: str
    is_public: bool
    is_admin: bool
    secret_hash: str | None
    previous_secret_hash: str | None
    secret_rotated_at: datetime | None
    secret_encrypted: str | None
    previous_secret_encrypted: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    allowed_scopes: str
    context_policy: str
    context_claim: str
    access_token_ttl: int
    id_token_ttl: int
    refresh_token_ttl: int
    initiate_login_uri: str | None
    backchannel_logout_uri: str | None
    token_endpoint_auth_method: str
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    allowed_origins: tuple[str, ...]
    access_token_signing_alg: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UserView(UserRules):
    """A user as the hot path reads it: every column of `users` but the deferred search text,
    frozen."""

    id: str
    name: str
    email: str | None
    phone: str | None
    phone_verified_at: datetime | None
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CodeRecord(AuthorizationCodeRules):
    """An authorization code as the token request reads it: every column of
    `authorization_codes`. Authlib's code by the model's own rules (`AuthorizationCodeRules`)."""

    id: str
    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str | None
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    sid: str | None
    auth_time: datetime
    amr: list[str]
    context_link_id: str | None
    issued_at: datetime
    expires_at: datetime
    consumed_at: datetime | None


@dataclass(frozen=True)
class AccessTokenRecord(TokenRules):
    """A presented access token's record: every column of `access_tokens`. Authlib's token by
    the models' own rules (`TokenRules`)."""

    jti: str
    client_id: str
    user_id: str | None
    family_id: str | None
    sid: str | None
    scope: str
    context_link_id: str | None
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class SessionRecord:
    """A browser's SSO session as an authorization reads it: every column of `sso_sessions`."""

    id: str
    token_hash: str
    user_id: str
    amr: list[str]
    auth_time: datetime
    context_link_id: str | None
    context_set_at: datetime | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class Reused(Generic[V]):
    """Frozen views built from rows, given out again while their row is unchanged (see above).
    A row is compared as the driver gives it, before any conversion: an unchanged row costs
    neither its JSON parsing nor its dates'. Bounded: past `limit` distinct keys it starts
    over."""

    def __init__(self, model: type[Any], view: type[V], limit: int = 4096) -> None:
        self.shape = shape(model, view)
        self._limit = limit
        self._built: dict[tuple[Any, ...], tuple[tuple[Any, ...], V]] = {}
        self._lock = threading.Lock()

    def build(self, values: Sequence[Any], dialect: Dialect) -> V:
        """A new view of these driver values (JSON lists become tuples)."""
        return self.shape.record(*map(_frozen, self.shape.convert(values, dialect)))

    def get(self, values: Sequence[Any], dialect: Dialect) -> V:
        row = tuple(values)
        key = (type(dialect), *self.shape.key_of(row))
        known = self._built.get(key)
        if known is not None and known[0] == row:
            return known[1]
        view = self.build(row, dialect)
        with self._lock:
            if len(self._built) >= self._limit:
                self._built.clear()
            self._built[key] = (row, view)
        return view

    def get_joined(self, values: Sequence[Any], dialect: Dialect) -> V | None:
        """`get` for the values of an outer join: None when the join found no row."""
        if all(values[i] is None for i in self.shape.primary_key):
            return None
        return self.get(values, dialect)


#: The process's client and user views, reused while their rows are unchanged.
CLIENTS: Reused[ClientView] = Reused(Client, ClientView)
USERS: Reused[UserView] = Reused(User, UserView)

#: The rows one request owns, built fresh for it.
CODE = shape(AuthorizationCode, CodeRecord)
ACCESS_TOKEN = shape(AccessToken, AccessTokenRecord)
SSO_SESSION = shape(SsoSession, SessionRecord)


# --- the statements ---

_clients, _users = Client.__table__, User.__table__
_codes, _access_tokens = AuthorizationCode.__table__, AccessToken.__table__
_refresh_tokens, _sessions = RefreshToken.__table__, SsoSession.__table__

CLIENT_BY_ID = select(*CLIENTS.shape.columns).where(_clients.c.client_id == bindparam("client_id"))
USER_BY_ID = select(*USERS.shape.columns).where(_users.c.id == bindparam("user_id"))

INSERT_CODE = insert(_codes)
#: A presented code with its user (one statement, not two).
CODE_AND_USER = (
    select(*select_columns(CODE, USERS.shape))
    .outerjoin_from(_codes, _users, _users.c.id == _codes.c.user_id)
    .where(_codes.c.code_hash == bindparam("code_hash"))
)
#: Consume, don't delete: a replay must still find the code to revoke its tokens.
CONSUME_CODE = (
    update(_codes)
    .where(_codes.c.id == bindparam("code_id"), _codes.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("now"))
)
#: The nonce check of every authorization request.
#: A nonce is taken while a live code (unexpired, unconsumed) of the same client and user
#: carries it: a replayed authorization response; an expired code frees it again.
LIVE_CODE_WITH_NONCE = (
    select(_codes.c.id)
    .where(
        _codes.c.client_id == bindparam("client_id"),
        _codes.c.nonce == bindparam("nonce"),
        _codes.c.user_id == bindparam("user_id"),
        _codes.c.consumed_at.is_(None),
        _codes.c.expires_at > bindparam("now"),
    )
    .limit(1)
)

#: Whether a session is still on (a refresh without offline_access needs it).
LIVE_SESSION = select(_sessions.c.id).where(
    _sessions.c.id == bindparam("sid"), _sessions.c.expires_at > bindparam("now")
)

INSERT_ACCESS_TOKEN = insert(_access_tokens)
INSERT_REFRESH_TOKEN = insert(_refresh_tokens)
ROTATE_REFRESH_TOKEN = (
    update(_refresh_tokens)
    .where(_refresh_tokens.c.id == bindparam("token_id"), _refresh_tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
#: A presented token's record with its user (none for client_credentials) and its app.
PRESENTED_TOKEN = (
    select(*select_columns(ACCESS_TOKEN, USERS.shape, CLIENTS.shape))
    .select_from(
        _access_tokens.outerjoin(_users, _users.c.id == _access_tokens.c.user_id).join(
            _clients, _clients.c.client_id == _access_tokens.c.client_id
        )
    )
    .where(_access_tokens.c.jti == bindparam("jti"))
)

#: The browser's session with its user (every authorization).
SESSION_AND_USER = (
    select(*select_columns(SSO_SESSION, USERS.shape))
    .join_from(_sessions, _users, _users.c.id == _sessions.c.user_id)
    .where(_sessions.c.token_hash == bindparam("token_hash"))
)
TOUCH_SESSION = (
    update(_sessions)
    .where(_sessions.c.id == bindparam("sid"))
    .values(last_seen_at=bindparam("now"))
)

#: The audit trail is append-only: a plain INSERT, in the caller's transaction.
INSERT_AUDIT_EVENT = insert(AuditEvent.__table__)


# --- the readers ---


def client_by_id(connection: Connection, client_id: str) -> ClientView | None:
    found = first(connection, CLIENT_BY_ID, {"client_id": client_id}, convert=False)
    return CLIENTS.get(found, connection.dialect) if found is not None else None


def user_by_id(connection: Connection, user_id: str) -> UserView | None:
    found = first(connection, USER_BY_ID, {"user_id": user_id}, convert=False)
    return USERS.get(found, connection.dialect) if found is not None else None


def code_and_user(
    connection: Connection, code_hash: str
) -> tuple[CodeRecord, UserView | None] | None:
    """The code with this digest and its user (None if the user is gone)."""
    found = first(connection, CODE_AND_USER, {"code_hash": code_hash}, convert=False)
    if found is None:
        return None
    dialect = connection.dialect
    code_values, user_values = split(found, CODE, USERS.shape)
    return CODE.build(code_values, dialect), USERS.get_joined(user_values, dialect)


def presented_token(
    connection: Connection, jti: str
) -> tuple[AccessTokenRecord, UserView | None, ClientView] | None:
    """The record of the access token `jti`, its user (none for client_credentials), its app."""
    found = first(connection, PRESENTED_TOKEN, {"jti": jti}, convert=False)
    if found is None:
        return None
    dialect = connection.dialect
    token_values, user_values, client_values = split(
        found, ACCESS_TOKEN, USERS.shape, CLIENTS.shape
    )
    return (
        ACCESS_TOKEN.build(token_values, dialect),
        USERS.get_joined(user_values, dialect),
        CLIENTS.get(client_values, dialect),
    )


def session_and_user(
    connection: Connection, token_hash: str
) -> tuple[SessionRecord, UserView] | None:
    """The SSO session whose cookie has this digest, and its user."""
    found = first(connection, SESSION_AND_USER, {"token_hash": token_hash}, convert=False)
    if found is None:
        return None
    dialect = connection.dialect
    session_values, user_values = split(found, SSO_SESSION, USERS.shape)
    return SSO_SESSION.build(session_values, dialect), USERS.get(user_values, dialect)
