"""`iam corps`: WeCom corporations and their self-built apps."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, describe, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.records.corps import Corp
from iam.secretbox import SecretBox
from iam.services import corps
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands


#: The limit of --trust-mobile, said wherever it is set: one corporation's admins type members'
#: mobiles, so they must not reach people known through another corporation.
TRUST_MOBILE_HELP = (
    "a mobile read from this corporation's directory binds a member without an SMS code, to a "
    "new person or to the person with that number if they have no active identity in another "
    "corporation; anyone who has one still proves it by SMS code"
)


def _corps_add(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """The corporation as the admin API shows it (the `Corp` record: never the secret)."""
    box = SecretBox(str(settings.secret_key))
    corp = one_unit(
        store,
        lambda db: corps.add_corp(
            db,
            box,
            args.corp_id,
            args.name,
            args.agent_id,
            args.secret,
            trust_mobile=args.trust_mobile,
        ),
    )
    record = Corp.of(corp).to_json()
    return Output(record, describe(record))


def _corps_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [Corp.of(corp).to_json() for corp in one_unit(store, corps.list_corps)]
    lines = [
        f"{r['corp_id']}  agent {r['agent_id']}  {'trusted mobile  ' if r['trust_mobile'] else ''}"
        f"{r['name']}"
        for r in records
    ]
    return Output({"corps": records}, "\n".join(lines) or "no corporations")


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "corps", "WeCom corporations and their self-built apps")
    add = record_command(group, "add", _corps_add, "connect a WeCom corporation")
    add.add_argument("--corp-id", required=True, metavar="ID")
    add.add_argument("--name", required=True, metavar="NAME")
    add.add_argument("--agent-id", required=True, type=int, metavar="N")
    add.add_argument("--secret", required=True, metavar="S", help="the app secret (kept encrypted)")
    add.add_argument(
        "--trust-mobile",
        action="store_true",
        help=TRUST_MOBILE_HELP,
    )
    record_command(group, "list", _corps_list, "list connected corporations")
