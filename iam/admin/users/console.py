"""Admin users: the console pages under /admin/users. Each page or form runs its use case as
one unit of work in a worker thread; linking a WeCom member by hand first asks WeCom, with no
unit open (a slow WeCom must not hold a pooled connection).

Every destructive action (disabling, ending sessions, removing a link) is asked first on its
own page (`confirm.html`, no script needed), whose red button posts the action."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import anyio.to_thread
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller, client_ip
from iam.admin.pages import Area, message, render, see_other
from iam.db.models import Admin
from iam.db.unit import in_worker
from iam.errors import NotFoundError, ValidationError
from iam.federation.connector import Identity, UpstreamUnavailableError
from iam.federation.wecom.client import WeComApiError
from iam.records.users import PAGE_SIZE
from iam.services import corps, users

STATUSES = ("active", "disabled")
#: What the user page may say after a change (the `done` query parameter).
DONE = (
    "disabled",
    "enabled",
    "ended",
    "link_removed",
    "created",
    "saved",
    "unchanged",
    "linked",
    "session_ended",
)

#: A user (or link) that is gone answers "no such user", 404, on any page that names it.
area = Area("admin.user_not_found")


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _count(raw: str | None) -> int:
    """A small count from the console's own links; anything else reads as 0."""
    return int(raw) if raw and len(raw) <= 9 and raw.isascii() and raw.isdigit() else 0


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _user_path(user_id: str) -> str:
    return f"/admin/users/{quote(user_id, safe='')}"


# --- the list and a new person ---------------------------------------------------------------


#: How the list says its total: exactly, about (an estimate), more than (a capped count).
RANGE_KEYS = {
    "exact": "admin.user_range",
    "about": "admin.user_range_about",
    "more_than": "admin.user_range_more",
}


@dataclass(frozen=True)
class Pages:
    """Where one page of results sits among all: "1–50 of 1,234" (or "of about 1,000,000",
    "of more than 10,000"), and the links around it. The links carry a cursor (the row the page
    starts after, or ends before) and the number of its first row, which only numbers the rows
    shown: the rows themselves come from the cursor."""

    first: int
    last: int
    total: users.Total
    previous_url: str | None
    next_url: str | None

    @property
    def range_key(self) -> str:
        return RANGE_KEYS[self.total.kind]

    @classmethod
    def of(cls, query: str, page: Page, total: users.Total) -> Pages:
        def url(**where: str | int) -> str:
            return "?" + urlencode({**({"q": query} if query else {}), **where})

        rows, first = page.rows, page.first
        return cls(
            first=first if rows else 0,
            last=first + len(rows) - 1 if rows else 0,
            total=total,
            previous_url=(
                url(before=users.Cursor.of(rows[0].user).text, n=max(1, first - PAGE_SIZE))
                if rows and page.earlier
                else None
            ),
            next_url=(
                url(after=users.Cursor.of(rows[-1].user).text, n=first + len(rows))
                if rows and page.later
                else None
            ),
        )


@dataclass(frozen=True)
class Page:
    """One page of the list: its rows, the number of the first, and whether rows come before
    and after it."""

    rows: list[users.UserSummary]
    first: int
    earlier: bool
    later: bool


def _page(db: Any, query: str, params: Mapping[str, str]) -> Page:
    """The page the links ask for: after a row (`after`), before one (`before`: the previous
    page; the first page when fewer than a page's rows come before), or the first. `n` is the
    number of its first row."""
    number = max(1, _count(params.get("n")))
    after, before = params.get("after"), params.get("before")
    if before:
        end = users.Cursor.read(before, "before")
        found = users.search_users(db, query, limit=PAGE_SIZE + 1, before=end)
        if len(found) > PAGE_SIZE:
            return Page(found[1:], max(2, number), earlier=True, later=True)
        after = None  # the start of the list: the first page, whole
    start = users.Cursor.read(after) if after else None
    found = users.search_users(db, query, limit=PAGE_SIZE + 1, after=start)
    first = number if start else 1
    return Page(found[:PAGE_SIZE], first, earlier=start is not None, later=len(found) > PAGE_SIZE)


