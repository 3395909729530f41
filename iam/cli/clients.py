"""`iam clients`: relying parties (apps) and their secrets."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from iam.cli.parser import Output, command_group, describe, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.errors import IamError
from iam.records.apps import App, AppWithSecret
from iam.secretbox import SecretBox
from iam.services import clients
from iam.services.clients import ACCESS_TOKEN_ALGS, AUTH_METHODS, CONTEXT_POLICIES
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
            backchannel_logout_uri=args.backchannel_logout_uri,
            token_endpoint_auth_method=args.token_endpoint_auth_method,
            jwks=args.jwks,
            jwks_uri=args.jwks_uri,
            allowed_origins=args.allowed_origins,
            box=SecretBox(str(settings.secret_key)),
            access_token_signing_alg=args.access_token_signing_alg,
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
UPDATE_OPTIONS = (
    ("--initiate-login-uri", "initiate_login_uri"),
    ("--backchannel-logout-uri", "backchannel_logout_uri"),
    ("--token-endpoint-auth-method", "token_endpoint_auth_method"),
    ("--jwks", "jwks"),
    ("--jwks-uri", "jwks_uri"),
    ("--allowed-origin", "allowed_origins"),
    ("--access-token-alg", "access_token_signing_alg"),
)


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
    if "allowed_origins" in changes:  # the list given replaces the app's; '' alone clears it
        changes["allowed_origins"] = [origin for origin in changes["allowed_origins"] if origin]
    client = one_unit(
        store,
        lambda db: clients.update_client(db, args.client_id, actor="cli", **changes),
    )
    record = App.of(client).to_json()
    return Output(record, describe(record))


def _clients_rotate_secret(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    box = SecretBox(str(settings.secret_key))
    registered = one_unit(store, lambda db: clients.rotate_secret(db, args.client_id, box=box))
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

BACKCHANNEL_LOGOUT_URI_HELP = (
    "where the app receives a logout_token (OIDC Back-Channel Logout 1.0) when a session it has "
    "tokens from ends (https, or http on loopback; no fragment)"
)


AUTH_METHOD_HELP = (
    "how the app authenticates at /token, /revoke and /introspect (default: none for a public "
    "app, client_secret_basic otherwise, which also takes client_secret_post); client_secret_jwt "
    "(RFC 7523) signs with the secret (moving an app to it: rotate-secret then gives it one); "
    "private_key_jwt (RFC 7523) needs --jwks or --jwks-uri and has no secret"
)
JWKS_HELP = "the app's public keys for private_key_jwt, as a JWK Set (JSON; RSA or EC P-256)"
ALLOWED_ORIGIN_HELP = (
    "an origin (scheme://host[:port], https unless on loopback, no path) a single-page app calls "
    "/token, /userinfo and /revoke from with CORS, besides its redirect URIs' origins"
)
ACCESS_TOKEN_ALG_HELP = (
    "what the app's access tokens are signed with: RS256 (default, widest support) or ES256 "
    "(faster; the app's resource servers must support it); ID tokens are RS256 either way"
)
JWKS_URI_HELP = "where the app publishes its JWK Set for private_key_jwt (https; http on loopback)"


def _add_auth_options(command: argparse.ArgumentParser, removable: str = "") -> None:
    """--token-endpoint-auth-method and one of --jwks / --jwks-uri."""
    command.add_argument(
        "--token-endpoint-auth-method", metavar="|".join(AUTH_METHODS), help=AUTH_METHOD_HELP
    )
    keys = command.add_mutually_exclusive_group()
    keys.add_argument("--jwks", metavar="JSON", help=JWKS_HELP + removable)
    keys.add_argument("--jwks-uri", metavar="URI", help=JWKS_URI_HELP + removable)


def _add_access_token_alg(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--access-token-alg",
        dest="access_token_signing_alg",
        metavar="|".join(ACCESS_TOKEN_ALGS),
        help=ACCESS_TOKEN_ALG_HELP,
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
    create.add_argument("--backchannel-logout-uri", metavar="URI", help=BACKCHANNEL_LOGOUT_URI_HELP)
    _add_auth_options(create)
    create.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        dest="allowed_origins",
        metavar="ORIGIN",
        help=ALLOWED_ORIGIN_HELP + " (repeatable)",
    )
    _add_access_token_alg(create)
    record_command(group, "list", _clients_list, "list apps")
    update = record_command(group, "update", _clients_update, "change an app's settings")
    update.add_argument("client_id", metavar="ID")
    update.add_argument(
        "--initiate-login-uri",
        metavar="URI",
        help=INITIATE_LOGIN_URI_HELP + "; an empty value ('') removes it",
    )
    update.add_argument(
        "--backchannel-logout-uri",
        metavar="URI",
        help=BACKCHANNEL_LOGOUT_URI_HELP + "; an empty value ('') removes it",
    )
    _add_auth_options(update, "; an empty value ('') removes it")
    update.add_argument(
        "--allowed-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help=ALLOWED_ORIGIN_HELP + " (repeatable: the list replaces the app's; '' alone clears it)",
    )
    _add_access_token_alg(update)
    for name, action, help_text in (
        ("show", _clients_show, "show an app"),
        ("rotate-secret", _clients_rotate_secret, "new secret; the previous one stays valid"),
        ("delete", _clients_delete, "delete an app"),
    ):
        record_command(group, name, action, help_text).add_argument("client_id", metavar="ID")
