"""Admin users: the console pages under /admin/users. Each page or form runs its use case as
one unit of work in a worker thread."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller, client_ip
from iam.admin.pages import Area, message, render, see_other
from iam.db.models import Admin
from iam.db.unit import in_worker
from iam.errors import ValidationError
from iam.records.users import MAX_OFFSET, PAGE_SIZE
from iam.services import users

STATUSES = ("active", "disabled")
#: What the user page may say after a change (the `done` query parameter).
DONE = ("disabled", "enabled", "ended", "link_removed")

#: A user (or link) that is gone answers "no such user", 404, on any page that names it.
area = Area("admin.user_not_found")


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _count(raw: str | None) -> int:
    """A small count from the console's own links; anything else reads as 0."""
    return int(raw) if raw and len(raw) <= 9 and raw.isascii() and raw.isdigit() else 0


@area.page
async def users_page(request: Request, admin: Admin) -> Response:
    """The search box and one page of results."""
    query = request.query_params.get("q", "")
    offset = min(_count(request.query_params.get("offset")), MAX_OFFSET)
    context: dict[str, Any] = {"q": query, "rows": [], "next_url": None, "previous_url": None}
    try:
        rows = await in_worker(
            request.app.state.store,
            lambda db: users.search_users(db, query, limit=PAGE_SIZE + 1, offset=offset),
        )
    except ValidationError:
        context["error_key"] = "admin.user_query_too_long"
        return render(request, "admin/users.html", admin, context, 400)
    context["rows"] = rows[:PAGE_SIZE]
    if len(rows) > PAGE_SIZE:
        context["next_url"] = "?" + urlencode({"q": query, "offset": offset + PAGE_SIZE})
    if offset:
        context["previous_url"] = "?" + urlencode(
            {"q": query, "offset": max(0, offset - PAGE_SIZE)}
        )
    return render(request, "admin/users.html", admin, context)


async def _user_page(
    request: Request, admin: Admin, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    user_id = request.path_params["user_id"]
    found = await in_worker(request.app.state.store, lambda db: users.user_detail(db, user_id))
    done = request.query_params.get("done")
    context = {
        "user": found.user,
        "links": found.links,
        "sessions": found.sessions,
        "link_by_id": {link.id: link for link in found.links},
        "done": done if done in DONE else None,
        "count": _count(request.query_params.get("n")),
        **(extra or {}),
    }
    return render(request, "admin/user.html", admin, context, status_code)


@area.page
async def user_page(request: Request, admin: Admin) -> Response:
    """One person: details, links, live sessions, and what can be done to them."""
    return await _user_page(request, admin)


@area.page
async def confirm_remove_page(request: Request, admin: Admin) -> Response:
    """Removing a link asks first (no script needed: the question is a page)."""
    return await _user_page(request, admin, {"confirm_link_id": request.path_params["link_id"]})


def _back_to(user_id: str, done: str, count: int | None = None) -> Response:
    query = {"done": done, **({"n": str(count)} if count is not None else {})}
    return see_other(f"/admin/users/{user_id}?{urlencode(query)}")


@area.form
async def status_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users/{user_id}/status: `status` active or disabled."""
    status = form.get("status")
    if status not in STATUSES:
        return message(request, admin, "admin.user_bad_status", 400)
    user_id, actor, ip = request.path_params["user_id"], _actor(admin), client_ip(request)
    user = await in_worker(
        request.app.state.store,
        lambda db: users.set_user_status(db, user_id, status == "active", actor=actor, ip=ip),
    )
    return _back_to(user.id, "enabled" if status == "active" else "disabled")


@area.form
async def end_sessions_form(request: Request, admin: Admin, form: FormData) -> Response:
    user_id, actor, ip = request.path_params["user_id"], _actor(admin), client_ip(request)
    ended = await in_worker(
        request.app.state.store,
        lambda db: users.end_user_sessions(db, user_id, actor=actor, ip=ip),
    )
    return _back_to(user_id, "ended", ended)


@area.form
async def remove_link_form(request: Request, admin: Admin, form: FormData) -> Response:
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    actor, ip = _actor(admin), client_ip(request)
    await in_worker(
        request.app.state.store,
        lambda db: users.remove_link(db, user_id, link_id, actor=actor, ip=ip),
    )
    return _back_to(user_id, "link_removed")
