"""Input hygiene at the edge: a request whose path, query string, form body or a header holds a
NUL, a control character, or a percent-escape that is not UTF-8 is answered 400 here, with a
fixed message, before any handler, Authlib or the database sees it. (PostgreSQL refuses NUL in
text, Authlib refuses to describe such values in an error, and no parameter has a use for them.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iam.i18n import LANGUAGES
from iam.web import Web

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
#: Machine-facing paths, refused with an OAuth error in JSON; every other path is a page.
JSON_PATHS = frozenset(
    {
        "/token",
        "/userinfo",
        "/revoke",
        "/introspect",
        "/jwks.json",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
        "/metrics",
    }
)
JSON_PREFIXES = ("/events/", "/_sim/")
#: The admin API checks its own input, and answers as its OpenAPI document says (schemathesis
#: holds it to that): it is left alone here.
OWN_CHECKS = "/admin/api"
#: The only forms with lines in a field: the admin console's app forms (redirect URIs, one a line).
MULTILINE_PREFIX = "/admin/apps"
MESSAGE_KEY = "error.bad_input"
DESCRIPTION = "The request contains characters that are not allowed."
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def readable(raw: bytes | str, forbidden: re.Pattern[str] = _CONTROL) -> bool:
    """Whether a path, query string or urlencoded body, once its percent-escapes are decoded,
    is UTF-8 without a `forbidden` character."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return forbidden.search(text) is None


def has_control(text: str) -> bool:
    """For values decoded after the edge looked (Basic credentials are percent-decoded later)."""
    return _CONTROL.search(text) is not None


def is_json_path(path: str) -> bool:
    return path in JSON_PATHS or path.startswith(JSON_PREFIXES)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _media_type(scope: Scope) -> str:
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _clean_head(scope: Scope) -> bool:
    """The path, the query string and the header values."""
    raw_path = scope.get("raw_path")
    if not readable(raw_path if raw_path is not None else scope["path"]):
        return False
    if not readable(scope["query_string"]):
        return False
    return not any(b"\x00" in value for _, value in scope["headers"])


def _clean_body(scope: Scope, media_type: str, body: bytes) -> bool:
    if media_type == MULTIPART:  # no files are taken anywhere: no field has a use for a NUL
        return b"\x00" not in body
    multiline = _under(scope["path"], MULTILINE_PREFIX)
    return readable(body, _CONTROL_BUT_LINES if multiline else _CONTROL)


class EdgeMiddleware:
    """Refuses unreadable input (400) for every route. A form body is read here in full (it is
    bounded by `BodyLimitMiddleware`, which must be outside this) and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _under(scope["path"], OWN_CHECKS):
            await self.app(scope, receive, send)
            return
        if not _clean_head(scope):
            await _refusal(scope)(scope, receive, send)
            return
        media_type = _media_type(scope)
        if scope["method"] not in _BODY_METHODS or media_type not in (FORM, MULTIPART):
            await self.app(scope, receive, send)
            return
        messages, refused = await _read_all(receive)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if refused is None and not _clean_body(scope, media_type, body):
            await _refusal(scope)(scope, receive, send)
            return
        await self.app(scope, _replay(messages, refused, receive), send)


async def _read_all(receive: Receive) -> tuple[list[Message], HTTPException | None]:
    """The body's messages; or those read before the body limit refused the rest."""
    messages: list[Message] = []
    while True:
        try:
            message = await receive()
        except HTTPException as refused:
            return messages, refused
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages, None


def _replay(messages: list[Message], refused: HTTPException | None, receive: Receive) -> Receive:
    """The messages again, then the body limit's refusal (if it came), then the server's."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if refused is not None:
            raise refused
        return await receive()

    return replayed


def _refusal(scope: Scope) -> Response:
    """An OAuth error in JSON for a machine-facing path, the error page for a page; neither
    repeats the request (the page is rendered for a bare GET of `/`, in the language asked)."""
    if is_json_path(scope["path"]):
        return JSONResponse(
            {"error": "invalid_request", "error_description": DESCRIPTION},
            status_code=400,
            headers={"cache-control": "no-store"},
        )
    web: Web | None = getattr(scope["app"].state, "web", None) if "app" in scope else None
    if web is None:
        return PlainTextResponse(DESCRIPTION, status_code=400)
    lang = QueryParams(scope["query_string"]).get("lang")
    query = f"lang={lang}".encode() if lang in LANGUAGES else b""
    bare = {**scope, "method": "GET", "path": "/", "raw_path": b"/", "query_string": query}
    return web.error_page(Request(bare), MESSAGE_KEY, status_code=400)
