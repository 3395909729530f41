"""Core login pages: phone number, then the 6-digit SMS code (`/login`, `/login/otp`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from iam import metrics
from iam.db.unit import in_one_unit, in_worker, one_unit
from iam.errors import IamError, NotFoundError, RateLimitedError, ValidationError
from iam.services import authorizations, clients, corps, login, otp, sessions
from iam.services.attempts import Attempt
from iam.services.sessions import SESSION_LIFETIME, NewSession, SignedIn
from iam.web import SESSION_COOKIE, FormRefusedError, Web

TEMPLATE = "flows/login.html"
T = TypeVar("T")


class FlowGoneError(Exception):
    """The `flow` parameter names no live request of this browser."""


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def attempt_of(request: Request) -> Attempt:
    """Who is asking, as the sign-in services take it: this browser, its address and user
    agent, counted against the app's rate limits."""
    web: Web = request.app.state.web
    return Attempt(
        browser=web.browser_id(request),
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        limits=request.app.state.rate_limits,
    )


async def in_unit(request: Request, work: Callable[..., T]) -> T:
    """`work(db, first_try)` in a worker thread as one unit of work (`iam.db.unit`): one
    transaction, all or nothing."""
    return await run_in_threadpool(in_one_unit, request.app.state.store, work)


async def signed_in_person(request: Request) -> SignedIn | None:
    """This browser's live session and its person, or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return await in_unit(request, lambda db, _first: sessions.find_in(db.connection(), cookie))


def count_flow_start(request: Request) -> None:
    """Count a request that stores a row before anyone is known (a waiting authorization, a
    login sent to WeCom) per browser and per address: `RateLimitedError` past the limit."""
    web: Web = request.app.state.web
    request.app.state.rate_limits.check(
        "flow_start", key=web.browser_id(request), ip=client_ip(request)
    )


def too_many(request: Request, error: RateLimitedError) -> Response:
    """The page for a refused attempt, with `Retry-After`."""
    web: Web = request.app.state.web
    response = web.error_page(request, "error.too_many", 429, seconds=error.retry_after)
    response.headers["retry-after"] = str(error.retry_after)
    return response


async def flow_context(request: Request, flow_id: str) -> dict[str, Any]:
    """The pending request this login serves (and its app's name), if any."""
    if not flow_id:
        return {"flow": "", "app_name": None}
    web: Web = request.app.state.web
    store = request.app.state.store
    browser_id = web.browser_id(request)
    try:  # one unit: the request, then its app
        app_name = await in_worker(
            store,
            lambda db: (
                clients.get_client(db, authorizations.get(db, flow_id, browser_id).client_id).name
            ),
        )
    except NotFoundError:
        raise FlowGoneError from None
    return {"flow": flow_id, "app_name": app_name}


async def _upstream_choices(request: Request, flow_id: str) -> list[dict[str, str]]:
    """One "log in with WeCom" button per connected corporation."""
    found = await in_worker(
        request.app.state.store, lambda db: corps.list_corps(db, on_login_page=True)
    )
    suffix = f"?{urlencode({'flow': flow_id})}" if flow_id else ""
    return [
        {"href": f"/login/wecom/{quote(corp.corp_id)}{suffix}", "name": corp.name} for corp in found
    ]


def error_message(error: IamError) -> tuple[str, dict[str, Any], int]:
    """The catalogue key, its parameters and the status for a failed step."""
    if isinstance(error, RateLimitedError):
        if error.retry_after > 3600:
            return "otp.daily_limit", {}, 429
        return "otp.wait", {"seconds": error.retry_after}, 429
    if isinstance(error, ValidationError):
        return ("otp.phone_invalid" if error.field == "phone" else "otp.code_invalid"), {}, 400
    if isinstance(error, otp.OtpError) and error.tries_left > 0:
        return "otp.wrong", {"tries_left": error.tries_left}, 400
    return "otp.dead", {}, 400


def otp_page(
    request: Request,
    template: str,
    step: str,
    context: dict[str, Any],
    *,
    error: IamError | None = None,
    **extra: Any,
) -> Response:
    """A phone-then-code page (login, binding) at `step`, with the failure of the last try."""
    web: Web = request.app.state.web
    status = 200
    if error is not None:
        key, params, status = error_message(error)
        extra.update(error_key=key, error_params=params)
    response = web.render(request, template, {"step": step, **context, **extra}, status)
    if isinstance(error, RateLimitedError):
        response.headers["retry-after"] = str(error.retry_after)
    return response


async def login_page(request: Request) -> Response:
    web: Web = request.app.state.web
    try:
        context = await flow_context(request, request.query_params.get("flow", ""))
    except FlowGoneError:
        return web.error_page(request, "error.flow_expired")
    choices = await _upstream_choices(request, context["flow"])
    return otp_page(request, TEMPLATE, "phone", context, phone="", upstream=choices)


async def _posted(request: Request) -> tuple[Any, dict[str, Any], str] | Response:
    """The form, its flow's page context and the phone; or the error page to answer with when
    the form is refused (size, CSRF) or the flow is gone."""
    web: Web = request.app.state.web
    try:
        form = await web.read_form(request)
        context = await flow_context(request, str(form.get("flow") or ""))
    except FormRefusedError as refused:
        return web.error_page(request, refused.message_key, refused.status_code)
    except FlowGoneError:
        return web.error_page(request, "error.flow_expired")
    return form, context, str(form.get("phone") or "")[:40]


def request_code(request: Request, phone: str, purpose: str) -> otp.CodeSent:
    """Send a code for `purpose` to `phone`, for this browser, as one unit of work (a worker
    thread's call): the code leaves when the unit commits."""
    state = request.app.state
    attempt = attempt_of(request)
    return one_unit(
        state.store,
        lambda db: otp.request_code(db, state.box, state.sms, phone, purpose, attempt=attempt),
    )


async def send_code(request: Request) -> Response:
    """POST /login/otp: send a code; the answer is the same whether the number is known."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, context, phone = posted
    try:
        sent = await run_in_threadpool(request_code, request, phone, "login")
    except ValidationError as error:
        return otp_page(request, TEMPLATE, "phone", context, error=error, phone=phone)
    except RateLimitedError as error:
        return otp_page(request, TEMPLATE, "code", context, error=error, phone=phone)
    return otp_page(request, TEMPLATE, "code", context, phone=sent.phone, sent=True)


async def submit_code(request: Request) -> Response:
    """POST /login: check the code, start the session, go back to the request (or home)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, context, phone = posted
    state = request.app.state
    attempt = attempt_of(request)

    def sign_in() -> NewSession:
        return login.sign_in_with_phone(
            state.store,
            state.box,
            phone,
            str(form.get("code") or "")[:12],
            attempt=attempt,
            previous_cookie=request.cookies.get(SESSION_COOKIE),
        )

    try:
        new = await run_in_threadpool(sign_in)
    except ValidationError as error:
        step = "phone" if error.field == "phone" else "code"
        return otp_page(request, TEMPLATE, step, context, error=error, phone=phone)
    except (otp.OtpError, RateLimitedError) as error:
        metrics.LOGINS.labels("sms", "failure").inc()
        return otp_page(request, TEMPLATE, "code", context, error=error, phone=phone)
    return signed_in(request, new, context["flow"])


def signed_in(
    request: Request, new: NewSession, flow_id: str | None, *, return_to: str | None = None
) -> Response:
    """Give the browser its new session and go back to the request it serves; with none, to
    `return_to` (a workbench launch's app, set by the server) or home."""
    web: Web = request.app.state.web
    metrics.LOGINS.labels(new.session.amr[0] if new.session.amr else "-", "success").inc()
    target = f"/flow/{quote(flow_id)}" if flow_id else return_to or "/"
    response = RedirectResponse(target, status_code=303)
    web.set_session_cookie(response, new.cookie_value, int(SESSION_LIFETIME.total_seconds()))
    return response
