"""`iam users`: core users and their WeCom links."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from iam.cli.parser import Output, command_group, describe, record_command
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.errors import ValidationError
from iam.records.users import Link, User, UserDetail
from iam.services import users
from iam.settings import Settings

if TYPE_CHECKING:
    from iam.cli.parser import Subcommands
    from iam.db.models import IdentityLink


def _users_create(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    user = one_unit(store, lambda db: users.create_user(db, args.name, args.phone, args.email))
    record = _user_record(User.of(user, link_count=0))
    return Output(record, describe(record))


def _users_link(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    metadata = _parse_metadata(args.metadata)
    link = one_unit(
        store,
        lambda db: users.link_wecom(db, args.user_id, args.corp_id, args.userid, metadata),
    )
    record = _link_record(link)
    return Output(record, describe(record))


def _users_show(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = one_unit(store, lambda db: users.user_detail(db, args.user_id))
    links = [_link_record(link) for link in found.links]
    detail = UserDetail.found(found).to_json()
    user = _user_record(User.of(found.user, len(found.links)))
    lines = [f"  {r['provider_user_id']}  {r['status']}  link {r['link_id']}" for r in links]
    text = "\n".join([describe(user), "links:", *lines]) if lines else describe(user)
    return Output({**user, **detail, "links": links}, text)


def _users_list(args: argparse.Namespace, store: Store, settings: Settings) -> Output:
    found = one_unit(
        store, lambda db: users.search_users(db, args.query, limit=args.limit, offset=0)
    )
    records = [_user_record(User.of(row.user, row.link_count)) for row in found]
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
    """The API's record, led by the contract's name for its id (`user_id`, the `sub`)."""
    return {"user_id": user.id, **user.to_json()}


def _link_record(link: IdentityLink) -> dict[str, Any]:
    """The API's record, with the contract's `link_id` first and the person it belongs to."""
    return {"link_id": link.id, **Link.of(link).to_json(), "user_id": link.user_id}


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
    listing.add_argument(
        "--query", help="part of a name, email, phone or WeCom userid (as the console searches)"
    )
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="default: 100")
