"""On-demand binding (`/bind`): an outside identity with no link yet is bound to the core user
whose phone number the person proves with an SMS code (made if there is none).

Every POST answers 303 to `GET /bind?binding=` (which shows the binding's state: the phone
step, the code step, the linking question, the new account's notice), so Back and reload never
post again. Before an identity is linked to a person whose name is not the member's (proven
by SMS, or the signed-in person who asked to link one), the page asks (`/bind/confirm`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
from iam.flows.login import (
    Problem,
    after_post,
    attempt_of,
    code_context,
    live_code,
    otp_page,
    send_for_step,
    signed_in,
)
from iam.services import accounts, login, otp
from iam.web import SESSION_COOKIE, FormRefusedError, Web

TEMPLATE = "flows/bind.html"
CONFIRM_TEMPLATE = "flows/bind_confirm.html"
MAX_TOKEN = 64


def _to_bind(token: str, step: str = "", problem: Problem | None = None) -> Response:
    """303 to the binding's page (at the code step, with the problem of the last try)."""
    params = {"binding": token, "step": "code" if step == "code" else ""}
    return after_post("/bind", {**params, **(problem.params() if problem else {})})


def _refused(request: Request, error: IamError) -> Response:
    """The dead end of a binding step: a disabled person, an identity linked meanwhile to
    someone else, or a binding gone (expired, used, another browser's)."""
    web: Web = request.app.state.web
    if isinstance(error, ForbiddenError):
        return web.error_page(request, "upstream.disabled", 403)
    if isinstance(error, ConflictError):
        return web.error_page(request, "bind.conflict", 409)
    return web.error_page(request, "bind.expired")


def _onward(pending: accounts.PendingIdentity) -> str:
    """Where the sign-in goes on once bound, or goes back to when the person cancels: the
    request it serves, else the app of a workbench launch, else home."""
    if pending.flow_id:
        return f"/flow/{quote(pending.flow_id)}"
    return pending.return_to or "/"


def _who(pending: accounts.PendingIdentity) -> dict[str, Any]:
    return dict(pending.identity.metadata)


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
    """GET /bind?binding=[&step=code][&problem=]: who WeCom says this is, and the step the
    binding is at."""
    web: Web = request.app.state.web
    token = request.query_params.get("binding", "")[:MAX_TOKEN]
    pending = await _pending(request, token)
    if pending is None:
        return web.error_page(request, "bind.expired")
    if pending.stage is not None:
        return await _afterwards_page(request, token)
    context: dict[str, Any] = {"binding": token, "who": _who(pending)}
    problem = Problem.from_query(request)
    if request.query_params.get("step") == "code":
        step = await live_code(request, "bind")
        if step is None:  # used, expired or never sent: ask for a number again
            return _to_bind(token, "", problem)
        return otp_page(request, TEMPLATE, "code", {**context, **code_context(step, problem)})
    return otp_page(request, TEMPLATE, "phone", context, problem=problem, phone="")


async def _afterwards_page(request: Request, token: str) -> Response:
    """The linking question (`confirm`), or the new account's notice (`created`)."""
    web: Web = request.app.state.web
    browser_id = web.browser_id(request)
    try:
        asked = await in_worker(
            request.app.state.store, lambda db: accounts.confirmation(db, token, browser_id)
        )
    except NotFoundError:
        return web.error_page(request, "bind.expired")
    pending = asked.pending
    context = {
        "binding": token,
        "who": _who(pending),
        "person": {"name": asked.person_name, "phone": asked.person_phone},
        "onward": _onward(pending),
    }
    if pending.stage == accounts.CREATED:
        return web.render(request, TEMPLATE, {"step": "created", **context})
    return web.render(request, CONFIRM_TEMPLATE, context)


async def submit(request: Request) -> Response:
    """POST /bind: with `phone` only, send a code; with `code` (and the number of this
    browser's live code, or `phone`), check it, then bind and sign in, or ask first."""
    web: Web = request.app.state.web
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
    if pending.stage is not None:  # past the phone step: its page says where it stands
        return _to_bind(token)
    if not code:
        return await _send_code(request, token, phone)
    if not phone:
        step = await live_code(request, "bind")
        if step is None:
            return _to_bind(token, "", Problem("code_dead"))
        phone = step.phone
    return await _check_code(request, token, phone, code)


async def _send_code(request: Request, token: str, phone: str) -> Response:
    step, problem = await send_for_step(request, phone, "bind")
    return _to_bind(token, step, problem)


async def _check_code(request: Request, token: str, phone: str, code: str) -> Response:
    state = request.app.state
    attempt = attempt_of(request)

    def bind_and_sign_in() -> Any:
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
        outcome = await run_in_threadpool(bind_and_sign_in)
    except ValidationError as error:
        return _to_bind(token, "" if error.field == "phone" else "code", Problem.of(error))
    except (otp.OtpError, RateLimitedError) as error:
        return _to_bind(token, "code", Problem.of(error))
    except (ForbiddenError, ConflictError, NotFoundError) as error:
        return _refused(request, error)
    if isinstance(outcome, accounts.PendingIdentity):  # another name: ask first
        return _to_bind(token)
    new, bound = outcome
    if bound.linked.new_user:  # signed in; the notice says an account was made
        return signed_in(request, new, None, return_to=f"/bind?binding={quote(token)}")
    return signed_in(request, new, bound.pending.flow_id, return_to=bound.pending.return_to)


async def confirm(request: Request) -> Response:
    """POST /bind/confirm: the answer to the linking question. `cancel` drops the binding and
    links nothing (back to where the sign-in came from); else link and sign in. Only this
    browser, once, while the question is live."""
    web: Web = request.app.state.web
    state = request.app.state
    try:
        form = await web.read_form(request)
    except FormRefusedError as refused:
        return web.error_page(request, refused.message_key, refused.status_code)
    token = str(form.get("binding") or "")[:MAX_TOKEN]
    attempt = attempt_of(request)
    try:
        if form.get("cancel") is not None:
            dropped = await in_worker(
                state.store, lambda db: accounts.drop_binding(db, token, attempt.browser)
            )
            return after_post(_onward(dropped), {})
        new, bound = await run_in_threadpool(
            lambda: login.confirm_binding(
                state.store,
                token,
                attempt=attempt,
                previous_cookie=request.cookies.get(SESSION_COOKIE),
            )
        )
    except (ForbiddenError, ConflictError, NotFoundError) as error:
        return _refused(request, error)
    return signed_in(request, new, bound.pending.flow_id, return_to=bound.pending.return_to)
