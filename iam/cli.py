"""The `iam` command: parse the arguments, call one service, print what it returned.

Record commands print exactly one JSON object with `--json` (for scripts) or a few readable lines
without it. Expected failures become one `iam: error: <reason>` line on stderr and exit code 1;
argparse's own usage errors keep its exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import uvicorn
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from iam import settings as iam_settings
from iam.app import SIMULATOR_PATH, create_app
from iam.db import migrate
from iam.db.store import Store, create_db_engine
from iam.errors import IamError, ValidationError
from iam.logs import log_config
from iam.metrics import MULTIPROC_DIR_VARIABLE
from iam.secretbox import SecretBox
from iam.services import admins, clients, corps, retention, signing_keys, users
from iam.services.clients import CONTEXT_POLICIES, RegisteredClient
from iam.services.rate_limits import rules_from
from iam.settings import Settings, SettingsError

if TYPE_CHECKING:
    from typing import TypeAlias

    from starlette.types import ASGIApp

    from iam.db.models import Client, IdentityLink, SigningKey, User, WeComCorp
    from iam.devtools.demo import DemoRelyingParty, DemoWorld, ExampleAuthorization

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

NOT_MIGRATED = "the database is not migrated; run 'iam db upgrade'"


@dataclass(frozen=True)
class Output:
    """What a record command prints: `record` with --json, `text` without."""

    record: dict[str, Any]
    text: str


Action = Callable[[argparse.Namespace, Store, Settings], Output]


def main(argv: list[str] | None = None) -> int:
    """Run one `iam` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
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
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _require_migrated(engine: Engine) -> None:
    """Refuse to work on a schema other than the one this code was written for."""
    head = ScriptDirectory.from_config(migrate.alembic_config(engine)).get_current_head()
    if migrate.current(engine) != head:
        raise IamError(NOT_MIGRATED)


def _run_action(args: argparse.Namespace) -> int:
    """Settings, engine, schema check, the command's one service call, then the output."""
    settings = iam_settings.load()
    with _engine(settings) as engine:
        if args.needs_schema:
            _require_migrated(engine)
        output = args.action(args, Store(engine), settings)
    print(json.dumps(output.record) if args.json else output.text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Check settings and schema here, where a bad value is one readable line, then serve;
    each worker builds its app from the environment."""
    if args.workers < 1:
        raise ValidationError("--workers", "the number of worker processes must be at least 1")
    settings = iam_settings.load()
    if settings.dev_mode and not iam_settings.is_loopback_host(args.host):
        raise IamError(
            f"IAM_DEV_MODE is refused with --host {args.host!r}: dev mode shows SMS codes to "
            "anyone who reaches the server; serve on a loopback --host such as 127.0.0.1"
        )
    rules_from(settings)
    iam_settings.refuse_console_sms(settings)
    with _engine(settings) as engine:
        _require_migrated(engine)
    with _shared_metrics(args.workers):
        uvicorn.run(
            "iam.app:create_app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            proxy_headers=True,
            access_log=False,  # `iam.access` logs each request, without its query string
            log_config=log_config(settings.log_format),
        )
    return 0


@contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """Several workers count into one directory, so `/metrics` on any of them shows the
    whole instance (prometheus_client's multi-process mode); it is removed at exit."""
    if workers == 1 or os.environ.get(MULTIPROC_DIR_VARIABLE):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="iam-metrics-") as directory:
        os.environ[MULTIPROC_DIR_VARIABLE] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR_VARIABLE]


def _demo(args: argparse.Namespace) -> int:
    """Dev mode on a loopback issuer: migrate, seed, say where to click, serve."""
    from iam.devtools import demo  # dev-only code stays off every production import path
    from iam.devtools.demo_apps import create_demo_app

    settings = _demo_settings(args.port)
    with _engine(settings) as engine:
        migrate.upgrade(engine)
        box = SecretBox(str(settings.secret_key))
        world = demo.seed_demo(Store(engine), box, settings.issuer)
        parties = demo.seed_relying_parties(Store(engine), settings.issuer, args.port)
    example = demo.example_authorization(world, settings.issuer)
    print(_demo_text(world, example, settings.issuer, parties), flush=True)
    _serve_in_background([(create_demo_app(p.config), p.port) for p in parties])
    app = create_app(settings)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        proxy_headers=True,
        access_log=False,
        log_config=log_config(settings.log_format),
    )
    return 0


