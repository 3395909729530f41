"""The identity selector (`/select-identity`): which of the person's identities an app that needs
one gets. With no identity at all, the same page offers to link one through WeCom."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam.db.models import IdentityLink
from iam.db.unit import in_worker
from iam.errors import ForbiddenError
from iam.flows.login import FlowGoneError, client_ip, flow_context, in_unit, signed_in_person
from iam.services import accounts, authorizations, corps, sessions
from iam.web import FormRefusedError, Web

TEMPLATE = "flows/select.html"
MAX_FLOW = 64


def _to_flow(flow_id: str) -> Response:
    return RedirectResponse(f"/flow/{quote(flow_id)}", status_code=303)


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


async def _context(request: Request, flow_id: str) -> tuple[sessions.SignedIn, str] | None:
    """The session and the app name, when `flow_id` is this browser's live request and the
    browser is signed in; None otherwise."""
    if not flow_id:
        return None
    try:
        app_name = (await flow_context(request, flow_id))["app_name"]
    except FlowGoneError:
        return None
    signed_in = await signed_in_person(request)
    if signed_in is None:
        return None
    return signed_in, app_name


async def select_page(request: Request) -> Response:
    """GET /select-identity?flow=: one button per active identity, or the offer to link one."""
    web: Web = request.app.state.web
    store = request.app.state.store
    flow_id = request.query_params.get("flow", "")[:MAX_FLOW]
    found = await _context(request, flow_id)
    if found is None:
        return web.error_page(request, "error.flow_expired")
    signed_in, app_name = found
    user_id = signed_in.user.id
    links = await in_unit(request, lambda db, _first: accounts.active_links(db, user_id))
    context: dict[str, Any] = {"flow": flow_id, "app_name": app_name}
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
    found = await _context(request, flow_id)
    if found is None:
        return web.error_page(request, "error.flow_expired")
    signed_in, _app_name = found
    if form.get("cancel") is not None:
        browser_id = web.browser_id(request)
        await in_worker(store, lambda db: authorizations.deny(db, flow_id, browser_id))
        return _to_flow(flow_id)
    link_id = str(form.get("link_id") or "")
    try:
        sid, ip = signed_in.session.id, client_ip(request)
        await in_unit(request, lambda db, _first: sessions.choose_context(db, sid, link_id, ip=ip))
    except ForbiddenError:
        return web.error_page(request, "select.forbidden", 403)
    return _to_flow(flow_id)
