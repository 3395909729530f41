"""The identity selector (`/select-identity`): which of the person's identities an app that needs
one gets. With no identity at all, the same page offers to link one through WeCom.

Its POST answers 303 in every case (on to the request, or back to the GET page with the
problem), so Back and reload never post again; a form refused before reading (CSRF, size)
answers its error page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from iam.db.models import IdentityLink
from iam.db.unit import in_worker
from iam.errors import ForbiddenError
from iam.flows.login import (
    FlowGoneError,
    after_post,
    client_ip,
    flow_context,
    in_unit,
    signed_in_person,
)
from iam.services import accounts, authorizations, corps, sessions
from iam.web import FormRefusedError, Web

TEMPLATE = "flows/select.html"
MAX_FLOW = 64


#: The selector's problems (`problem=` in the query after a refused POST) -> their message.
PROBLEMS = {"forbidden": "select.forbidden"}


def _to_flow(flow_id: str) -> Response:
    return after_post(f"/flow/{quote(flow_id)}", {})


def _back_to_page(flow_id: str, problem: str = "") -> Response:
    return after_post("/select-identity", {"flow": flow_id, "problem": problem})


def _choice(link: IdentityLink) -> dict[str, Any]:
    meta = link.link_metadata or {}
    return {
        "link_id": link.id,
        "corp_name": meta.get("corp_name") or meta.get("corpid") or link.provider,
        "position": meta.get("position") or "",
        "departments": [str(d) for d in meta.get("department") or []],
        "name": meta.get("name") or "",
        "userid": meta.get("userid") or link.provider_user_id,
        "avatar": meta.get("avatar") or "",
    }


async def _context(request: Request, flow_id: str) -> tuple[sessions.SignedIn | None, str | None]:
    """The browser's session (None: nobody is signed in) and the app name of `flow_id` (None:
    it is not this browser's live request)."""
    signed_in = await signed_in_person(request)
    if not flow_id:
        return signed_in, None
    try:
        app_name = (await flow_context(request, flow_id))["app_name"]
    except FlowGoneError:
        return signed_in, None
    return signed_in, str(app_name)


async def select_page(request: Request) -> Response:
    """GET /select-identity?flow=: one button per active identity, or the offer to link one."""
    web: Web = request.app.state.web
    store = request.app.state.store
    flow_id = request.query_params.get("flow", "")[:MAX_FLOW]
    signed_in, app_name = await _context(request, flow_id)
    if signed_in is None or app_name is None:
        if signed_in is not None:  # Back after the request was answered: home
            return after_post("/", {})
        if app_name is not None:  # signed out meanwhile: sign in for the request
            return after_post("/login", {"flow": flow_id})
        return web.error_page(request, "error.flow_expired")
    user_id = signed_in.user.id
    links = await in_unit(request, lambda db, _first: accounts.active_links(db, user_id))
    context: dict[str, Any] = {"flow": flow_id, "app_name": app_name}
    problem = request.query_params.get("problem", "")
    if problem in PROBLEMS:
        context["error_key"] = PROBLEMS[problem]
    if links:
        context["choices"] = [_choice(link) for link in links]
        context["current"] = signed_in.session.context_link_id
    else:
        found_corps = await in_worker(store, lambda db: corps.list_corps(db, on_login_page=True))
        query = urlencode({"flow": flow_id, "link": "1"})
        context["offers"] = [
            {"href": f"/login/wecom/{quote(corp.corp_id)}?{query}", "name": corp.name}
            for corp in found_corps
        ]
    return web.render(request, TEMPLATE, context)


async def submit(request: Request) -> Response:
    """POST /select-identity: `link_id` of one of the session user's active identities, or
    `cancel` (the app gets access_denied). Anything else changes nothing."""
    web: Web = request.app.state.web
    store = request.app.state.store
    try:
        form = await web.read_form(request)
    except FormRefusedError as refused:
        return web.error_page(request, refused.message_key, refused.status_code)
    flow_id = str(form.get("flow") or "")[:MAX_FLOW]
    signed_in, app_name = await _context(request, flow_id)
    if signed_in is None or app_name is None:
        return _back_to_page(flow_id)  # its GET says where to go
    if form.get("cancel") is not None:
        browser_id = web.browser_id(request)
        await in_worker(store, lambda db: authorizations.deny(db, flow_id, browser_id))
        return _to_flow(flow_id)
    link_id = str(form.get("link_id") or "")
    try:
        sid, ip = signed_in.session.id, client_ip(request)
        await in_unit(request, lambda db, _first: sessions.choose_context(db, sid, link_id, ip=ip))
    except ForbiddenError:
        return _back_to_page(flow_id, "forbidden")
    return _to_flow(flow_id)
