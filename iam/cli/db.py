"""`iam db`: the database schema (migrations) and pruning what has expired."""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, record_command
from iam.clock import utcnow
from iam.db import migrate
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.services import retention
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands


def _db_upgrade(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """Migrate; a SQLite file made by this run is named, so that a second database made by
    mistake in another directory does not go unnoticed."""
    created = args.database_was_missing
    migrate.upgrade(store.engine)
    revision = migrate.current(store.engine)
    note = f" (a new database, created at {created})" if created else ""
    return Output({"revision": revision}, f"database at revision {revision}{note}")


def _db_current(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    revision = migrate.current(store.engine)
    return Output({"revision": revision}, revision or "none")


def _db_prune(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    now = utcnow()
    deleted: dict[str, int] = {}
    for table in retention.TABLES:
        # A unit of work per table: no lock is held across the whole run, and an interrupted run
        # keeps its progress.
        deleted |= one_unit(store, functools.partial(retention.prune, now=now, tables=[table]))
    retention.log_pruned(deleted)
    lines = [f"{table}: {count} deleted" for table, count in deleted.items()]
    return Output({"deleted": deleted}, "\n".join(lines))


def add_commands(commands: Subcommands) -> None:
    db = command_group(commands, "db", "database schema")
    record_command(
        db,
        "upgrade",
        _db_upgrade,
        "migrate to the newest schema (a SQLite file is created if there is none)",
        needs_schema=False,
        creates_database=True,
    )
    record_command(db, "current", _db_current, "print the schema revision", needs_schema=False)
    record_command(
        db, "prune", _db_prune, "delete expired codes, tokens, sessions and one-time codes"
    )
