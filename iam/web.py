"""Pages: templates, language, CSRF, the browser cookie and the security headers.

Every browser gets an `iam_browser` cookie (random, HttpOnly). CSRF tokens are an HMAC of it
(signed double submit), and pending authorizations are bound to it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iam.i18n import LANG_COOKIE, LANGUAGES, negotiate, translator

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
BROWSER_COOKIE = "iam_browser"
SESSION_COOKIE = "iam_session"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 16 * 1024
#: No request body, announced or chunked, is read past this.
MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 20
_BROWSER_ID_LENGTH = 43  # secrets.token_urlsafe(32)

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

    def __init__(self, secret_key: str, secure_cookies: bool) -> None:
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        self.secure_cookies = secure_cookies
        self._csrf_key = hashlib.sha256(b"iam:csrf\x00" + secret_key.encode()).digest()

    @staticmethod
    def browser_id(request: Request) -> str:
        return str(request.scope["state"]["browser_id"])

    def csrf_token(self, request: Request) -> str:
        return hmac.new(self._csrf_key, self.browser_id(request).encode(), "sha256").hexdigest()

    def check_csrf(self, request: Request, form: Mapping[str, Any]) -> bool:
        offered = form.get(CSRF_FIELD)
        return isinstance(offered, str) and hmac.compare_digest(offered, self.csrf_token(request))

    async def read_form(self, request: Request) -> FormData:
        """The posted form, if it is small and carries our CSRF token (`FormRefusedError`)."""
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise FormRefusedError("error.too_large", 413)
        try:
            form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
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
        lang_url = (request.url.path if request.method == "GET" else start) + "?" + urlencode(query)
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
        self, request: Request, message_key: str, status_code: int = 400, **params: Any
    ) -> Response:
        return self.render(
            request,
            "errors/error.html",
            {"message_key": message_key, "params": params},
            status_code=status_code,
        )

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


class BrowserMiddleware:
    """Gives each browser its random id cookie and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, secure_cookies: bool) -> None:
        self.app = app
        self.cookie_flags = "; Path=/; HttpOnly; SameSite=Lax" + (
            "; Secure" if secure_cookies else ""
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        browser_id = _cookie(scope, BROWSER_COOKIE)
        is_new = browser_id is None or len(browser_id) != _BROWSER_ID_LENGTH
        if is_new:
            browser_id = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["browser_id"] = browser_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if is_new:
                    headers.append(
                        "set-cookie", f"{BROWSER_COOKIE}={browser_id}{self.cookie_flags}"
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(name)
    return None


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
