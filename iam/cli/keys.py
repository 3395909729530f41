"""`iam keys`: the token signing keys."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, record_command
from iam.clock import utcnow
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.records.keys import SigningKey
from iam.secretbox import SecretBox
from iam.services import signing_keys
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands


def _keys_rotate(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """A new key of each algorithm: `kid  alg` a line (RS256 first)."""
    box = SecretBox(str(settings.secret_key))
    keys = one_unit(store, lambda db: signing_keys.rotate(db, box))
    records = [key.to_json() for key in SigningKey.all_of(keys, utcnow())]
    return Output({"keys": records}, "\n".join(f"{key.kid}  {key.alg}" for key in keys))


def _keys_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = one_unit(store, signing_keys.list_keys)
    records = [key.to_json() for key in SigningKey.all_of(found, utcnow())]
    lines = [
        f"{r['kid']}  {r['alg']}  created {r['created_at']}  "
        + (f"retired, published until {r['publish_until']}" if r["retired_at"] else "signing")
        for r in records
    ]
    return Output({"keys": records}, "\n".join(lines) or "no keys")


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "keys", "token signing keys")
    record_command(group, "rotate", _keys_rotate, "new signing key; old ones stay published")
    record_command(group, "list", _keys_list, "list signing keys (public facts only)")
