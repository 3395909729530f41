"""Pages: templates, language, CSRF, the browser cookie and the security headers.

A browser that gets a page gets an `iam_browser` cookie (`__Host-iam_browser` under https;
HttpOnly): a random id the server made and signed, so a value planted by someone else is not
taken. CSRF tokens are an HMAC of the id (signed double submit), and pending authorizations and
one-time codes are bound to it. The cookie is only set on answers no cache may keep.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Mount, Router
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iam.i18n import LANG_COOKIE, LANGUAGES, negotiate, translator

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
BROWSER_COOKIE = "iam_browser"
#: The browser cookie's name under https: browsers take a `__Host-` cookie only when it is
#: Secure, on Path=/ and without Domain, so a sibling subdomain or plain http cannot plant one.
SECURE_BROWSER_COOKIE = "__Host-" + BROWSER_COOKIE
SESSION_COOKIE = "iam_session"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 16 * 1024
#: No request body, announced or chunked, is read past this.
MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 20
_BROWSER_ID_LENGTH = 43  # secrets.token_urlsafe(32)
_BROWSER_MAC_BYTES = 16
#: What `quote` leaves as it is in a path we write back (RFC 3986 pchar and "/").
_PATH_SAFE = "/!$&'()*+,;=:@-._~"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class FormRefusedError(Exception):
    """A posted form is refused before it is read: too large, or without a valid CSRF token."""

    def __init__(self, message_key: str, status_code: int) -> None:
        super().__init__(message_key)
        self.message_key = message_key
        self.status_code = status_code


class Web:
    """What every page needs: render with language and CSRF, check CSRF, set cookies."""

    def __init__(
        self, secret_key: str, secure_cookies: bool, timezone: str = "Asia/Shanghai"
    ) -> None:
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        self.timezone = zoneinfo.ZoneInfo(timezone)
        # `{{ moment | local_time }}`: a stored (UTC) time as the console shows it.
        self.templates.env.filters["local_time"] = self.local_time
        self.templates.env.globals["timezone_name"] = timezone
        self.templates.env.globals["timezone_offset"] = self.timezone_offset
        self.secure_cookies = secure_cookies
        self._csrf_key = hashlib.sha256(b"iam:csrf\x00" + secret_key.encode()).digest()

    def local_time(self, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """A stored time (naive UTC, or aware) in the configured zone; "" for none."""
        if moment is None:
            return ""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(self.timezone).strftime(fmt)

    def timezone_offset(self) -> str:
        """The configured zone's offset now, as people read it: "UTC+8", "UTC-4:30", "UTC"."""
        offset = datetime.now(self.timezone).utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset else 0
        if minutes == 0:
            return "UTC"
        hours, rest = divmod(abs(minutes), 60)
        return f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")

    @staticmethod
    def browser_id(request: Request) -> str:
        """This browser's id, stable across its requests (made, and its cookie set, on first
        use by `BrowserMiddleware`)."""
        browser: _Browser = request.scope["state"]["browser"]
        return browser.id()

    def csrf_token(self, request: Request) -> str:
        return hmac.new(self._csrf_key, self.browser_id(request).encode(), "sha256").hexdigest()

    def check_csrf(self, request: Request, form: Mapping[str, Any]) -> bool:
        offered = form.get(CSRF_FIELD)
        if not isinstance(offered, str):
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return hmac.compare_digest(offered.encode(), self.csrf_token(request).encode())

    async def read_form(self, request: Request, max_fields: int = MAX_FORM_FIELDS) -> FormData:
        """The posted form, if it is small (in bytes and in fields) and carries our CSRF token
        (`FormRefusedError`)."""
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise FormRefusedError("error.too_large", 413)
        try:
            form = await request.form(max_files=0, max_fields=max_fields)
        except HTTPException:
            raise FormRefusedError("error.too_large", 413) from None
        if not self.check_csrf(request, form):
            raise FormRefusedError("error.csrf", 403)
        return form

    @staticmethod
    def language(request: Request) -> str:
        return negotiate(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language", ""),
        )

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
    ) -> Response:
        lang = self.language(request)
        other_lang = "en" if lang == "zh-CN" else "zh-CN"
        if request.method == "GET":
            query = {**request.query_params, "lang": other_lang}
        else:  # a page answering a POST: switch on its start page, keeping the request
            flow = (context or {}).get("flow")
            query = {"lang": other_lang, **({"flow": flow} if flow else {})}
        start = "/admin/" if request.url.path.startswith("/admin") else "/login"
        here = same_site_path(request.scope["path"])
        lang_url = (here if request.method == "GET" else start) + "?" + urlencode(query)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "lang": lang,
                "other_lang": other_lang,
                "lang_url": lang_url,
                "t": translator(lang),
                "csrf_field": CSRF_FIELD,
                "csrf_token": self.csrf_token(request),
                **(context or {}),
            },
            status_code=status_code,
            headers={"cache-control": "no-store"},
        )
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 86400,
                samesite="lax",
                secure=self.secure_cookies,
                httponly=True,
            )
        return response

    def error_page(
        self,
        request: Request,
        message_key: str,
        status_code: int = 400,
        *,
        back: str = "/login",
        back_app: str | None = None,
        **params: Any,
    ) -> Response:
        """The error page; its link goes `back` (a path on this site, else `/login`), named
        after the app whose sign-in it returns to when `back_app` is given."""
        odd = any(c.isspace() or c == "\\" or c < " " for c in back)  # browsers drop or bend
        on_site = back[:1] == "/" and back[1:2] != "/" and not odd
        context = {"message_key": message_key, "params": params, "back_app": back_app}
        context["back"] = back if on_site else "/login"
        return self.render(request, "errors/error.html", context, status_code=status_code)

    def set_session_cookie(self, response: Response, value: str, max_age: int) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=max_age,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
            path="/",
        )

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="lax", secure=self.secure_cookies, path="/"
        )


