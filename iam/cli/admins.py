"""`iam admin`: admin console accounts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.services import admins
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands


def _admin_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    admin = one_unit(store, lambda db: admins.create_admin(db, args.username, args.password))
    record = {"admin_id": admin.id, "username": admin.username}
    return Output(record, f"created admin {admin.username} ({admin.id})")


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "admin", "admin console accounts")
    create = record_command(group, "create", _admin_create, "create an admin account")
    create.add_argument("--username", required=True, metavar="U")
    create.add_argument("--password", required=True, metavar="P")
