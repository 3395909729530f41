"""`iam corps`: WeCom corporations and their self-built apps."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from iam import settings as iam_settings
from iam.app import directory_lookup, shared_redis
from iam.cli.parser import (
    Output,
    command_group,
    describe,
    open_engine,
    record_command,
    require_migrated,
)
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.federation.wecom.client import WeComClient, new_http_client
from iam.federation.wecom.tokens import MemoryTokenCache, RedisTokenCache
from iam.i18n import translator
from iam.records.corps import ConnectionTest, Corp
from iam.secretbox import SecretBox
from iam.services import corps, directory
from iam.services.corps import ConnectionResult
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
CALLBACK_TOKEN_HELP = (
    "the Token of the app's callback settings (接收事件服务器): 1 to 32 letters and digits, "
    "kept encrypted"
)
AES_KEY_HELP = (
    "the EncodingAESKey of the app's callback settings: 43 letters and digits, kept encrypted"
)


def _box(settings: Settings) -> SecretBox:
    return SecretBox(str(settings.secret_key))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """What `add` and `update` both take: the trusted-mobile flag and the callback settings."""
    return {
        "trust_mobile": args.trust_mobile,
        "callback_token": args.callback_token,
        "encoding_aes_key": args.encoding_aes_key,
    }


def _corps_add(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """The corporation as the admin API shows it (the `Corp` record: never the secret, nor the
    callback settings)."""
    box = _box(settings)
    corp = one_unit(
        store,
        lambda db: corps.add_corp(
            db,
            box,
            args.corp_id,
            args.name,
            args.agent_id,
            args.secret,
            **_options(args),
        ),
    )
    record = Corp.of(corp).to_json()
    return Output(record, describe(record))


def _corps_update(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """Change what is given; the corporation as it is now (the `Corp` record)."""
    box = _box(settings)
    corp = one_unit(
        store,
        lambda db: corps.update_corp(
            db,
            box,
            args.corp_id,
            actor="cli",
            name=args.name,
            secret=args.secret,
            enabled=args.enabled,
            **_options(args),
        ),
    )
    record = Corp.of(corp).to_json()
    return Output(record, describe(record))


def _corps_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    records = [Corp.of(corp).to_json() for corp in one_unit(store, corps.list_corps)]
    lines = [
        f"{r['corp_id']}  agent {r['agent_id']}  {'trusted mobile  ' if r['trust_mobile'] else ''}"
        f"{r['name']}"
        f"{'  [hidden from the login page: its last test failed]' if r['hidden_by_test'] else ''}"
        for r in records
    ]
    return Output({"corps": records}, "\n".join(lines) or "no corporations")


@contextmanager
def _wecom(settings: Settings) -> Iterator[WeComClient]:
    """WeCom at `IAM_WECOM_API_BASE`, as `iam serve` reaches it: access tokens shared with the
    servers through Redis when `IAM_REDIS_URL` is set (no extra gettoken), in this process
    otherwise."""
    shared = shared_redis(settings)
    http = new_http_client()
    cache = RedisTokenCache(shared) if shared else MemoryTokenCache()
    try:
        yield WeComClient(settings.wecom_api_base, http, cache)
    finally:
        http.close()
        if shared is not None:
            shared.close()


def _test_text(corp_id: str, result: ConnectionResult, domain: str) -> str:
    """The connection test in plain words (the console's, in English)."""
    t = translator("en")
    if result.ok:
        passed = t(
            "admin.corp.test.ok",
            expires_in=result.expires_in,
            app_name=result.app_name or "",
            domain=domain,
        )
        return f"{corp_id}: the connection test passed. {passed}"
    lines = [
        f"{corp_id}: the connection test FAILED. The login page leaves this corporation out until "
        f"a test passes (or `iam corps update {corp_id} --enable` shows it anyway). Found:"
    ]
    lines += [f"  - {t(problem.reason, **problem.params)}" for problem in result.problems]
    if result.errcode:
        lines.append(f"  WeCom answered {result.api}: errcode {result.errcode}, {result.errmsg}")
    if result.detail:
        lines.append(f"  details: {result.detail}")
    lines.append("  Setting up the app in WeCom, step by step: docs/wecom-setup.md")
    return "\n".join(lines)


def _corps_test(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """A live gettoken and agent/get for one corporation (`corps.test_connection`), kept on the
    corporation and audited like the console's button; the `ConnectionTest` record with its
    `corp_id`."""
    domain = corps.issuer_domain(settings.issuer)
    with _wecom(settings) as wecom:
        result = corps.test_connection(
            store, _box(settings), wecom, args.corp_id, domain=domain, actor="cli"
        )
    record = {"corp_id": args.corp_id, **ConnectionTest.of(result).to_json()}
    return Output(record, _test_text(args.corp_id, result, domain))


def _run_test(args: argparse.Namespace) -> int:
    """`iam corps test`: as every record command, except that a failed test (printed all the
    same) exits 1."""
    settings = iam_settings.load()
    with open_engine(settings) as engine:
        require_migrated(engine)
        output = _corps_test(args, Store(engine), settings)
    print(json.dumps(output.record) if args.json else output.text)
    return 0 if output.record["ok"] else 1


def _sync_record(summary: directory.SyncSummary) -> dict[str, Any]:
    return {
        "corp_id": summary.corp_id,
        "checked": summary.checked,
        "disabled": summary.disabled,
        "refreshed": summary.refreshed,
        "unchanged": summary.unchanged,
        "failed": summary.failed,
        "failed_userids": summary.failed_userids,
        "events": summary.events,
        "events_left": summary.events_left,
    }


def _sync_text(record: dict[str, Any]) -> str:
    line = (
        f"{record['corp_id']}: {record['checked']} checked, {record['disabled']} disabled, "
        f"{record['refreshed']} refreshed, {record['unchanged']} unchanged, "
        f"{record['failed']} failed; {record['events']} stored events handled"
    )
    if record["events_left"]:
        line += f", {record['events_left']} left for the next sync"
    if record["failed_userids"]:
        line += "\n  not checked (next sync): " + ", ".join(record["failed_userids"])
    return line


def _corps_sync(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    """Reconcile the active links of one corporation (every enabled one without CORP_ID) with
    the WeCom directory now: stored events not handled yet first, then each member asked,
    paced (`iam.services.directory.reconcile`)."""
    # An unknown or disabled corporation is refused before WeCom is reached.
    one_unit(store, lambda db: directory.sync_targets(db, args.corp_id))
    with _wecom(settings) as wecom:
        look_up = directory_lookup(settings, store, _box(settings), wecom)
        summaries = directory.reconcile_all(store, look_up, args.corp_id)
    records = [_sync_record(summary) for summary in summaries]
    text = "\n".join(map(_sync_text, records)) or "no enabled corporations to sync"
    return Output({"corps": records}, text)


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
    add.add_argument(
        "--callback-token", metavar="T", help=CALLBACK_TOKEN_HELP + " (with --encoding-aes-key)"
    )
    add.add_argument(
        "--encoding-aes-key", metavar="K", help=AES_KEY_HELP + " (with --callback-token)"
    )
    record_command(group, "list", _corps_list, "list connected corporations")
    update = record_command(
        group, "update", _corps_update, "change a corporation: what is given, the rest stays"
    )
    update.add_argument("corp_id", metavar="CORP_ID")
    update.add_argument("--name", metavar="N")
    update.add_argument("--secret", metavar="S", help="a new app secret (kept encrypted)")
    update.add_argument("--callback-token", metavar="T", help=CALLBACK_TOKEN_HELP)
    update.add_argument("--encoding-aes-key", metavar="K", help=AES_KEY_HELP)
    update.add_argument(
        "--trust-mobile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=TRUST_MOBILE_HELP + " (--no-trust-mobile: every binding proves the number by SMS)",
    )
    switch = update.add_mutually_exclusive_group()
    switch.add_argument(
        "--enable",
        dest="enabled",
        action="store_const",
        const=True,
        help="enable it; also shows it on the login page when its last connection test failed",
    )
    switch.add_argument(
        "--disable",
        dest="enabled",
        action="store_const",
        const=False,
        help="disable it: sign-ins through it stop at once (its links and users stay)",
    )
    test = record_command(
        group,
        "test",
        _corps_test,
        "test the connection now: a live gettoken, then agent/get (app enabled, trusted "
        "domain, visible range, this server's address trusted); exit 1 when it fails. A failed "
        "test hides the corporation from the login page, a passing one shows it again",
    )
    test.add_argument("corp_id", metavar="CORP_ID")
    test.set_defaults(run=_run_test)
    sync = record_command(
        group,
        "sync",
        _corps_sync,
        "check every active link against the WeCom directory now (callbacks get lost): "
        "disable leavers, refresh changed members, handle stored events",
    )
    sync.add_argument(
        "corp_id", nargs="?", metavar="CORP_ID", help="one corporation (all enabled ones without)"
    )
