"""`iam clients`: relying parties (apps) and their secrets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from iam.cli.parser import Output, command_group, describe, iso, record_command
from iam.db.store import Store
from iam.services import clients
from iam.services.clients import CONTEXT_POLICIES, RegisteredClient
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands
    from iam.db.models import Client


def _clients_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    registered = clients.create_client(
        store,
        args.name,
        args.redirect_uri,
        context_policy=args.context_policy,
        context_claim=args.context_claim,
        public=args.public,
        admin=args.admin,
        post_logout_redirect_uris=args.post_logout_redirect_uri,
    )
    record = _registered_record(registered)
    note = "\n(the secret is shown only now: store it)" if registered.client_secret else ""
    return Output(record, describe(record) + note)


def _clients_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [_client_record(client) for client in clients.list_clients(store)]
    lines = [f"{r['client_id']}  {r['context_policy']:<8}  {r['name']}" for r in records]
    return Output({"clients": records}, "\n".join(lines) or "no clients")


def _clients_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = _client_record(clients.get_client(store, args.client_id))
    return Output(record, describe(record))


def _clients_rotate_secret(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    registered = clients.rotate_secret(store, args.client_id, keep_previous=True)
    record = _registered_record(registered)
    return Output(record, str(registered.client_secret))


def _clients_delete(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    clients.delete_client(store, args.client_id)
    return Output(
        {"client_id": args.client_id, "deleted": True}, f"deleted client {args.client_id}"
    )


def _registered_record(registered: RegisteredClient) -> dict[str, Any]:
    """The client with its plaintext secret (null for a public client), secret second."""
    record = _client_record(registered.client)
    return {
        "client_id": record.pop("client_id"),
        "client_secret": registered.client_secret,
        **record,
    }


def _client_record(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "admin": client.is_admin,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "context_policy": client.context_policy,
        "context_claim": client.context_claim,
        "grant_types": list(client.grant_types),
        "scopes": client.allowed_scopes.split(),
        "created_at": iso(client.created_at),
        "secret_rotated_at": iso(client.secret_rotated_at),
    }


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
