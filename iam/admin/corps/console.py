"""Admin corporations: the console pages under /admin/corps. Each form's use case runs in one
worker call and one unit of work; the connection test is the API's (`api.tested`).

A corporation's page also shows its app's callback settings ("接收事件服务器"): whether they are
set (never their values), the URL to paste into WeCom, and a form that sets or replaces them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller
from iam.admin.corps.api import tested
from iam.admin.pages import Area, render, see_other
from iam.db.models import Admin, WeComCorp
from iam.db.unit import in_worker
from iam.errors import ConflictError, ValidationError
from iam.services import clients, corps
from iam.services.corps import ConnectionResult

#: Longest agent id the console reads (2**63 - 1 has 19 digits).
MAX_AGENT_ID_DIGITS = 19

#: A corporation that is gone answers "no such corporation", 404, on any page that names it.
area = Area("admin.corp.not_found")


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _posted(form: FormData) -> dict[str, Any]:
    """The fields the add and edit forms share, as posted (and as a refused form shows them
    again)."""
    return {
        "name": _text(form, "name"),
        "agent_id": _text(form, "agent_id"),
        "trust_mobile": "trust_mobile" in form,
    }


def _agent_id_of(text: str) -> int:
    """The agent id typed into a form (the service checks its range)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_AGENT_ID_DIGITS):
        raise ValidationError("agent_id", "The agent id is the app's positive number.")
    return int(text)


def _error_keys(error: ValidationError) -> dict[str, str]:
    return {error.field: f"admin.corp.invalid.{error.field}"}


#: What the callback form says about each of its fields when the service refuses it.
CALLBACK_ERRORS = {
    "callback_token": "admin.corp.invalid.callback_token",
    "encoding_aes_key": "admin.corp.invalid.encoding_aes_key",
}


def events_url(request: Request, corp_id: str) -> str:
    """Where WeCom sends this corporation's events: the URL to paste into its callback
    settings."""
    return f"{request.app.state.settings.issuer}/events/wecom/{corp_id}"


def sign_in_return_url(request: Request, corp_id: str) -> str:
    """Where WeCom sends people back after they sign in (OAuth's redirect_uri): its host must
    be the app's trusted domain (可信域名)."""
    return f"{request.app.state.settings.issuer}/callback/wecom/{quote(corp_id, safe='')}"


@dataclass(frozen=True)
class WorkbenchLink:
    """One app's link for this corporation's WeCom workbench (the app homepage, 应用主页)."""

    client_id: str
    app_name: str
    url: str


async def _workbench_links(request: Request, corp_id: str) -> list[WorkbenchLink]:
    """The link of each app that takes workbench sign-ins (has an `initiate_login_uri`)."""
    apps = await in_worker(request.app.state.store, clients.list_clients)
    issuer: str = request.app.state.settings.issuer
    return [
        WorkbenchLink(
            app.client_id, app.name, clients.workbench_link(issuer, app.client_id, corp_id)
        )
        for app in apps
        if app.initiate_login_uri
    ]


def _callback_state(corp: WeComCorp) -> str:
    """`set` (both), `unset` (neither) or `partial` (one of the two is missing)."""
    present = [corp.callback_token_encrypted, corp.encoding_aes_key_encrypted]
    count = sum(value is not None for value in present)
    return {0: "unset", 1: "partial", 2: "set"}[count]