def _demo_settings(port: int) -> Settings:
    """Settings with dev mode on and, unless one is set, the issuer on `port`. They are written to
    os.environ as well, so nothing that reads the environment later sees other settings."""
    issuer = os.environ.get("IAM_ISSUER", f"http://127.0.0.1:{port}")
    simulator = issuer.rstrip("/") + SIMULATOR_PATH
    overrides = {
        "IAM_DEV_MODE": "true",
        "IAM_ISSUER": issuer,
        "IAM_WECOM_API_BASE": os.environ.get("IAM_WECOM_API_BASE", simulator),
        "IAM_WECOM_OAUTH_URL": os.environ.get(
            "IAM_WECOM_OAUTH_URL", f"{simulator}/connect/oauth2/authorize"
        ),
        "IAM_WECOM_QR_URL": os.environ.get("IAM_WECOM_QR_URL", f"{simulator}/wwlogin/sso/login"),
    }
    settings = iam_settings.load({**os.environ, **overrides})
    os.environ.update(overrides)
    return settings


def _serve_in_background(apps: list[tuple[ASGIApp, int]]) -> None:
    """The demo's relying parties, each on its own port, in daemon threads beside the server."""
    for app, port in apps:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()


def _demo_text(
    world: DemoWorld,
    example: ExampleAuthorization,
    issuer: str,
    parties: tuple[DemoRelyingParty, ...] = (),
) -> str:
    apps = [f"  {p.config.title} (context policy {p.policy}): {p.config.base_url}" for p in parties]
    story = [
        "The story: open the CRM, sign in with the phone below (code in the outbox), pick 子公司A;",
        "open the learning platform: no subsidiary anywhere; sign out, then sign in through",
        "WeCom · 子公司B: the CRM takes B without asking.",
        *apps,
        "",
    ]
    return "\n".join(
        [
            f"iam demo at {issuer} (dev mode: SMS codes go to the outbox, not to phones)",
            "",
            *(story if parties else []),
            f"  sign in:        {issuer}/login",
            f"  admin console:  {issuer}/admin  (user {world.admin_username}, "
            f"password {world.admin_password}, new on every start)",
            f"  SMS outbox:     {issuer}/dev/outbox",
            f"  demo user:      phone {world.phone} (user_id {world.user_id})",
            f"  client_id:      {world.client_id}",
            f"  client_secret:  {world.client_secret}   (new on every start)",
            f"  redirect_uri:   {world.redirect_uri}",
            f"  WeCom:          the login page offers {', '.join(world.corp_names)} "
            f"(simulated at {issuer}{SIMULATOR_PATH})",
            "",
            "Try it: open this URL, sign in with the phone above and the code from the outbox,",
            "then copy the `code` parameter of the address you land on:",
            f"  {example.url}",
            f"  code_verifier (PKCE S256): {example.code_verifier}",
            "Exchange the code for tokens (within 60 seconds):",
            "  CODE=<the code>",
            f"  {example.token_command}",
            "",
        ]
    )


# --- db ---------------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    migrate.upgrade(store.engine)
    revision = migrate.current(store.engine)
    return Output({"revision": revision}, f"database at revision {revision}")