def same_site_path(path: str) -> str:
    """`path` (decoded) written back percent-encoded with one leading slash: a link or a
    Location on this site whatever the request's path was (browsers read `//host`,
    `/\\host` and `/<tab>/host` as another site)."""
    return "/" + quote(path, safe=_PATH_SAFE).lstrip("/")


def browser_cookie_name(secure_cookies: bool) -> str:
    return SECURE_BROWSER_COOKIE if secure_cookies else BROWSER_COOKIE


class BrowserIds:
    """Browser ids only the server makes: the cookie value is `<random id>.<HMAC of the id>`,
    and any other value is no id at all (so nobody can hand a browser an id they know)."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"iam:browser\x00" + secret_key.encode()).digest()

    def new(self) -> str:
        """The cookie value of a new id."""
        return self.sign(secrets.token_urlsafe(32))

    def sign(self, browser_id: str) -> str:
        return f"{browser_id}.{self._mac(browser_id)}"

    def verify(self, value: str | None) -> str | None:
        """The id in a cookie value this server made, or None."""
        browser_id, dot, mac = (value or "").rpartition(".")
        if not dot or len(browser_id) != _BROWSER_ID_LENGTH:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(browser_id).encode()):
            return None
        return browser_id

    def _mac(self, browser_id: str) -> str:
        digest = hmac.new(self._key, browser_id.encode(), "sha256").digest()
        return base64.urlsafe_b64encode(digest[:_BROWSER_MAC_BYTES]).rstrip(b"=").decode()


class _Browser:
    """One request's browser: the id of its cookie when the server made it; otherwise a new
    id, made when the request first needs one (API calls and static files never do)."""

    def __init__(self, ids: BrowserIds, cookie_value: str | None) -> None:
        self._ids = ids
        self._id = ids.verify(cookie_value)
        self.used = False
        self.new_cookie: str | None = None

    def id(self) -> str:
        self.used = True
        if self._id is None:
            self.new_cookie = self._ids.new()
            self._id = self.new_cookie.rpartition(".")[0]
        return self._id


class BrowserMiddleware:
    """Security headers on every answer, and the browser's id (`Web.browser_id`): a new id's
    cookie goes out only on an answer no cache may keep, or a shared cache would hand one
    browser's id (and with it its CSRF tokens and pending sign-in) to the next."""

    def __init__(self, app: ASGIApp, secret_key: str, secure_cookies: bool) -> None:
        self.app = app
        self.ids = BrowserIds(secret_key)
        self.cookie_name = browser_cookie_name(secure_cookies)
        self.cookie_flags = "; Path=/; HttpOnly; SameSite=Lax" + (
            "; Secure" if secure_cookies else ""
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        browser = _Browser(self.ids, _cookie(scope, self.cookie_name))
        scope.setdefault("state", {})["browser"] = browser

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if browser.used and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"  # an answer made for this browser
                if browser.new_cookie and _uncacheable(headers.get("cache-control", "")):
                    headers.append(
                        "set-cookie", f"{self.cookie_name}={browser.new_cookie}{self.cookie_flags}"
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _uncacheable(cache_control: str) -> bool:
    directives = {part.split("=", 1)[0].strip().lower() for part in cache_control.split(",")}
    return bool(directives & {"no-store", "private"})


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(name)
    return None


class SlashRedirect:
    """Starlette's `redirect_slashes` (`/login/` to `/login`, `/admin` to `/admin/`) with a
    relative Location: Starlette's own is absolute, built from the Host header the client
    wrote, so `Host: evil.example.com` made it an open redirect."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.fallback = router.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path not in ("", "/"):
            moved = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
            if any(route.matches(moved)[0] is not Match.NONE for route in self.router.routes):
                location = same_site_path(moved["path"])
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                await RedirectResponse(location)(scope, receive, send)
                return
        await self.fallback(scope, receive, send)


def use_relative_slash_redirects(router: Router) -> None:
    """`SlashRedirect` in `router` and in the routers mounted below it."""
    router.redirect_slashes = False
    router.default = SlashRedirect(router)
    for route in router.routes:
        mounted = route.app if isinstance(route, Mount) else None
        mounted = getattr(mounted, "router", mounted)
        if isinstance(mounted, Router):
            use_relative_slash_redirects(mounted)


class BodyLimitMiddleware:
    """Stops reading a request body past `max_bytes`, whether or not Content-Length said so:
    a chunked body cannot make a handler buffer more. Reading past it raises HTTP 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, "Request body too large.")
            return message

        await self.app(scope, bounded_receive, send)
