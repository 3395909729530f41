"""`iam clients`: relying parties (apps) and their secrets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, describe, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.records.apps import App, AppWithSecret
from iam.services import clients
from iam.services.clients import CONTEXT_POLICIES
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands


def _clients_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    registered = one_unit(
        store,
        lambda db: clients.create_client(
            db,
            args.name,
            args.redirect_uri,
            context_policy=args.context_policy,
            context_claim=args.context_claim,
            public=args.public,
            admin=args.admin,
            post_logout_redirect_uris=args.post_logout_redirect_uri,
        ),
    )
    record = AppWithSecret.registered(registered).to_json()
    note = "\n(the secret is shown only now: store it)" if registered.client_secret else ""
    return Output(record, describe(record) + note)


def _clients_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [App.of(client).to_json() for client in one_unit(store, clients.list_clients)]
    lines = [f"{r['client_id']}  {r['context_policy']:<8}  {r['name']}" for r in records]
    return Output({"clients": records}, "\n".join(lines) or "no clients")


def _clients_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = App.of(one_unit(store, lambda db: clients.get_client(db, args.client_id))).to_json()
    return Output(record, describe(record))


def _clients_rotate_secret(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    registered = one_unit(store, lambda db: clients.rotate_secret(db, args.client_id))
    record = AppWithSecret.registered(registered).to_json()
    return Output(record, str(registered.client_secret))


def _clients_delete(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    one_unit(store, lambda db: clients.delete_client(db, args.client_id))
    return Output(
        {"client_id": args.client_id, "deleted": True}, f"deleted client {args.client_id}"
    )


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "clients", "relying parties (apps)")
    create = record_command(group, "create", _clients_create, "register an app")
    create.add_argument("--name", required=True)
    create.add_argument("--redirect-uri", action="append", required=True, metavar="URI")
    create.add_argument(
        "--context-policy",
        default="none",
        metavar="|".join(CONTEXT_POLICIES),
        help="whether the app receives the WeCom context claim (default: none)",
    )
    create.add_argument("--context-claim", metavar="NAME", help="default: wecom_context")
    create.add_argument("--public", action="store_true", help="no secret (PKCE-only app)")
    create.add_argument(
        "--admin",
        action="store_true",
        help="may call the admin API (client_credentials with scope iam:admin)",
    )
    create.add_argument("--post-logout-redirect-uri", action="append", default=[], metavar="URI")
    record_command(group, "list", _clients_list, "list apps")
    for name, action, help_text in (
        ("show", _clients_show, "show an app"),
        ("rotate-secret", _clients_rotate_secret, "new secret; the previous one stays valid"),
        ("delete", _clients_delete, "delete an app"),
    ):
        record_command(group, name, action, help_text).add_argument("client_id", metavar="ID")