@area.page
async def users_page(request: Request, admin: Admin) -> Response:
    """The search box, one page of results, how many in all, and the way to add a person."""
    query = request.query_params.get("q", "")
    context: dict[str, Any] = {"q": query, "rows": [], "pages": None}

    def found(db: Any) -> tuple[Page, users.Total]:
        page = _page(db, query, request.query_params)
        return page, users.count_users(db, query)

    try:
        page, total = await in_worker(request.app.state.store, found)
    except ValidationError as refused:
        context["error_key"] = (
            "admin.user_query_too_long" if refused.field == "q" else "admin.user_bad_page"
        )
        if refused.field != "q":  # the same search, from its first page
            context["first_page_url"] = "/admin/users" + (
                f"?{urlencode({'q': query})}" if query else ""
            )
        return render(request, "admin/users.html", admin, context, 400)
    context["rows"] = page.rows
    context["pages"] = Pages.of(query, page, total)
    return render(request, "admin/users.html", admin, context)


#: What a details form says about each refused field.
DETAIL_ERRORS = {
    "name": "admin.user_invalid_name",
    "phone": "admin.user_invalid_phone",
    "email": "admin.user_invalid_email",
}


@dataclass
class Details:
    """A person's details as a form posted them, and what is wrong with them."""

    name: str = ""
    phone: str = ""
    email: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    #: The person who has the phone already, when that is what is wrong.
    phone_owner: str | None = None

    @classmethod
    def posted(cls, form: FormData, *, phone_required: bool) -> Details:
        details = cls(_text(form, "name"), _text(form, "phone"), _text(form, "email"))
        invalid = users.invalid_details(
            details.name, details.phone, details.email, phone_required=phone_required
        )
        details.errors = {name: DETAIL_ERRORS[name] for name in invalid}
        return details

    def taken(self, error: users.PhoneTakenError) -> Details:
        self.errors = {"phone": "admin.user_phone_taken"}
        self.phone_owner = error.user_id
        return self


@area.page
async def new_user_page(request: Request, admin: Admin) -> Response:
    """GET /admin/users/new: the form that adds a person."""
    return render(request, "admin/user_new.html", admin, {"details": Details()})


@area.form
async def create_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users: a new person (name, phone, email); a refused form comes back with
    each field at fault marked, and nothing is created."""
    details = Details.posted(form, phone_required=True)
    if details.errors:
        return render(request, "admin/user_new.html", admin, {"details": details}, 422)
    actor, ip = _actor(admin), client_ip(request)
    try:
        user = await in_worker(
            request.app.state.store,
            lambda db: users.create_user(
                db, details.name, details.phone, details.email, actor=actor, ip=ip
            ),
        )
    except users.PhoneTakenError as error:
        context = {"details": details.taken(error)}
        return render(request, "admin/user_new.html", admin, context, 409)
    return see_other(f"{_user_path(user.id)}?done=created")


# --- one person ------------------------------------------------------------------------------


async def _user_page(
    request: Request, admin: Admin, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    user_id = request.path_params["user_id"]
    store = request.app.state.store

    def load(db: Any) -> tuple[users.UserDetail, list[Any]]:
        return users.user_detail(db, user_id), corps.list_corps(db, enabled_only=True)

    found, connected = await in_worker(store, load)
    done = request.query_params.get("done")
    user = found.user
    context = {
        "user": user,
        "links": found.links,
        "sessions": found.sessions,
        "link_by_id": {link.id: link for link in found.links},
        "corps": connected,
        "done": done if done in DONE else None,
        "count": _count(request.query_params.get("n")),
        "details": Details(user.name, user.phone or "", user.email or ""),
        "link_form": {"corp_id": "", "userid": ""},
        **(extra or {}),
    }
    return render(request, "admin/user.html", admin, context, status_code)


@area.page
async def user_page(request: Request, admin: Admin) -> Response:
    """One person: details, links, live sessions, and what can be done to them."""
    return await _user_page(request, admin)


@area.page
async def back_to_user(request: Request, admin: Admin) -> Response:
    """A GET on a URL that only takes a form's POST: the person's page."""
    return see_other(_user_path(request.path_params["user_id"]))


def _back_to(user_id: str, done: str, count: int | None = None) -> Response:
    query = {"done": done, **({"n": str(count)} if count is not None else {})}
    return see_other(f"{_user_path(user_id)}?{urlencode(query)}")


@area.form
async def edit_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users/{user_id}/edit: name, phone, email (an empty phone or email removes it)."""
    details = Details.posted(form, phone_required=False)
    if details.errors:
        return await _user_page(request, admin, {"details": details, "editing": True}, 422)
    user_id, actor, ip = request.path_params["user_id"], _actor(admin), client_ip(request)
    try:
        changed = await in_worker(
            request.app.state.store,
            lambda db: users.update_user(
                db,
                user_id,
                name=details.name,
                phone=details.phone,
                email=details.email,
                actor=actor,
                ip=ip,
            ),
        )
    except users.PhoneTakenError as error:
        extra = {"details": details.taken(error), "editing": True}
        return await _user_page(request, admin, extra, 409)
    return _back_to(user_id, "saved" if changed else "unchanged")