def _db_current(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    revision = migrate.current(store.engine)
    return Output({"revision": revision}, revision or "none")


def _db_prune(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    deleted = retention.prune(store)
    lines = [f"{table}: {count} deleted" for table, count in deleted.items()]
    return Output({"deleted": deleted}, "\n".join(lines))


# --- clients ----------------------------------------------------------------------------------


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
    return Output(record, _describe(record) + note)


def _clients_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [_client_record(client) for client in clients.list_clients(store)]
    lines = [f"{r['client_id']}  {r['context_policy']:<8}  {r['name']}" for r in records]
    return Output({"clients": records}, "\n".join(lines) or "no clients")


def _clients_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = _client_record(clients.get_client(store, args.client_id))
    return Output(record, _describe(record))


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
        "created_at": _iso(client.created_at),
        "secret_rotated_at": _iso(client.secret_rotated_at),
    }


# --- users ------------------------------------------------------------------------------------


def _users_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = _user_record(users.create_user(store, args.name, args.phone, args.email))
    return Output(record, _describe(record))


def _users_link(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    link = users.link_wecom(
        store, args.user_id, args.corp_id, args.userid, _parse_metadata(args.metadata)
    )
    record = _link_record(link)
    return Output(record, _describe(record))


def _users_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = users.show_user(store, args.user_id)
    user = _user_record(found.user)
    links = [_link_record(link) for link in found.links]
    lines = [f"  {r['provider_user_id']}  {r['status']}  link {r['link_id']}" for r in links]
    text = "\n".join([_describe(user), "links:", *lines]) if lines else _describe(user)
    return Output({**user, "links": links}, text)


def _users_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = users.list_users(store, args.query, limit=args.limit)
    records = [_user_record(user) for user in found]
    lines = [f"{r['user_id']}  {r['phone'] or '-'}  {r['name']}" for r in records]
    return Output({"users": records}, "\n".join(lines) or "no users")


def _parse_metadata(text: str | None) -> Any:
    """The --metadata JSON; the service decides whether its shape is acceptable."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(
            "metadata", f"--metadata is not valid JSON ({error.msg} at character {error.pos})"
        ) from None


def _user_record(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "name": user.name,
        "phone": user.phone,
        "email": user.email,
        "status": user.status,
        "phone_verified_at": _iso(user.phone_verified_at),
        "created_at": _iso(user.created_at),
    }


def _link_record(link: IdentityLink) -> dict[str, Any]:
    return {
        "link_id": link.id,
        "provider": link.provider,
        "provider_user_id": link.provider_user_id,
        "user_id": link.user_id,
        "metadata": dict(link.link_metadata or {}),
        "status": link.status,
        "created_at": _iso(link.created_at),
        "last_login_at": _iso(link.last_login_at),
    }


# --- corps -------------------------------------------------------------------------------------


def _corps_add(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    box = SecretBox(str(settings.secret_key))
    corp = corps.add_corp(
        store,
        box,
        args.corp_id,
        args.name,
        args.agent_id,
        args.secret,
        trust_mobile=args.trust_mobile,
    )
    record = _corp_record(corp)
    return Output(record, _describe(record))


def _corps_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [_corp_record(corp) for corp in corps.list_corps(store)]
    lines = [
        f"{r['corp_id']}  agent {r['agent_id']}  {'trusted mobile  ' if r['trust_mobile'] else ''}"
        f"{r['name']}"
        for r in records
    ]
    return Output({"corps": records}, "\n".join(lines) or "no corporations")


def _corp_record(corp: WeComCorp) -> dict[str, Any]:
    """Never the secret, not even encrypted."""
    return {
        "corp_id": corp.corp_id,
        "name": corp.name,
        "agent_id": corp.agent_id,
        "trust_mobile": corp.trust_mobile,
        "enabled": corp.enabled,
        "created_at": _iso(corp.created_at),
    }


# --- keys and admins --------------------------------------------------------------------------


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
        "created_at": _iso(key.created_at),
        "retired_at": _iso(key.retired_at),
        "publish_until": _iso(key.publish_until),
    }


def _admin_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    admin = admins.create_admin(store, args.username, args.password)
    record = {"admin_id": admin.id, "username": admin.username}
    return Output(record, f"created admin {admin.username} ({admin.id})")


# --- text -------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    """Stored times are naive UTC; say so in the string."""
    return None if moment is None else moment.replace(tzinfo=UTC).isoformat()


def _describe(record: dict[str, Any]) -> str:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iam", description="OpenID Connect identity server for group companies on WeCom."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_demo(commands)
    _add_db(commands)
    _add_clients(commands)
    _add_users(commands)
    _add_corps(commands)
    _add_keys(commands)
    _add_admin(commands)
    return parser


def _group(commands: Subcommands, name: str, help_text: str) -> Subcommands:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def _record_command(
    commands: Subcommands, name: str, action: Action, help_text: str, *, needs_schema: bool = True
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.set_defaults(run=_run_action, action=action, needs_schema=needs_schema)
    return parser


def _add_serve(commands: Subcommands) -> None:
    parser = commands.add_parser("serve", help="run the server (settings from IAM_* and .env)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, metavar="N")
    parser.set_defaults(run=_serve)


def _add_demo(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "demo", help="dev mode on SQLite: migrate, seed a demo app and user, serve"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.set_defaults(run=_demo)


def _add_db(commands: Subcommands) -> None:
    db = _group(commands, "db", "database schema")
    _record_command(db, "upgrade", _db_upgrade, "migrate to the newest schema", needs_schema=False)
    _record_command(db, "current", _db_current, "print the schema revision", needs_schema=False)
    _record_command(
        db, "prune", _db_prune, "delete expired codes, tokens, sessions and one-time codes"
    )


def _add_clients(commands: Subcommands) -> None:
    group = _group(commands, "clients", "relying parties (apps)")
    create = _record_command(group, "create", _clients_create, "register an app")
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
    _record_command(group, "list", _clients_list, "list apps")
    for name, action, help_text in (
        ("show", _clients_show, "show an app"),
        ("rotate-secret", _clients_rotate_secret, "new secret; the previous one stays valid"),
        ("delete", _clients_delete, "delete an app"),
    ):
        _record_command(group, name, action, help_text).add_argument("client_id", metavar="ID")


def _add_users(commands: Subcommands) -> None:
    group = _group(commands, "users", "core users and their WeCom links")
    create = _record_command(group, "create", _users_create, "create a user")
    create.add_argument("--name", required=True)
    create.add_argument("--phone", required=True, help="+8613800138000 or 13800138000")
    create.add_argument("--email")
    link = _record_command(group, "link", _users_link, "link a WeCom member to a user")
    link.add_argument("user_id", metavar="USER_ID")
    link.add_argument("--corp-id", required=True, metavar="ID")
    link.add_argument("--userid", required=True, metavar="UID")
    link.add_argument("--metadata", metavar="JSON", help="a JSON object kept with the link")
    show = _record_command(group, "show", _users_show, "show a user with links")
    show.add_argument("user_id", metavar="USER_ID")
    listing = _record_command(group, "list", _users_list, "list users, oldest first")
    listing.add_argument("--query", help="part of a name, email or phone")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="default: 100")


def _add_keys(commands: Subcommands) -> None:
    group = _group(commands, "keys", "token signing keys")
    _record_command(group, "rotate", _keys_rotate, "new signing key; old ones stay published")
    _record_command(group, "list", _keys_list, "list signing keys (public facts only)")


#: The limit of --trust-mobile, said wherever it is set: one corporation's admins type members'
#: mobiles, so they must not reach people known through another corporation.
TRUST_MOBILE_HELP = (
    "a mobile read from this corporation's directory binds a member without an SMS code, to a "
    "new person or to the person with that number if they have no active identity in another "
    "corporation; anyone who has one still proves it by SMS code"
)


def _add_corps(commands: Subcommands) -> None:
    group = _group(commands, "corps", "WeCom corporations and their self-built apps")
    add = _record_command(group, "add", _corps_add, "connect a WeCom corporation")
    add.add_argument("--corp-id", required=True, metavar="ID")
    add.add_argument("--name", required=True, metavar="NAME")
    add.add_argument("--agent-id", required=True, type=int, metavar="N")
    add.add_argument("--secret", required=True, metavar="S", help="the app secret (kept encrypted)")
    add.add_argument(
        "--trust-mobile",
        action="store_true",
        help=TRUST_MOBILE_HELP,
    )
    _record_command(group, "list", _corps_list, "list connected corporations")


def _add_admin(commands: Subcommands) -> None:
    group = _group(commands, "admin", "admin console accounts")
    create = _record_command(group, "create", _admin_create, "create an admin account")
    create.add_argument("--username", required=True, metavar="U")
    create.add_argument("--password", required=True, metavar="P")
