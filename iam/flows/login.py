"""Core login pages: phone number, then the 6-digit SMS code (`/login`, `/login/otp`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from iam.services.phones import display_phone, normalize_phone
from iam.services.sessions import SESSION_LIFETIME, NewSession, SignedIn
from iam.web import SESSION_COOKIE, FormRefusedError, Web

TEMPLATE = "flows/login.html"
MAX_FLOW = 64
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


#: Why a step sent the browser back: the short code in the query (`problem=`) -> its message.
#: Only these travel; anything else in the query is ignored.
PROBLEMS = {
    "phone_invalid": "otp.phone_invalid",
    "code_invalid": "otp.code_invalid",
    "wrong_code": "otp.wrong",
    "code_dead": "otp.dead",
    "too_many_tries": "otp.too_many_tries",
    "not_sent": "otp.not_sent",
    "not_resent": "otp.not_resent",
    "daily_limit": "otp.daily_limit",
}
MAX_WAIT = 24 * 3600


@dataclass(frozen=True)
class Problem:
    """What went wrong at a step, as it travels in the query of the page shown after the POST:
    a code of `PROBLEMS` and, for a refusal, the seconds to wait."""

    code: str
    wait: int = 0

    @classmethod
    def of(cls, error: IamError, *, sending: bool = False) -> Problem:
        """The problem of a refused step: sending a code (`sending`) or checking one."""
        if isinstance(error, RateLimitedError):
            if sending:
                code = "daily_limit" if error.retry_after > 3600 else "not_sent"
            else:
                code = "too_many_tries"
            return cls(code, min(max(error.retry_after, 0), MAX_WAIT))
        if isinstance(error, ValidationError):
            return cls("phone_invalid" if error.field == "phone" else "code_invalid")
        if isinstance(error, otp.OtpError) and error.tries_left > 0:
            return cls("wrong_code")
        return cls("code_dead")

    @classmethod
    def from_query(cls, request: Request) -> Problem | None:
        """The problem named in this GET's query, if it is one of `PROBLEMS`."""
        code = request.query_params.get("problem", "")
        if code not in PROBLEMS:
            return None
        wait = request.query_params.get("wait", "")
        seconds = int(wait) if wait.isdigit() and len(wait) < 7 else 0
        return cls(code, min(seconds, MAX_WAIT))

    def params(self) -> dict[str, str]:
        """Its query parameters."""
        return {"problem": self.code, **({"wait": str(self.wait)} if self.wait else {})}

    def message(self, tries_left: int = 0) -> tuple[str, dict[str, Any]]:
        """The catalogue key and its parameters; waits in whole minutes, rounded up."""
        minutes = max(1, -(-self.wait // 60))
        return PROBLEMS[self.code], {"minutes": minutes, "tries_left": tries_left}


def after_post(path: str, params: dict[str, str]) -> Response:
    """The answer to every POST step: 303 to the GET page that shows the outcome (`params`,
    empty values left out), so that Back and reload never post again."""
    query = urlencode({key: value for key, value in params.items() if value})
    response = RedirectResponse(f"{path}?{query}" if query else path, status_code=303)
    response.headers["cache-control"] = "no-store"
    return response


def code_context(step: otp.CodeStep, problem: Problem | None) -> dict[str, Any]:
    """What the code form shows: the number (hidden field: E.164; text: masked), the seconds
    before another code may be asked for, and the problem of the last try."""
    context: dict[str, Any] = {
        "phone": step.phone,
        "shown_phone": display_phone(step.phone),
        "resend_in": step.resend_in,
    }
    if problem is not None:
        key, params = problem.message(step.tries_left)
        context.update(error_key=key, error_params=params)
    return context


def otp_page(
    request: Request,
    template: str,
    step: str,
    context: dict[str, Any],
    *,
    problem: Problem | None = None,
    **extra: Any,
) -> Response:
    """A phone-then-code page (login, binding) at `step`, with the problem of the last try
    (from the query of the page shown after a POST, see `after_post`)."""
    web: Web = request.app.state.web
    if problem is not None and "error_key" not in extra:
        key, params = problem.message()
        extra.update(error_key=key, error_params=params)
    return web.render(request, template, {"step": step, **context, **extra})


async def already_signed_in(request: Request, flow_id: str) -> str | None:
    """Where a login page goes on to instead of asking again, when this browser signed in
    meanwhile (another tab, Back after signing in): the request (`/flow/<id>`) if it is live
    and the session is newer than it, home if the request is gone (or there is none); None
    when nobody is signed in, or the request asks for a sign-in newer than the session's."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    web: Web = request.app.state.web
    browser_id = web.browser_id(request)

    def look(db: Any, _first: bool) -> str | None:
        found = sessions.find_in(db.connection(), cookie)
        if found is None:
            return None
        if not flow_id:
            return "/"
        try:
            pending = authorizations.get(db, flow_id, browser_id)
        except NotFoundError:
            return "/"
        fresh = found.session.auth_time >= pending.created_at
        return f"/flow/{quote(flow_id)}" if fresh else None

    return await in_unit(request, look)


def _live_code(request: Request, purpose: str) -> Callable[[Any], otp.CodeStep | None]:
    web: Web = request.app.state.web
    browser_id = web.browser_id(request)
    return lambda db: otp.code_step(db, browser_id, purpose)


async def live_code(request: Request, purpose: str) -> otp.CodeStep | None:
    """The code this browser waits for (`otp.code_step`), in a unit of its own."""
    return await in_worker(request.app.state.store, _live_code(request, purpose))


async def login_page(request: Request) -> Response:
    """GET /login?flow=&step=code&problem=: the phone step, or the code step when this browser
    waits for a code; or on to the app when it is signed in already."""
    web: Web = request.app.state.web
    flow_id = request.query_params.get("flow", "")[:MAX_FLOW]
    onward = await already_signed_in(request, flow_id)
    if onward is not None:
        return after_post(onward, {})
    try:
        context = await flow_context(request, flow_id)
    except FlowGoneError:
        return web.error_page(request, "error.flow_expired")
    problem = Problem.from_query(request)
    if request.query_params.get("step") == "code":
        step = await live_code(request, "login")
        if step is None:  # used, expired or never sent: ask for a number again
            return after_post("/login", {"flow": flow_id, **(problem.params() if problem else {})})
        return otp_page(request, TEMPLATE, "code", {**context, **code_context(step, problem)})
    choices = await _upstream_choices(request, context["flow"])
    return otp_page(
        request, TEMPLATE, "phone", context, problem=problem, phone="", upstream=choices
    )


def _to_step(flow_id: str, step: str, problem: Problem | None = None) -> Response:
    params = {"flow": flow_id, "step": "code" if step == "code" else ""}
    return after_post("/login", {**params, **(problem.params() if problem else {})})


async def _posted(request: Request) -> tuple[Any, str] | Response:
    """The form and its flow id; or the answer when the form is refused (size, CSRF: its error
    page), the browser signed in meanwhile (on to the app), or the flow is gone."""
    web: Web = request.app.state.web
    try:
        form = await web.read_form(request)
    except FormRefusedError as refused:
        return web.error_page(request, refused.message_key, refused.status_code)
    flow_id = str(form.get("flow") or "")[:MAX_FLOW]
    onward = await already_signed_in(request, flow_id)
    if onward is not None:
        return after_post(onward, {})
    try:
        await flow_context(request, flow_id)
    except FlowGoneError:
        return after_post("/login", {"flow": flow_id})  # its GET says the request expired
    return form, flow_id


def request_code(request: Request, phone: str, purpose: str) -> otp.CodeSent:
    """Send a code for `purpose` to `phone`, for this browser, as one unit of work (a worker
    thread's call): the code leaves when the unit commits."""
    state = request.app.state
    attempt = attempt_of(request)
    return one_unit(
        state.store,
        lambda db: otp.request_code(db, state.box, state.sms, phone, purpose, attempt=attempt),
    )


async def refused_send(request: Request, phone: str, error: RateLimitedError, purpose: str) -> str:
    """The step to show after a refused code request: the code step when this browser still
    waits for a code to the same number (its countdown says when), else the phone step."""
    step = await live_code(request, purpose)
    try:
        same = step is not None and step.phone == normalize_phone(phone)
    except ValidationError:
        same = False
    return "code" if same and error.retry_after <= 3600 else "phone"


async def send_code(request: Request) -> Response:
    """POST /login/otp: send a code, then the code step; the answer is the same whether the
    number is known."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, flow_id = posted
    step, problem = await send_for_step(request, str(form.get("phone") or "")[:40], "login")
    return _to_step(flow_id, step, problem)


async def send_for_step(request: Request, phone: str, purpose: str) -> tuple[str, Problem | None]:
    """Send a code for `purpose` (login, binding): the step to show next ("phone" or "code")
    and what went wrong, if anything."""
    try:
        await run_in_threadpool(request_code, request, phone, purpose)
    except ValidationError as error:
        return "phone", Problem.of(error)
    except RateLimitedError as error:
        step = await refused_send(request, phone, error, purpose)
        return step, Problem("not_resent") if step == "code" else Problem.of(error, sending=True)
    return "code", None


async def submit_code(request: Request) -> Response:
    """POST /login: check the code, start the session, go back to the request (or home). The
    number is the form's (`phone`), else the one this browser's live code went to."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    form, flow_id = posted
    phone = str(form.get("phone") or "")[:40]
    if not phone:
        step = await live_code(request, "login")
        if step is None:
            return _to_step(flow_id, "phone", Problem("code_dead"))
        phone = step.phone
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
        return _to_step(flow_id, "phone" if error.field == "phone" else "code", Problem.of(error))
    except (otp.OtpError, RateLimitedError) as error:
        metrics.LOGINS.labels("sms", "failure").inc()
        return _to_step(flow_id, "code", Problem.of(error))
    return signed_in(request, new, flow_id)


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
