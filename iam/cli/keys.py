"""`iam keys`: the token signing keys."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from iam.cli.parser import Output, command_group, iso, record_command
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import signing_keys
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands
    from iam.db.models import SigningKey


def _keys_rotate(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    key = signing_keys.rotate(store, SecretBox(str(settings.secret_key)))
    return Output(_key_record(key), key.kid)


def _keys_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [_key_record(key) for key in signing_keys.list_keys(store)]
    lines = [
        f"{r['kid']}  {r['alg']}  created {r['created_at']}  "
        + (f"retired, published until {r['publish_until']}" if r["retired_at"] else "signing")
        for r in records
    ]
    return Output({"keys": records}, "\n".join(lines) or "no keys")


def _key_record(key: SigningKey) -> dict[str, Any]:
    """Public facts only: the private JWK never leaves the database."""
    return {
        "kid": key.kid,
        "alg": key.alg,
        "created_at": iso(key.created_at),
        "retired_at": iso(key.retired_at),
        "publish_until": iso(key.publish_until),
    }


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "keys", "token signing keys")
    record_command(group, "rotate", _keys_rotate, "new signing key; old ones stay published")
    record_command(group, "list", _keys_list, "list signing keys (public facts only)")
