"""iam/db/migrate.py and migrations/: the schema goes up and down cleanly on both backends,
matches the models exactly, and keeps the audit trail append-only in the database itself."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from support.units import in_unit

from iam.db import migrate
from iam.db.base import Base
from iam.db.models import User
from iam.db.store import Store, create_db_engine
from iam.services import users

APPEND_ONLY = "append-only"


def _head() -> str | None:
    """The newest revision of migrations/ (what `iam db upgrade` reaches)."""
    return ScriptDirectory.from_config(migrate.alembic_config(None)).get_current_head()


HEAD = _head()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a brand-new, unmigrated database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        fresh: Callable[[], str] = request.getfixturevalue("fresh_postgres_database")
        url = fresh()
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection, warnings.catch_warnings():
        # The search's GIN indexes are PostgreSQL's only (`ddl_if`, which Alembic does not
        # read): on SQLite they are missing, and those on an expression Alembic skips, saying
        # so. PostgreSQL compares them all.
        warnings.filterwarnings(
            "ignore",
            r"autogenerate skipping metadata-specified expression-based index"
            r" '(\w+_trgm|ix_users_search_chars)'",
        )
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, Base.metadata)
    if engine.dialect.name != "sqlite":
        return list(found)
    return [
        change
        for change in found
        if not (change[0] == "add_index" and change[1].name in POSTGRES_ONLY_INDEXES)
    ]


#: The search's GIN indexes (`ddl_if(dialect="postgresql")` in the models).
POSTGRES_ONLY_INDEXES = {
    "ix_users_name_trgm",
    "ix_users_phone_trgm",
    "ix_users_search_trgm",
    "ix_users_search_chars",
}


def _insert_audit_event(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_events (occurred_at, event, outcome, detail) "
                "VALUES (CURRENT_TIMESTAMP, 'test.event', 'success', '{}')"
            )
        )


def _audit_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one()


def test_upgrade_creates_every_model_table(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == set(Base.metadata.tables) | {"alembic_version"}
    assert migrate.current(empty_engine) == HEAD


def test_fresh_database_has_no_revision(empty_engine: Engine) -> None:
    assert migrate.current(empty_engine) is None


def test_downgrade_to_base_leaves_only_alembic_version(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) == {"alembic_version"}
    assert migrate.current(empty_engine) is None


def test_upgrade_after_downgrade_works_again(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == set(Base.metadata.tables) | {"alembic_version"}
    assert _diff(empty_engine) == []
    # the triggers came back with the table
    _insert_audit_event(empty_engine)
    with pytest.raises(DBAPIError, match=APPEND_ONLY), empty_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events"))


def test_upgrade_is_idempotent(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)
    assert migrate.current(empty_engine) == HEAD


def test_migrated_schema_matches_the_models(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    assert _diff(empty_engine) == []


def test_audit_events_accept_insert(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    _insert_audit_event(empty_engine)
    _insert_audit_event(empty_engine)
    assert _audit_count(empty_engine) == 2


def test_audit_events_refuse_update(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    _insert_audit_event(empty_engine)
    with pytest.raises(DBAPIError, match=APPEND_ONLY), empty_engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET outcome = 'failure'"))
    with empty_engine.connect() as connection:
        outcome = connection.execute(text("SELECT outcome FROM audit_events")).scalar_one()
    assert outcome == "success"


def test_audit_events_refuse_delete(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    _insert_audit_event(empty_engine)
    with pytest.raises(DBAPIError, match=APPEND_ONLY), empty_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events"))
    assert _audit_count(empty_engine) == 1


@pytest.mark.postgres
def test_audit_events_refuse_truncate_on_postgresql(
    fresh_postgres_database: Callable[[], str],
) -> None:
    """Row triggers do not fire on TRUNCATE: a statement trigger refuses it (SQLite has none)."""
    engine = create_db_engine(fresh_postgres_database())
    try:
        migrate.upgrade(engine)
        _insert_audit_event(engine)
        with pytest.raises(DBAPIError, match=APPEND_ONLY), engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_events"))
        assert _audit_count(engine) == 1
    finally:
        engine.dispose()


def test_migrations_run_without_deprecation_warnings(tmp_path: Path) -> None:
    """alembic.ini must set `path_separator`, or Alembic warns on every migration."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'warn.db'}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            migrate.upgrade(engine)
    finally:
        engine.dispose()
    assert migrate.current(engine) == HEAD


def _corp_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("wecom_corps")}


