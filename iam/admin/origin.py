"""Whether an API call that rides on the console cookie comes from the console's own origin
(the API's CSRF check)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from iam.web import CSRF_FIELD, Web

#: What a console page sends its CSRF token in when it calls the API with the cookie.
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The ASCII serialisation of a URL's origin (RFC 6454 6.2), as browsers send it in
    `Origin`: scheme and host lowercased, the default port left out."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return "null"
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def from_the_console(request: Request) -> bool:
    """Whether a call that rides on the console cookie can be the console's own. The cookie is
    SameSite=Strict, but "same site" includes sibling hosts, and a browser sends it on any
    request its pages start: a change (POST, PUT, PATCH, DELETE) must prove it came from our
    origin, by the console's CSRF token in `X-CSRF-Token`, or by an `Origin` that is the
    issuer's (OWASP CSRF Prevention: verifying origin with standard headers). Fetch metadata
    that says another site started it, or an `Origin` that is not ours, is refused whatever
    else comes."""
    if request.method in SAFE_METHODS:
        return True
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    origin = request.headers.get("origin")
    ours = origin_of(request.app.state.settings.issuer)
    if origin is not None and origin != ours:
        return False
    token = request.headers.get(CSRF_HEADER)
    if token is not None:
        web: Web = request.app.state.web
        return web.check_csrf(request, {CSRF_FIELD: token})
    return origin == ours