async def _list_page(
    request: Request,
    admin: Admin,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    found = await in_worker(request.app.state.store, corps.list_corps)
    empty = {"corp_id": "", "name": "", "agent_id": "", "trust_mobile": False}
    context = {"corps": found, "form": form or empty, "errors": errors or {}}
    return render(request, "admin/corps.html", admin, context, status_code)


def _login_page_state(corp: WeComCorp) -> str:
    """Why the login page offers the corporation or not: `shown`, `shown_anyway` (an admin
    enabled it after a failed test), `hidden` (its last test failed) or `disabled`."""
    if not corp.enabled:
        return "disabled"
    if corp.hidden_by_test:
        return "hidden"
    return "shown_anyway" if corp.last_test_ok is False else "shown"


#: `?confirm=` on a corporation's page: the question asked before that action's POST.
CONFIRMATIONS = ("disable",)


async def _corp_page(
    request: Request,
    admin: Admin,
    corp: WeComCorp,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice_key: str | None = None,
    test: ConnectionResult | None = None,
    callback_errors: dict[str, str] | None = None,
    confirm: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "corp": corp,
        "callback_state": _callback_state(corp),
        "callback_url": events_url(request, corp.corp_id),
        "return_url": sign_in_return_url(request, corp.corp_id),
        "workbench_links": await _workbench_links(request, corp.corp_id),
        "callback_errors": callback_errors or {},
        "login_page": _login_page_state(corp),
        "last_problems": corp.last_test_problems or [],
        "confirm": confirm,
        "domain": corps.issuer_domain(request.app.state.settings.issuer),
        "form": form
        or {
            "name": corp.name,
            "agent_id": str(corp.agent_id),
            "trust_mobile": corp.trust_mobile,
        },
        "errors": errors or {},
        "notice_key": notice_key,
        "test": test,
        # WeCom's own words beside ours, unless our words already quote them
        "refused": bool(test and test.errcode and test.reason != corps.REFUSED),
        "wecom_words": corps.readable_errmsg(test.errmsg or "") if test else "",
    }
    return render(request, "admin/corp.html", admin, context, status_code)


async def _corp(request: Request) -> WeComCorp:
    """The corporation the path names; `NotFoundError` (the area's 404) if there is none."""
    corp_id = request.path_params["corp_id"]
    return await in_worker(request.app.state.store, lambda db: corps.get_corp(db, corp_id))


@area.page
async def list_page(request: Request, admin: Admin) -> Response:
    return await _list_page(request, admin)


@area.form
async def add(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/corps: connect a corporation; a refused form comes back without the secret."""
    values = {"corp_id": _text(form, "corp_id").strip(), **_posted(form)}
    secret = _text(form, "secret")
    state = request.app.state
    try:
        number = _agent_id_of(values["agent_id"])
        corp = await in_worker(
            state.store,
            lambda db: corps.add_corp(
                db,
                state.box,
                values["corp_id"],
                values["name"],
                number,
                secret,
                trust_mobile=values["trust_mobile"],
                actor=_actor(admin),
            ),
        )
    except ValidationError as error:
        return await _list_page(request, admin, values, _error_keys(error), 422)
    except ConflictError:
        return await _list_page(request, admin, values, {"corp_id": "admin.corp.taken"}, 409)
    return see_other(f"/admin/corps/{corp.corp_id}?done=added")


#: `?done=` after a change, and the notice it shows.
NOTICES = {
    "added": "admin.corp.added",
    "saved": "admin.corp.saved",
    "enabled": "admin.corp.enabled_now",
    "disabled": "admin.corp.disabled_now",
    "shown": "admin.corp.shown_now",
    "callback": "admin.corp.callback_saved",
}


@area.page
async def corp_page(request: Request, admin: Admin) -> Response:
    corp = await _corp(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    asked = request.query_params.get("confirm", "")
    confirm = asked if asked in CONFIRMATIONS and corp.enabled else None
    return await _corp_page(request, admin, corp, notice_key=notice, confirm=confirm)


async def _update(request: Request, admin: Admin, **changes: Any) -> None:
    """Change the corporation in the path (`corps.update_corp`), as this admin, in one unit."""
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    await in_worker(
        state.store,
        lambda db: corps.update_corp(db, state.box, corp_id, actor=_actor(admin), **changes),
    )


@area.form
async def edit(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/corps/{corp_id}: name, agent id, the trusted-mobile flag, and a new secret
    if one is typed. Enabling and disabling are not here: disabling asks first (the status
    card's buttons), and saving a name must never show a corporation a failed test hid."""
    values = _posted(form)
    secret = _text(form, "secret") or None
    corp_id = request.path_params["corp_id"]
    try:
        number = _agent_id_of(values["agent_id"])
        await _update(
            request,
            admin,
            name=values["name"],
            agent_id=number,
            secret=secret,
            trust_mobile=values["trust_mobile"],
        )
    except ValidationError as error:
        corp = await _corp(request)
        return await _corp_page(
            request, admin, corp, form=values, errors=_error_keys(error), status_code=422
        )
    return see_other(f"/admin/corps/{corp_id}?done=saved")


@area.form
async def callback(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/corps/{corp_id}/callback: a new Token, a new EncodingAESKey, or both; an
    empty field keeps what is stored. Nothing typed is ever shown back."""
    token = _text(form, "callback_token").strip() or None
    key = _text(form, "encoding_aes_key").strip() or None
    corp_id = request.path_params["corp_id"]
    try:
        if token is None and key is None:
            raise ValidationError("callback_token", "Type a Token, an EncodingAESKey, or both.")
        await _update(request, admin, callback_token=token, encoding_aes_key=key)
    except ValidationError as error:
        corp = await _corp(request)
        nothing = token is None and key is None
        message = "admin.corp.callback_nothing" if nothing else CALLBACK_ERRORS[error.field]
        errors = {error.field: message}
        return await _corp_page(request, admin, corp, callback_errors=errors, status_code=422)
    return see_other(f"/admin/corps/{corp_id}?done=callback")


async def _switch(request: Request, admin: Admin, enabled: bool, done: str) -> Response:
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    await in_worker(
        state.store,
        lambda db: corps.update_corp(db, state.box, corp_id, actor=_actor(admin), enabled=enabled),
    )
    return see_other(f"/admin/corps/{corp_id}?done={done}")


@area.form
async def enable(request: Request, admin: Admin, form: FormData) -> Response:
    """Enable it; an enabled corporation hidden by a failed test (the form's `show`) is shown on
    the login page again."""
    return await _switch(request, admin, True, "shown" if "show" in form else "enabled")


@area.form
async def disable(request: Request, admin: Admin, form: FormData) -> Response:
    """Logins through this corporation stop at once; its links and users stay."""
    return await _switch(request, admin, False, "disabled")


@area.form
async def connection_test(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/corps/{corp_id}/test: a live gettoken and agent/get, and what they found."""
    result = await tested(request, _actor(admin))
    corp = await _corp(request)
    return await _corp_page(request, admin, corp, test=result)