def test_0007_adds_the_callback_settings_and_keeps_the_corporations(empty_engine: Engine) -> None:
    """A corporation connected before 0007 has no callback settings; going back drops them and
    keeps the corporation."""
    migrate.upgrade(empty_engine, "0006")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO wecom_corps (corp_id, name, agent_id, secret_encrypted, trust_mobile,"
                " enabled, created_at, updated_at) VALUES ('wwold', 'Old', 1000002, 'sealed',"
                " false, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(empty_engine, "0007")
    callback = {"callback_token_encrypted", "encoding_aes_key_encrypted"}
    assert callback <= _corp_columns(empty_engine)
    with empty_engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM wecom_corps")).one()._mapping
    assert (row["corp_id"], row["callback_token_encrypted"], row["encoding_aes_key_encrypted"]) == (
        "wwold",
        None,
        None,
    )
    migrate.downgrade(empty_engine, "0006")
    assert not callback & _corp_columns(empty_engine)
    with empty_engine.connect() as connection:
        kept = connection.execute(text("SELECT corp_id, secret_encrypted FROM wecom_corps")).all()
    assert [tuple(row) for row in kept] == [("wwold", "sealed")]


def test_0009_remembers_the_last_connection_test_and_keeps_the_corporations(
    empty_engine: Engine,
) -> None:
    """A corporation connected before 0009 was never tested and is not hidden from the login
    page; going back drops the columns and keeps the corporation."""
    migrate.upgrade(empty_engine, "0008")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO wecom_corps (corp_id, name, agent_id, secret_encrypted, trust_mobile,"
                " enabled, created_at, updated_at) VALUES ('wwold', 'Old', 1000002, 'sealed',"
                " false, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(empty_engine, "0009")
    remembered = {"last_tested_at", "last_test_ok", "last_test_problems", "hidden_by_test"}
    assert remembered <= _corp_columns(empty_engine)
    with empty_engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM wecom_corps")).one()._mapping
    assert (row["last_tested_at"], row["last_test_ok"], row["last_test_problems"]) == (
        None,
        None,
        None,
    )
    assert not row["hidden_by_test"]
    migrate.downgrade(empty_engine, "0008")
    assert not remembered & _corp_columns(empty_engine)
    with empty_engine.connect() as connection:
        kept = connection.execute(text("SELECT corp_id, secret_encrypted FROM wecom_corps")).all()
    assert [tuple(row) for row in kept] == [("wwold", "sealed")]


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def _insert_app(
    connection: Connection, client_id: str = "crm", *, public: bool = False, **more: str
) -> None:
    """An app as the schema of an older revision holds it: the columns every revision since
    0004 has, and `more` columns a later one added."""
    columns = {
        "client_id": client_id,
        "name": client_id.upper(),
        "is_public": public,
        "is_admin": False,
        "redirect_uris": "[]",
        "post_logout_redirect_uris": "[]",
        "grant_types": "[]",
        "allowed_scopes": "openid",
        "context_policy": "none",
        "context_claim": "wecom_context",
        "access_token_ttl": 600,
        "id_token_ttl": 3600,
        "refresh_token_ttl": 86400,
        **more,
    }
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    connection.execute(
        text(
            f"INSERT INTO clients ({names}, created_at, updated_at)"
            f" VALUES ({values}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ),
        columns,
    )


def test_0010_adds_workbench_launch_columns_and_keeps_the_rows(empty_engine: Engine) -> None:
    """An app registered before 0010 has no initiate_login_uri (no workbench links); a login
    in flight is the first round, going nowhere special; going back keeps both rows."""
    migrate.upgrade(empty_engine, "0009")
    with empty_engine.begin() as connection:
        _insert_app(connection)
        connection.execute(
            text(
                "INSERT INTO upstream_logins (id, browser_hash, provider, connector_id,"
                " created_at, expires_at) VALUES ('s', 'b', 'wecom', 'wwa', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(empty_engine, "0010")
    assert "initiate_login_uri" in _columns(empty_engine, "clients")
    assert {"return_to", "private_round"} <= _columns(empty_engine, "upstream_logins")
    assert "return_to" in _columns(empty_engine, "pending_bindings")
    with empty_engine.connect() as connection:
        client = connection.execute(text("SELECT initiate_login_uri FROM clients")).one()
        login = connection.execute(text("SELECT return_to, private_round FROM upstream_logins"))
        assert tuple(client) == (None,)
        assert tuple(login.one()) in ((None, False), (None, 0))
    migrate.downgrade(empty_engine, "0009")
    assert "initiate_login_uri" not in _columns(empty_engine, "clients")
    assert not {"return_to", "private_round"} & _columns(empty_engine, "upstream_logins")
    with empty_engine.connect() as connection:
        assert connection.execute(text("SELECT client_id FROM clients")).scalars().all() == ["crm"]


def test_0012_adds_the_backchannel_logout_queue_and_keeps_the_apps(empty_engine: Engine) -> None:
    """An app registered before 0012 has no backchannel_logout_uri (it is told nothing); the
    queue of logout tokens is new, and going back removes both and keeps the app."""
    script = ScriptDirectory.from_config(migrate.alembic_config(None))
    before = script.get_revision("0012").down_revision
    assert isinstance(before, str)
    migrate.upgrade(empty_engine, before)
    with empty_engine.begin() as connection:
        _insert_app(connection)
    assert "backchannel_logouts" not in _tables(empty_engine)
    migrate.upgrade(empty_engine, "0012")
    assert "backchannel_logout_uri" in _columns(empty_engine, "clients")
    assert "backchannel_logouts" in _tables(empty_engine)
    with empty_engine.begin() as connection:
        assert connection.execute(text("SELECT backchannel_logout_uri FROM clients")).one() == (
            None,
        )
        connection.execute(
            text(
                "INSERT INTO backchannel_logouts (id, client_id, sid, user_id, reason, status,"
                " attempts, next_attempt_at, created_at) VALUES ('q', 'crm', 's', 'u', 'logout',"
                " 'pending', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.downgrade(empty_engine, before)
    assert "backchannel_logouts" not in _tables(empty_engine)
    assert "backchannel_logout_uri" not in _columns(empty_engine, "clients")
    with empty_engine.connect() as connection:
        assert connection.execute(text("SELECT client_id FROM clients")).scalars().all() == ["crm"]


def test_0011_gives_each_app_its_authentication_method_and_keeps_the_apps(
    empty_engine: Engine,
) -> None:
    """Apps registered before 0011 authenticate as they did: a confidential one with its secret
    (`client_secret_basic`), a public one with none; none has keys. Going back keeps them."""
    migrate.upgrade(empty_engine, "0010")
    with empty_engine.begin() as connection:
        for client_id, public in (("crm", False), ("spa", True)):
            _insert_app(connection, client_id, public=public)
    migrate.upgrade(empty_engine, "0011")
    with empty_engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT client_id, token_endpoint_auth_method, jwks, jwks_uri FROM clients"
                " ORDER BY client_id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("crm", "client_secret_basic", None, None),
        ("spa", "none", None, None),
    ]
    migrate.downgrade(empty_engine, "0010")
    assert not {"token_endpoint_auth_method", "jwks", "jwks_uri"} & _columns(
        empty_engine, "clients"
    )
    with empty_engine.connect() as connection:
        assert connection.execute(
            text("SELECT client_id FROM clients ORDER BY client_id")
        ).scalars().all() == ["crm", "spa"]


def _indexes(engine: Engine, table: str) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes(table) if index["name"]}


TRIGRAM = {
    "users": {"ix_users_name_trgm", "ix_users_email_trgm", "ix_users_phone_trgm"},
    "identity_links": {"ix_identity_links_provider_user_id_trgm"},
}


def test_0016_adds_the_scale_indexes_and_keeps_the_rows(empty_engine: Engine) -> None:
    """The users list's order, the audit filters' (event, id) and (user_id, id), and on
    PostgreSQL the trigram indexes of the search; going back restores the indexes of 0015."""
    migrate.upgrade(empty_engine, "0015")
    _insert_audit_event(empty_engine)
    migrate.upgrade(empty_engine, "0016")
    postgres = empty_engine.dialect.name == "postgresql"
    assert "ix_users_created_at_id" in _indexes(empty_engine, "users")
    audit_indexes = _indexes(empty_engine, "audit_events")
    assert {"ix_audit_events_event_id", "ix_audit_events_user_id_id"} <= audit_indexes
    assert not {"ix_audit_events_event", "ix_audit_events_user_id"} & audit_indexes
    for table, names in TRIGRAM.items():
        assert (names <= _indexes(empty_engine, table)) is postgres, table
    assert _audit_count(empty_engine) == 1
    migrate.downgrade(empty_engine, "0015")
    assert "ix_users_created_at_id" not in _indexes(empty_engine, "users")
    audit_indexes = _indexes(empty_engine, "audit_events")
    assert {"ix_audit_events_event", "ix_audit_events_user_id"} <= audit_indexes
    assert not {"ix_audit_events_event_id", "ix_audit_events_user_id_id"} & audit_indexes
    for table, names in TRIGRAM.items():
        assert not names & _indexes(empty_engine, table), table
    assert _audit_count(empty_engine) == 1
    migrate.upgrade(empty_engine)
    assert _diff(empty_engine) == []


@pytest.mark.postgres
def test_0016_goes_on_without_trigram_indexes_where_pg_trgm_cannot_be_made(
    fresh_postgres_database: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A role that may not create extensions (no CREATE on the database, not its owner):
    the upgrade completes, warns with what a superuser runs, and the search still answers."""
    url = fresh_postgres_database()
    database = make_url(url).database
    role = f"iam_limited_{database}"
    owner = create_db_engine(url)
    with owner.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        connection.execute(text(f'ALTER SCHEMA public OWNER TO "{role}"'))
        connection.execute(text(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC'))
    limited = create_db_engine(make_url(url).set(username=role).render_as_string(False))
    try:
        with caplog.at_level(logging.WARNING):
            migrate.upgrade(limited)
        assert migrate.current(limited) == HEAD
        assert "pg_trgm could not be created" in caplog.text
        assert "CREATE INDEX ix_users_name_trgm" in caplog.text
        assert not TRIGRAM["users"] & _indexes(limited, "users")
        assert "ix_users_created_at_id" in _indexes(limited, "users")
        store = Store(limited)
        in_unit(store, users.create_user, "张三 Zhang San", "+8613800138000")
        found = in_unit(store, users.search_users, "zhang", limit=5)
        assert [row.user.name for row in found] == ["张三 Zhang San"]
        migrate.downgrade(limited, "0015")  # the trigram indexes it never made: no error
        assert migrate.current(limited) == "0015"
    finally:
        limited.dispose()
        with owner.begin() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}" CASCADE'))
        owner.dispose()
        server = create_db_engine(make_url(url).set(database="postgres").render_as_string(False))
        with server.begin() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        server.dispose()


@pytest.mark.postgres
def test_the_search_can_use_the_trigram_indexes(
    fresh_postgres_database: Callable[[], str],
) -> None:
    """Each key of the users search is a `LIKE '%x%'` a trigram index answers (asked with
    sequential scans off: the planner reads a tiny table whole anyway)."""
    engine = create_db_engine(fresh_postgres_database())
    migrate.upgrade(engine)
    store = Store(engine)
    try:
        with store() as db:
            db.execute(text("SET LOCAL enable_seqscan = off"))
            plans = {}
            for needle in ("zhangsan", "张三", "张"):
                statement = select(User.id).where(users._matching(db, needle))  # noqa: SLF001
                compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
                plans[needle] = "\n".join(db.execute(text(f"EXPLAIN {compiled}")).scalars())
        assert "ix_users_search_trgm" in plans["zhangsan"], plans
        for short in ("张三", "张"):
            assert "ix_users_search_chars" in plans[short], plans
    finally:
        engine.dispose()


def test_0017_gives_each_app_rs256_access_tokens_and_keeps_the_apps(empty_engine: Engine) -> None:
    """Apps registered before 0017 keep RS256 access tokens; a new one may say ES256; going
    back removes the setting and keeps the apps."""
    migrate.upgrade(empty_engine, "0016")
    with empty_engine.begin() as connection:
        _insert_app(connection)
    migrate.upgrade(empty_engine, "0017")
    with empty_engine.begin() as connection:
        _insert_app(connection, "m2m", access_token_signing_alg="ES256")
        rows = connection.execute(
            text("SELECT client_id, access_token_signing_alg FROM clients ORDER BY client_id")
        ).all()
    assert [tuple(row) for row in rows] == [("crm", "RS256"), ("m2m", "ES256")]
    migrate.downgrade(empty_engine, "0016")
    assert "access_token_signing_alg" not in _columns(empty_engine, "clients")
    with empty_engine.connect() as connection:
        assert connection.execute(
            text("SELECT client_id FROM clients ORDER BY client_id")
        ).scalars().all() == ["crm", "m2m"]


def _add_person(connection: Connection, user_id: str, name: str, email: str | None) -> None:
    connection.execute(
        text(
            "INSERT INTO users (id, name, email, phone, status, created_at, updated_at)"
            " VALUES (:id, :name, :email, :phone, 'active', :at, :at)"
        ),
        {"id": user_id, "name": name, "email": email, "phone": f"+86138{user_id[-8:]}", "at": NOW},
    )


def _add_link(connection: Connection, link_id: str, user_id: str, userid: str) -> None:
    connection.execute(
        text(
            "INSERT INTO identity_links (id, user_id, provider, provider_user_id,"
            " provider_user_key, metadata, status, created_at, updated_at)"
            " VALUES (:id, :user_id, 'wecom', :subject, :key, '{}', 'active', :at, :at)"
        ),
        {
            "id": link_id,
            "user_id": user_id,
            "subject": f"wwcorp/{userid}",
            "key": f"wwcorp/{userid.lower()}",
            "at": NOW,
        },
    )


def _search_keys(connection: Connection, user_id: str) -> tuple[list[str], set[str]]:
    """(name, email, phone) and the set of linked ids, as `users.search_text` holds them."""
    found = connection.execute(
        text("SELECT search_text FROM users WHERE id = :id"), {"id": user_id}
    ).scalar_one()
    keys = found.split("\x1f")
    return keys[:3], set(keys[3:])


NOW = datetime(2026, 12, 6, 9, 0)


def test_0018_fills_the_search_text_and_the_database_keeps_it(empty_engine: Engine) -> None:
    """People and links from before 0018 get their text; then every write of a key, in plain
    SQL as any writer might, rewrites it: a person's insert and update, a link's insert,
    rename, move to another person and delete. Going back removes the column and its
    triggers (links can still be written), and forward again matches the models."""
    zhang, li = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
    migrate.upgrade(empty_engine, "0017")
    with empty_engine.begin() as connection:
        _add_person(connection, zhang, "Zhang San 张三", "ZS@Example.com")
        _add_link(connection, "link-1", zhang, "ZhangSan_A")
        _add_link(connection, "link-2", zhang, "zs_b")
    migrate.upgrade(empty_engine, "0018")
    phone_zhang, phone_li = f"+86138{zhang[-8:]}", f"+86138{li[-8:]}"
    with empty_engine.begin() as connection:
        assert _search_keys(connection, zhang) == (
            ["zhang san 张三", "zs@example.com", phone_zhang],
            {"wwcorp/zhangsan_a", "wwcorp/zs_b"},
        )
        _add_person(connection, li, "Li Si", None)
        assert _search_keys(connection, li) == (["li si", "", phone_li], set())
        connection.execute(
            text("UPDATE users SET name = 'LI Si 李四', email = 'Li@x.org' WHERE id = :id"),
            {"id": li},
        )
        assert _search_keys(connection, li) == (["li si 李四", "li@x.org", phone_li], set())
        connection.execute(
            text(
                "UPDATE identity_links SET provider_user_id = 'wwcorp/Zhang.San'"
                " WHERE id = 'link-1'"
            )
        )
        _add_link(connection, "link-3", li, "LiSi")
        connection.execute(
            text("UPDATE identity_links SET user_id = :id WHERE id = 'link-2'"), {"id": li}
        )
        assert _search_keys(connection, zhang) == (
            ["zhang san 张三", "zs@example.com", phone_zhang],
            {"wwcorp/zhang.san"},
        )
        assert _search_keys(connection, li) == (
            ["li si 李四", "li@x.org", phone_li],
            {"wwcorp/lisi", "wwcorp/zs_b"},
        )
        connection.execute(text("DELETE FROM identity_links WHERE id = 'link-3'"))
        connection.execute(text("UPDATE users SET status = 'disabled' WHERE id = :id"), {"id": li})
        assert _search_keys(connection, li) == (
            ["li si 李四", "li@x.org", phone_li],
            {"wwcorp/zs_b"},
        )
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": li})  # links go too
    migrate.downgrade(empty_engine, "0017")
    assert "search_text" not in _columns(empty_engine, "users")
    postgres = empty_engine.dialect.name == "postgresql"
    for table, names in TRIGRAM.items():  # 0016's indexes, all back on PostgreSQL
        assert (names <= _indexes(empty_engine, table)) is postgres, table
    assert not {"ix_users_search_trgm", "ix_users_search_chars"} & _indexes(empty_engine, "users")
    with empty_engine.begin() as connection:
        _add_link(connection, "link-4", zhang, "again")
    migrate.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        assert _search_keys(connection, zhang)[1] == {"wwcorp/zhang.san", "wwcorp/again"}
    assert _diff(empty_engine) == []
