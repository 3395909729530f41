"""The `iam` command: parse the arguments, call one service, print what it returned.

`parser` holds what every command shares; each command group is a module of its own.
"""

from __future__ import annotations

from iam.cli import admins, clients, corps, db, keys, serve, users
from iam.cli.parser import run

#: The subcommands, in the order `iam --help` lists them.
REGISTRATIONS = (
    serve.add_serve,
    serve.add_demo,
    db.add_commands,
    clients.add_commands,
    users.add_commands,
    corps.add_commands,
    keys.add_commands,
    admins.add_commands,
)


def main(argv: list[str] | None = None) -> int:
    """Run one `iam` command; returns the process exit code."""
    return run(argv, REGISTRATIONS)
