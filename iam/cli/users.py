"""`iam users`: core users and their WeCom links."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from iam.cli.parser import Output, command_group, describe, iso, record_command
from iam.db.store import Store
from iam.errors import ValidationError
from iam.services import users
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands
    from iam.db.models import IdentityLink, User


def _users_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    record = _user_record(users.create_user(store, args.name, args.phone, args.email))
    return Output(record, describe(record))


def _users_link(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    link = users.link_wecom(
        store, args.user_id, args.corp_id, args.userid, _parse_metadata(args.metadata)
    )
    record = _link_record(link)
    return Output(record, describe(record))


def _users_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = users.show_user(store, args.user_id)
    user = _user_record(found.user)
    links = [_link_record(link) for link in found.links]
    lines = [f"  {r['provider_user_id']}  {r['status']}  link {r['link_id']}" for r in links]
    text = "\n".join([describe(user), "links:", *lines]) if lines else describe(user)
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
        "phone_verified_at": iso(user.phone_verified_at),
        "created_at": iso(user.created_at),
    }


def _link_record(link: IdentityLink) -> dict[str, Any]:
    return {
        "link_id": link.id,
        "provider": link.provider,
        "provider_user_id": link.provider_user_id,
        "user_id": link.user_id,
        "metadata": dict(link.link_metadata or {}),
        "status": link.status,
        "created_at": iso(link.created_at),
        "last_login_at": iso(link.last_login_at),
    }


def add_commands(commands: Subcommands) -> None:
    group = command_group(commands, "users", "core users and their WeCom links")
    create = record_command(group, "create", _users_create, "create a user")
    create.add_argument("--name", required=True)
    create.add_argument("--phone", required=True, help="+8613800138000 or 13800138000")
    create.add_argument("--email")
    link = record_command(group, "link", _users_link, "link a WeCom member to a user")
    link.add_argument("user_id", metavar="USER_ID")
    link.add_argument("--corp-id", required=True, metavar="ID")
    link.add_argument("--userid", required=True, metavar="UID")
    link.add_argument("--metadata", metavar="JSON", help="a JSON object kept with the link")
    show = record_command(group, "show", _users_show, "show a user with links")
    show.add_argument("user_id", metavar="USER_ID")
    listing = record_command(group, "list", _users_list, "list users, oldest first")
    listing.add_argument("--query", help="part of a name, email or phone")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="default: 100")
