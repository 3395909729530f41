"""`iam serve` (the server, settings from the environment) and `iam demo` (dev mode on SQLite,
seeded, with demo relying parties beside it)."""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import uvicorn

from iam import settings as iam_settings
from iam.app import SIMULATOR_PATH, create_app
from iam.cli.parser import open_engine, refuse_missing_database, require_migrated
from iam.db import migrate
from iam.db.store import Store
from iam.errors import IamError, ValidationError
from iam.logs import log_config
from iam.metrics import MULTIPROC_DIR_VARIABLE
from iam.secretbox import SecretBox
from iam.services.rate_limits import rules_from
from iam.settings import Settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from iam.cli.parser import Subcommands
    from iam.devtools.demo import DemoRelyingParty, DemoWorld, ExampleAuthorization


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
    refuse_missing_database(settings)
    with open_engine(settings) as engine:
        require_migrated(engine)
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
    with open_engine(settings) as engine:
        migrate.upgrade(engine)
        box = SecretBox(str(settings.secret_key))
        world = demo.seed_demo(Store(engine), box, settings.issuer)
        parties = demo.seed_relying_parties(Store(engine), settings.issuer, args.port)
    example = demo.example_authorization(world, settings.issuer)
    print(_demo_text(world, example, settings.issuer, parties), flush=True)
    _serve_in_background([(create_demo_app(p.config), p.port) for p in parties])
    app = create_app(settings)
    demo.connect_simulator(app.state.simulator, world)  # its events reach this server
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
    from iam.devtools.demo import workbench_lines  # dev-only, like the caller's imports

    apps = [f"  {p.config.title} (context policy {p.policy}): {p.config.base_url}" for p in parties]
    story = [
        "The story: open the CRM, sign in with the phone below (code in the outbox), pick 子公司A;",
        "open the learning platform: no subsidiary anywhere; sign out, then sign in through",
        "WeCom · 子公司B: the CRM takes B without asking.",
        f"A leaver: at {issuer}{SIMULATOR_PATH}/directory press “leaves the corporation” by "
        "zhangsan_A: the server disables 张三's 子公司A link at once.",
        *apps,
        "",
        *workbench_lines(parties, issuer),
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


def add_serve(commands: Subcommands) -> None:
    parser = commands.add_parser("serve", help="run the server (settings from IAM_* and .env)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, metavar="N")
    parser.set_defaults(run=_serve)


def add_demo(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "demo", help="dev mode on SQLite: migrate, seed a demo app and user, serve"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.set_defaults(run=_demo)