@area.form
async def status_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users/{user_id}/status: `status` active or disabled (the disable
    confirmation's form)."""
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
async def end_session_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users/{user_id}/sessions/{sid}/end: sign one browser out."""
    user_id, sid = request.path_params["user_id"], request.path_params["sid"]
    actor, ip = _actor(admin), client_ip(request)
    try:
        await in_worker(
            request.app.state.store,
            lambda db: users.end_user_session(db, user_id, sid, actor=actor, ip=ip),
        )
    except NotFoundError:
        return await _user_page(request, admin, {"error_key": "admin.user_session_gone"}, 404)
    return _back_to(user_id, "session_ended")


@area.form
async def remove_link_form(request: Request, admin: Admin, form: FormData) -> Response:
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    actor, ip = _actor(admin), client_ip(request)
    await in_worker(
        request.app.state.store,
        lambda db: users.remove_link(db, user_id, link_id, actor=actor, ip=ip),
    )
    return _back_to(user_id, "link_removed")


# --- linking a WeCom member by hand ----------------------------------------------------------


class LinkRefusedError(Exception):
    """The hand link is refused: `message_key` says why (with `params`), `status_code` how."""

    def __init__(self, message_key: str, status_code: int, **params: Any) -> None:
        super().__init__(message_key)
        self.message_key = message_key
        self.status_code = status_code
        self.params = params


#: What the link form says about each refused field.
LINK_FIELD_ERRORS = {
    "corp_id": "admin.user_link_invalid_corp_id",
    "userid": "admin.user_link_invalid_userid",
}


async def _member(request: Request, corp_id: str, userid: str) -> Identity:
    """The member as the corporation's directory shows them now (WeCom's user/get, asked
    with no unit open). Refused when WeCom does not know them (or they left), refuses to say,
    or cannot be reached: a link is made only to a member WeCom has just vouched for, so a
    typo never binds a stranger's userid to a person (the directory sync would only disable
    it later, and a later member of that userid would sign in as this person)."""
    try:
        users.wecom_subject(corp_id, userid)
    except ValidationError as error:
        raise LinkRefusedError(LINK_FIELD_ERRORS[error.field], 422) from None
    look_up = request.app.state.directory_lookup
    try:
        identity: Identity | None = await anyio.to_thread.run_sync(look_up, corp_id, userid)
    except NotFoundError:  # not connected, or disabled meanwhile
        raise LinkRefusedError(LINK_FIELD_ERRORS["corp_id"], 422) from None
    except WeComApiError as refused:
        raise LinkRefusedError("admin.user_link_wecom_refused", 502, code=refused.code) from None
    except UpstreamUnavailableError:
        raise LinkRefusedError("admin.user_link_wecom_down", 503) from None
    if identity is None:
        raise LinkRefusedError("admin.user_link_unknown_member", 422, userid=userid)
    return identity


@area.form
async def add_link_form(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/users/{user_id}/links: `corp_id` (a connected corporation) and `userid`;
    linked once WeCom says who that member is, refused otherwise (nothing is linked)."""
    user_id, actor, ip = request.path_params["user_id"], _actor(admin), client_ip(request)
    corp_id, userid = _text(form, "corp_id").strip(), _text(form, "userid").strip()
    store = request.app.state.store
    await in_worker(store, lambda db: users.user_detail(db, user_id))  # 404 before asking WeCom
    try:
        identity = await _member(request, corp_id, userid)
        await in_worker(
            store, lambda db: users.link_member(db, user_id, identity, actor=actor, ip=ip)
        )
    except LinkRefusedError as refused:
        extra = {
            "link_form": {"corp_id": corp_id, "userid": userid},
            "link_error": refused,
        }
        return await _user_page(request, admin, extra, refused.status_code)
    except users.LinkTakenError as taken:
        extra = {
            "link_form": {"corp_id": corp_id, "userid": userid},
            "link_error": LinkRefusedError(
                "admin.user_link_taken_here"
                if taken.user_id == user_id
                else "admin.user_link_taken",
                409,
            ),
            "link_owner": taken.user_id,
        }
        return await _user_page(request, admin, extra, 409)
    return _back_to(user_id, "linked")


