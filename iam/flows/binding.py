"""On-demand binding (`/bind`): an outside identity with no link yet is bound to the core user
whose phone number the person proves with an SMS code (made if there is none)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from iam.db.unit import in_worker
from iam.errors import (
    ConflictError,
    ForbiddenError,
    IamError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from iam.flows.login import attempt_of, otp_page, request_code, signed_in
from iam.services import accounts, login, otp
from iam.services.sessions import NewSession
from iam.web import SESSION_COOKIE, FormRefusedError, Web

TEMPLATE = "flows/bind.html"
MAX_TOKEN = 64


def _page(
    request: Request,
    step: str,
    token: str,
    pending: accounts.PendingIdentity,
    *,
    error: IamError | None = None,
    **extra: Any,
) -> Response:
    context = {"binding": token, "who": dict(pending.identity.metadata)}
    return otp_page(request, TEMPLATE, step, context, error=error, **extra)


async def _pending(request: Request, token: str) -> accounts.PendingIdentity | None:
    web: Web = request.app.state.web
    try:
        browser_id = web.browser_id(request)
        return await in_worker(
            request.app.state.store, lambda db: accounts.pending_binding(db, token, browser_id)
        )
    except NotFoundError:
        return None


async def bind_page(request: Request) -> Response:
    """GET /bind?binding=: who WeCom says this is, and the phone number form."""
    web: Web = request.app.state.web
    token = request.query_params.get("binding", "")[:MAX_TOKEN]
    pending = await _pending(request, token)
    if pending is None:
        return web.error_page(request, "bind.expired")
    return _page(request, "phone", token, pending, phone="")


async def submit(request: Request) -> Response:
    """POST /bind: with `phone` only, send a code; with `phone` and `code`, bind and sign in."""
    web: Web = request.app.state.web
    state = request.app.state
    try:
        form = await web.read_form(request)
    except FormRefusedError as refused:
        return web.error_page(request, refused.message_key, refused.status_code)
    token = str(form.get("binding") or "")[:MAX_TOKEN]
    phone = str(form.get("phone") or "")[:40]
    code = str(form.get("code") or "")[:12]
    pending = await _pending(request, token)
    if pending is None:
        return web.error_page(request, "bind.expired")
    if not code:
        try:
            sent = await run_in_threadpool(request_code, request, phone, "bind")
        except ValidationError as error:
            return _page(request, "phone", token, pending, error=error, phone=phone)
        except RateLimitedError as error:
            return _page(request, "code", token, pending, error=error, phone=phone)
        return _page(request, "code", token, pending, phone=sent.phone, sent=True)

    attempt = attempt_of(request)

    def bind_and_sign_in() -> tuple[NewSession, accounts.PendingIdentity]:
        return login.sign_in_by_binding(
            state.store,
            state.box,
            token,
            phone,
            code,
            attempt=attempt,
            previous_cookie=request.cookies.get(SESSION_COOKIE),
        )

    try:
        new, bound = await run_in_threadpool(bind_and_sign_in)
    except ValidationError as error:
        step = "phone" if error.field == "phone" else "code"
        return _page(request, step, token, pending, error=error, phone=phone)
    except (otp.OtpError, RateLimitedError) as error:
        return _page(request, "code", token, pending, error=error, phone=phone)
    except ForbiddenError:
        return web.error_page(request, "upstream.disabled", 403)
    except ConflictError:
        return web.error_page(request, "bind.conflict", 409)
    except NotFoundError:
        return web.error_page(request, "bind.expired")
    return signed_in(request, new, bound.flow_id, return_to=bound.return_to)
