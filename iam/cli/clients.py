"""`iam clients`: relying parties (apps) and their secrets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, describe, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.errors import IamError
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
            initiate_login_uri=args.initiate_login_uri,
        ),
    )
    record = AppWithSecret.registered(registered).to_json()
    note = "\n(the secret is shown only now: store it)" if registered.client_secret else ""
    return Output(record, describe(record) + note)


def _clients_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [App.of(client).to_json() for client in one_unit(store, clients.list_clients)]
    lines = [
        f"{r['client_id']}  {r['context_policy']:<8}  {r['name']}"
        + (f"  {r['initiate_login_uri']}" if r["initiate_login_uri"] else "")
        for r in records
    ]
    return Output({"clients": records}, "\n".join(lines) or "no clients")


def _clients_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = App.of(one_unit(store, lambda db: clients.get_client(db, args.client_id))).to_json()
    return Output(record, describe(record))


#: `iam clients update`'s options: (flag, update_client's keyword).
UPDATE_OPTIONS = (("--initiate-login-uri", "initiate_login_uri"),)


def _clients_update(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """Change the settings given; an empty value removes an optional one."""
    changes = {
        keyword: getattr(args, keyword)
        for _flag, keyword in UPDATE_OPTIONS
        if getattr(args, keyword) is not None
    }
    if not changes:
        flags = ", ".join(flag for flag, _keyword in UPDATE_OPTIONS)
        raise IamError(f"nothing to change: give {flags}")
    client = one_unit(
        store,
        lambda db: clients.update_client(db, args.client_id, actor="cli", **changes),
    )
    record = App.of(client).to_json()
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


INITIATE_LOGIN_URI_HELP = (
    "where the app's WeCom workbench links (/launch/ID/wecom/CORP_ID) send people to sign in: "
    "the app's OIDC initiate_login_uri (https, or http on loopback; no fragment)"
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
    create.add_argument("--initiate-login-uri", metavar="URI", help=INITIATE_LOGIN_URI_HELP)
    record_command(group, "list", _clients_list, "list apps")
    update = record_command(group, "update", _clients_update, "change an app's settings")
    update.add_argument("client_id", metavar="ID")
    update.add_argument(
        "--initiate-login-uri",
        metavar="URI",
        help=INITIATE_LOGIN_URI_HELP + "; an empty value ('') removes it",
    )
    for name, action, help_text in (
        ("show", _clients_show, "show an app"),
        ("rotate-secret", _clients_rotate_secret, "new secret; the previous one stays valid"),
        ("delete", _clients_delete, "delete an app"),
    ):
        record_command(group, name, action, help_text).add_argument("client_id", metavar="ID")
