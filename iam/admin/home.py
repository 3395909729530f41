"""Admin sign-in, sign-out and the console's front page."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iam import metrics
from iam.admin.auth import ADMIN_COOKIE, client_ip, signed_in_admin
from iam.admin.pages import form_page, page, render, see_other
from iam.db.models import Admin
from iam.db.unit import in_worker, one_unit
from iam.errors import RateLimitedError
from iam.services import admins
from iam.web import FormRefusedError, Web


async def login_page(request: Request) -> Response:
    if await signed_in_admin(request) is not None:
        return see_other("/admin")
    return render(request, "admin/login.html", None, {"username": ""})


async def login(request: Request) -> Response:
    """POST /admin/login: username + password; a new admin session cookie on success."""
    web: Web = request.app.state.web
    try:
        form = await web.read_form(request)
    except FormRefusedError as refused:
        context: dict[str, object] = {"username": "", "error_key": refused.message_key}
        return render(request, "admin/login.html", None, context, refused.status_code)
    username = str(form.get("username") or "")[:100]
    password = str(form.get("password") or "")[:1024]
    state = request.app.state
    ip = client_ip(request)

    def sign_in() -> admins.AdminSignedIn:
        state.rate_limits.check("admin_login", key=username.lower(), ip=ip)
        # One unit of work; a refused attempt is committed before its error goes on (it counts).
        return one_unit(
            state.store,
            lambda db: admins.refusal_counted(
                db, lambda: admins.sign_in(db, username, password, ip=ip)
            ),
        )

    try:
        signed_in = await run_in_threadpool(sign_in)
    except (admins.AdminLoginError, RateLimitedError) as error:
        metrics.LOGINS.labels("admin", "failure").inc()
        wait = error.retry_after if isinstance(error, RateLimitedError) else error.locked_for
        key = "admin.locked" if wait else "admin.wrong_login"
        context = {"username": username, "error_key": key, "minutes": wait // 60 + 1}
        response = render(request, "admin/login.html", None, context, 429 if wait else 401)
        if wait:
            response.headers["retry-after"] = str(wait)
        return response
    metrics.LOGINS.labels("admin", "success").inc()
    response = see_other("/admin")
    response.set_cookie(
        ADMIN_COOKIE,
        signed_in.cookie_value,
        max_age=int(admins.ADMIN_SESSION_LIFETIME.total_seconds()),
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.issuer_is_https,
    )
    return response


@form_page
async def logout(request: Request, admin: Admin, form: FormData) -> Response:
    cookie, ip = request.cookies.get(ADMIN_COOKIE), client_ip(request)
    await in_worker(request.app.state.store, lambda db: admins.sign_out(db, cookie, ip=ip))
    response = see_other("/admin/login")
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


@page
async def home(request: Request, admin: Admin) -> Response:
    return render(request, "admin/home.html", admin)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