# --- asking first ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """A destructive action's confirmation: what it asks, the form its red button posts."""

    title_key: str
    text_key: str
    action: str
    button_key: str
    params: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


async def _ask(request: Request, admin: Admin, question: Question) -> Response:
    user_id = request.path_params["user_id"]
    found = await in_worker(request.app.state.store, lambda db: users.user_detail(db, user_id))
    context = {"user": found.user, "question": question, "sessions": found.sessions}
    return render(request, "admin/user_confirm.html", admin, context)


@area.page
async def confirm_disable_page(request: Request, admin: Admin) -> Response:
    """GET /admin/users/{user_id}/disable: disabling asks first."""
    path = _user_path(request.path_params["user_id"])
    question = Question(
        "admin.user_disable_title",
        "admin.user_disable_confirm",
        f"{path}/status",
        "admin.user_disable_yes",
        fields={"status": "disabled"},
    )
    return await _ask(request, admin, question)


@area.page
async def confirm_end_sessions_page(request: Request, admin: Admin) -> Response:
    """GET /admin/users/{user_id}/sessions/end: ending every session asks first."""
    path = _user_path(request.path_params["user_id"])
    question = Question(
        "admin.user_end_sessions",
        "admin.user_end_sessions_confirm",
        f"{path}/sessions/end",
        "admin.user_end_sessions_yes",
    )
    return await _ask(request, admin, question)


@area.page
async def confirm_end_session_page(request: Request, admin: Admin) -> Response:
    """GET /admin/users/{user_id}/sessions/{sid}/end: ending one session asks first."""
    user_id, sid = request.path_params["user_id"], request.path_params["sid"]
    found = await in_worker(request.app.state.store, lambda db: users.user_detail(db, user_id))
    session = next((sso for sso in found.sessions if sso.id == sid), None)
    if session is None:
        return await _user_page(request, admin, {"error_key": "admin.user_session_gone"}, 404)
    question = Question(
        "admin.user_end_session",
        "admin.user_end_session_confirm",
        f"{_user_path(user_id)}/sessions/{quote(sid, safe='')}/end",
        "admin.user_end_session_yes",
        params={"ip": session.ip or "?"},
    )
    context = {"user": found.user, "question": question, "session": session}
    return render(request, "admin/user_confirm.html", admin, context)


@area.page
async def confirm_remove_page(request: Request, admin: Admin) -> Response:
    """Removing a link asks first (no script needed: the question is a page)."""
    user_id, link_id = request.path_params["user_id"], request.path_params["link_id"]
    found = await in_worker(request.app.state.store, lambda db: users.user_detail(db, user_id))
    link = next((link for link in found.links if link.id == link_id), None)
    if link is None:
        return await _user_page(request, admin, {"error_key": "admin.user_link_gone"}, 404)
    question = Question(
        "admin.user_link_remove",
        "admin.user_link_remove_confirm",
        f"{_user_path(user_id)}/links/{quote(link_id, safe='')}/remove",
        "admin.user_link_remove_yes",
        params={"subject": link.provider_user_id},
    )
    return render(
        request, "admin/user_confirm.html", admin, {"user": found.user, "question": question}
    )
