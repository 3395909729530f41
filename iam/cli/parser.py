"""What every `iam` command shares: the argument parser and its subcommand registry, the error
handling of `main`, and the running and printing of record commands (`--json` or text).

Record commands print exactly one JSON object with `--json` (for scripts) or a few readable lines
without it. Expected failures become one `iam: error: <reason>` line on stderr and exit code 1;
argparse's own usage errors keep its exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from iam import settings as iam_settings
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.errors import IamError, ValidationError
from iam.settings import Settings, SettingsError

if TYPE_CHECKING:
    from typing import TypeAlias

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

NOT_MIGRATED = "the database is not migrated; run 'iam db upgrade'"


@dataclass(frozen=True)
class Output:
    """What a record command prints: `record` with --json, `text` without."""

    record: dict[str, Any]
    text: str


Action = Callable[[argparse.Namespace, Store, Settings], Output]
#: Adds one command, or one group of commands, to the `iam` parser.
Registration = Callable[["Subcommands"], None]


def run(argv: list[str] | None, registrations: Sequence[Registration]) -> int:
    """Run one `iam` command; returns the process exit code."""
    args = build_parser(registrations).parse_args(argv)
    try:
        return int(args.run(args))
    except ValidationError as error:
        return _fail(f"{error.field}: {error}")
    except (IamError, SettingsError) as error:
        return _fail(str(error))
    except OperationalError as error:
        return _fail(f"the database cannot be used: {error.orig}")


def _fail(reason: str) -> int:
    print(f"iam: error: {' '.join(reason.split())}", file=sys.stderr)
    return 1


# --- running commands -------------------------------------------------------------------------


@contextmanager
def open_engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def require_migrated(engine: Engine) -> None:
    """Refuse to work on a schema other than the one this code was written for."""
    head = ScriptDirectory.from_config(migrate.alembic_config(engine)).get_current_head()
    if migrate.current(engine) != head:
        raise IamError(NOT_MIGRATED)


def missing_database(database_url: str) -> Path | None:
    """Where a SQLite database file should be and is not (its absolute path); None when it
    exists or the database is not a SQLite file."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(str(url.database)).absolute()
    return None if path.exists() else path


def refuse_missing_database(settings: Settings) -> None:
    """A relative SQLite path (the default, `./var/iam.db`) is read from the working directory:
    an `iam` command run from another directory would make a second, empty database there.
    Refuse instead, saying where it looked and how to point at the real one."""
    path = missing_database(settings.database_url)
    if path is None:
        return
    relative = not Path(str(make_url(settings.database_url).database)).is_absolute()
    raise IamError(
        f"no database at {path} (IAM_DATABASE_URL={settings.database_url}"
        + (f", relative to the working directory {Path.cwd()}" if relative else "")
        + "): run iam in the directory the server runs in (where its .env and var/ are), or "
        "set IAM_DATABASE_URL to the server's database; 'iam db upgrade' creates a new one"
    )


def _run_action(args: argparse.Namespace) -> int:
    """Settings, engine, schema check, the command's one service call, then the output. Only
    `iam db upgrade` may create a SQLite database file; every other command refuses to."""
    settings = iam_settings.load()
    if not args.creates_database:
        refuse_missing_database(settings)
    args.database_was_missing = missing_database(settings.database_url)
    with open_engine(settings) as engine:
        if args.needs_schema:
            require_migrated(engine)
        output = args.action(args, Store(engine), settings)
    print(json.dumps(output.record) if args.json else output.text)
    return 0


# --- text -------------------------------------------------------------------------------------


def describe(record: dict[str, Any]) -> str:
    width = max(map(len, record))
    return "\n".join(f"{key + ':':<{width + 1}} {_plain(value)}" for key, value in record.items())


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# --- arguments --------------------------------------------------------------------------------


def build_parser(registrations: Sequence[Registration]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iam", description="OpenID Connect identity server for group companies on WeCom."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registrations:
        register(commands)
    return parser


def command_group(commands: Subcommands, name: str, help_text: str) -> Subcommands:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def record_command(
    commands: Subcommands,
    name: str,
    action: Action,
    help_text: str,
    *,
    needs_schema: bool = True,
    creates_database: bool = False,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.set_defaults(
        run=_run_action,
        action=action,
        needs_schema=needs_schema,
        creates_database=creates_database,
    )
    return parser
