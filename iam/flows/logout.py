"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), the home page and its icon."""

from __future__ import annotations

from collections.abc import Mapping

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.rpinitiated.end_session import EndSessionRequest
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from iam.db.unit import in_worker
from iam.flows.login import in_unit, signed_in_person
from iam.oidc.endpoints import Oidc
from iam.oidc.requests import from_parts
from iam.services import session_apps, sessions
from iam.services.sessions import SignedIn
from iam.web import STATIC_DIR, FormRefusedError, Web

LOGOUT_PARAMS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id", "ui_locales")
MAX_PARAM = 4096


def _logout_params(source: Mapping[str, object]) -> list[tuple[str, str]]:
    params = []
    for name in LOGOUT_PARAMS:
        value = source.get(name)
        if isinstance(value, str) and value:
            params.append((name, value[:MAX_PARAM]))
    return params


async def _validate(request: Request, params: list[tuple[str, str]]) -> EndSessionRequest:
    oidc: Oidc = request.app.state.oidc
    oauth_request = from_parts("GET", oidc.issuer, "/logout", params)
    return await oidc.runner(oidc.server.validate_endpoint_request, "end_session", oauth_request)


def _hint_names(signed_in: SignedIn | None, validated: EndSessionRequest) -> bool:
    """Whether the hint is an ID token of this browser's session: its person (`sub`) and, when
    it has one, its session (`sid`). Only then is logging out without a question safe: any
    other valid ID token (another person's, an earlier session's) could be replayed by anyone
    who got it to end this session (RP-Initiated Logout 1.0 6). Without a session there is
    nothing to end."""
    claims = validated.id_token_claims
    if claims is None:
        return False
    if signed_in is None:
        return True
    sid = claims.get("sid")
    return claims.get("sub") == signed_in.user.id and (sid is None or sid == signed_in.session.id)


async def _log_out(
    request: Request, validated: EndSessionRequest, signed_in: SignedIn | None
) -> Response:
    web: Web = request.app.state.web
    if signed_in is not None:
        client_ip = request.client.host if request.client else None
        sid = signed_in.session.id
        await in_unit(request, lambda db, _first: sessions.end(db, sid, ip=client_ip))
    if validated.redirect_uri:
        response: Response = RedirectResponse(validated.redirect_uri, status_code=303)
    else:
        response = web.render(request, "flows/logout.html", {"done": True})
    web.clear_session_cookie(response)
    return response


async def logout(request: Request) -> Response:
    """GET shows a confirmation unless the id_token_hint is an ID token of this browser's
    session; POST (confirmed, with CSRF) logs out. Invalid requests (a hint that is not our ID
    token among them) are shown here and never redirected (RP-Initiated Logout 4)."""
    web: Web = request.app.state.web
    source: Mapping[str, object]  # the posted form, or the query
    if request.method == "POST":
        try:
            source = await web.read_form(request)
        except FormRefusedError as refused:
            return web.error_page(request, refused.message_key, refused.status_code)
    else:
        source = request.query_params
    params = _logout_params(source)
    try:
        validated = await _validate(request, params)
    except OAuth2Error as error:
        return web.error_page(
            request, "error.invalid_request", detail=error.description or error.error
        )
    signed_in = await signed_in_person(request)
    if request.method == "GET" and not _hint_names(signed_in, validated):
        return web.render(request, "flows/logout.html", {"params": params})
    return await _log_out(request, validated, signed_in)


async def home(request: Request) -> Response:
    """`/`: who is signed in here, and the apps this session signed into (a sign-in that ended
    here, not in the app, can go on to them)."""
    web: Web = request.app.state.web
    signed_in = await signed_in_person(request)
    if signed_in is None:
        return web.render(request, "flows/home.html", {"user": None})
    sid, issuer = signed_in.session.id, request.app.state.settings.issuer
    apps = await in_worker(
        request.app.state.store, lambda db: session_apps.apps_of_session(db, sid, issuer)
    )
    return web.render(request, "flows/home.html", {"user": signed_in.user, "apps": apps})


async def favicon(request: Request) -> Response:
    """`/favicon.ico`, which browsers ask every site for: the icon, cached for a day."""
    return FileResponse(
        STATIC_DIR / "favicon.ico",
        media_type="image/x-icon",
        headers={"cache-control": "public, max-age=86400"},
    )
