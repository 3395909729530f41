"""Admin apps: the console pages under /admin/apps."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.apps.api import LIFETIME_FIELDS, create_args, run_action, update_args
from iam.admin.auth import Caller
from iam.admin.pages import Area, message, render, see_other
from iam.db.models import Admin, Client
from iam.errors import ConflictError, ValidationError
from iam.secretbox import SecretBox, SecretBoxError
from iam.services import clients, corps

# --- the console -----------------------------------------------------------------------------

#: `?done=` on the app page after a redirect → the notice shown.
NOTICES = {
    "saved": "admin.app.saved",
    "retired": "admin.app.retired",
    "deleted": "admin.app.deleted",
    "created": "admin.app.created",
    "rotated": "admin.app.rotated",
}
#: A new secret travels from the POST that made it to the app's page in this cookie, encrypted
#: with the server's key, scoped to that page, for two minutes at most: post/redirect/get, so a
#: reload cannot register an app twice, and the secret is never stored on the server.
SECRET_COOKIE = "iam_admin_secret"
SECRET_COOKIE_AGE = 120


def _hand_over(request: Request, client_id: str, secret: str | None, done: str) -> Response:
    """Redirect to the app's page, which shows `secret` this once."""
    response = see_other(f"/admin/apps/{client_id}?done={done}")
    if secret:
        box: SecretBox = request.app.state.box
        response.set_cookie(
            SECRET_COOKIE,
            box.encrypt(f"{client_id}\n{secret}"),
            max_age=SECRET_COOKIE_AGE,
            path=f"/admin/apps/{client_id}",
            httponly=True,
            samesite="strict",
            secure=request.app.state.settings.issuer_is_https,
        )
    return response


def _handed_over(request: Request, client_id: str) -> str | None:
    """The secret handed over to this app's page, if any (a stale or forged cookie: none)."""
    sealed = request.cookies.get(SECRET_COOKIE)
    if not sealed:
        return None
    box: SecretBox = request.app.state.box
    try:
        owner, _, secret = box.decrypt(sealed).partition("\n")
    except SecretBoxError:
        return None
    return secret if owner == client_id and secret else None


FORM_FIELDS = (
    "name",
    "redirect_uris",
    "post_logout_redirect_uris",
    "allowed_origins",
    "initiate_login_uri",
    "backchannel_logout_uri",
    "context_policy",
    "access_token_signing_alg",
)


def _actor(admin: Admin) -> str:
    return Caller(admin.username, "admin").actor


#: The units a token lifetime is entered in, largest first, in seconds (the service keeps
#: seconds). Seconds are offered only for a lifetime that is not a whole number of minutes
#: (one set through the API).
UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
#: Each unit's words: a lifetime of one, of several, and the unit select's label.
UNIT_WORDS = {
    "days": ("admin.duration.days.one", "admin.duration.days.many", "admin.duration.unit.days"),
    "hours": ("admin.duration.hours.one", "admin.duration.hours.many", "admin.duration.unit.hours"),
    "minutes": (
        "admin.duration.minutes.one",
        "admin.duration.minutes.many",
        "admin.duration.unit.minutes",
    ),
    "seconds": (
        "admin.duration.seconds.one",
        "admin.duration.seconds.many",
        "admin.duration.unit.seconds",
    ),
}


def in_units(seconds: int) -> tuple[int, str]:
    """A lifetime as people say it: the largest unit that holds it whole (600 → 10 minutes,
    2592000 → 30 days); 0 is 0 minutes."""
    for unit, size in UNITS.items():
        if seconds and seconds % size == 0:
            return seconds // size, unit
    return seconds, "minutes" if seconds == 0 else "seconds"


def _lifetimes() -> dict[str, dict[str, tuple[int, str]]]:
    """Each lifetime field's default and bounds, in units (the form's hints and errors)."""
    return {
        name: {
            "default": in_units(default),
            "least": in_units(least),
            "most": in_units(most),
        }
        for name, (default, least, most) in ((n, clients.LIFETIMES[n]) for n in LIFETIME_FIELDS)
    }


def _lifetime_values(name: str, seconds: int) -> dict[str, str]:
    number, unit = in_units(seconds)
    return {name: str(number), f"{name}_unit": unit}


def _choices() -> dict[str, Any]:
    return {
        "policies": clients.CONTEXT_POLICIES,
        "all_scopes": clients.SUPPORTED_SCOPES,
        "lifetimes": _lifetimes(),
        "units": UNITS,
        "unit_words": UNIT_WORDS,
        "default_claim": clients.DEFAULT_CONTEXT_CLAIM,
        "auth_methods": [m for m in clients.AUTH_METHODS if m != "none"],
        "access_token_algs": clients.ACCESS_TOKEN_ALGS,
    }


def _all_lifetime_values(seconds_of: Callable[[str], int]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in LIFETIME_FIELDS:
        values |= _lifetime_values(name, seconds_of(name))
    return values


def new_app_values() -> dict[str, Any]:
    """The create form, empty: the service's defaults."""
    return {
        "name": "",
        "redirect_uris": "",
        "post_logout_redirect_uris": "",
        "allowed_origins": "",
        "initiate_login_uri": "",
        "backchannel_logout_uri": "",
        "public": False,
        "token_endpoint_auth_method": clients.DEFAULT_AUTH_METHOD,
        "jwks": "",
        "jwks_uri": "",
        "access_token_signing_alg": clients.DEFAULT_ACCESS_TOKEN_ALG,
        "scopes": clients.DEFAULT_SCOPES.split(),
        "context_policy": "none",
        "context_claim": "",
        **_all_lifetime_values(lambda name: clients.LIFETIMES[name][0]),
    }


def values_of(client: Client) -> dict[str, Any]:
    """The edit form, filled from the app."""
    return {
        "name": client.name,
        "redirect_uris": "\n".join(client.redirect_uris),
        "post_logout_redirect_uris": "\n".join(client.post_logout_redirect_uris),
        "allowed_origins": "\n".join(client.allowed_origins),
        "initiate_login_uri": client.initiate_login_uri or "",
        "backchannel_logout_uri": client.backchannel_logout_uri or "",
        "public": client.is_public,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks": json.dumps(client.jwks, indent=2) if client.jwks else "",
        "jwks_uri": client.jwks_uri or "",
        "access_token_signing_alg": client.access_token_signing_alg,
        "scopes": client.allowed_scopes.split(),
        "context_policy": client.context_policy,
        "context_claim": client.context_claim,
        **_all_lifetime_values(lambda name: int(getattr(client, name))),
    }


def form_values(form: FormData) -> dict[str, Any]:
    """What was posted, as the form shows it again."""
    values: dict[str, Any] = {name: str(form.get(name) or "") for name in FORM_FIELDS}
    values["context_claim"] = str(form.get("context_claim") or "").strip()
    values["public"] = form.get("public") == "on"
    for name in ("token_endpoint_auth_method", "jwks", "jwks_uri"):
        values[name] = str(form.get(name) or "")
    values["scopes"] = [str(scope) for scope in form.getlist("scopes")]
    for name in LIFETIME_FIELDS:
        values[name] = str(form.get(name) or "").strip()
        # No unit posted (a script's form): seconds, as the API takes them.
        values[f"{name}_unit"] = str(form.get(f"{name}_unit") or "seconds")
    return values


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def parsed(values: dict[str, Any]) -> dict[str, Any]:
    """Form values as the service takes them (the API's names); a lifetime that is not a
    whole number is refused here, everything else by the service."""
    result: dict[str, Any] = {
        "name": values["name"],
        "redirect_uris": _lines(values["redirect_uris"]),
        "post_logout_redirect_uris": _lines(values["post_logout_redirect_uris"]),
        "allowed_origins": _lines(values["allowed_origins"]),
        # Empty: none (on an app's form, clearing the field removes it).
        "initiate_login_uri": values["initiate_login_uri"].strip(),
        "backchannel_logout_uri": values["backchannel_logout_uri"].strip(),
        "scopes": values["scopes"],
        "context_policy": values["context_policy"],
        "context_claim": values["context_claim"],
        # A public app's method is none, fixed: its form has no such field.
        "token_endpoint_auth_method": (
            None if values["public"] else values["token_endpoint_auth_method"] or None
        ),
        "jwks": values["jwks"].strip(),
        "jwks_uri": values["jwks_uri"].strip(),
        # Not posted (a script's form): the default on a new app, unchanged on an app's.
        "access_token_signing_alg": values["access_token_signing_alg"] or None,
    }
    for name in LIFETIME_FIELDS:
        result[name] = _seconds(name, values[name], values[f"{name}_unit"])
    return result


def _seconds(name: str, number: str, unit: str) -> int:
    """A lifetime typed as a whole number of a unit, in seconds (the service checks bounds)."""
    if unit not in UNITS or not (number.isascii() and number.isdigit() and len(number) <= 9):
        raise ValidationError(name, f"{name} must be a whole number of minutes, hours or days.")
    return int(number, 10) * UNITS[unit]


#: Where an app reads everything else about this provider (OpenID Connect Discovery).
DISCOVERY_PATH = "/.well-known/openid-configuration"

#: The question asked before each action that cannot be undone (`?confirm=rotate` on an app's
#: page, its own page for deleting): its title, its warning, its red button.
CONFIRMATIONS = {
    "rotate": ("admin.app.rotate_title", "admin.app.rotate_warning", "admin.app.rotate_confirm"),
    "retire": ("admin.app.retire_title", "admin.app.retire_warning", "admin.app.retire_confirm"),
    "delete": ("admin.app.delete_title", "admin.app.delete_warning", "admin.app.delete_confirm"),
}

#: An app that is gone answers "no such app", 404, on any page that names it.
area = Area("admin.app.not_found")


async def _client(request: Request) -> Client:
    """The app the path names; `NotFoundError` (the area's 404) if there is none."""
    client_id = request.path_params["client_id"]
    return await run_action(request, lambda db: clients.get_client(db, client_id))


def _with_form(
    request: Request, admin: Admin, template: str, context: dict[str, Any], status_code: int
) -> Response:
    """A page that holds the app form (the list's create form, an app's edit form): the form's
    choices, the endpoints an app is configured with, and no errors unless `context` has
    some."""
    issuer: str = request.app.state.settings.issuer
    endpoints = {"issuer": issuer, "discovery_url": f"{issuer}{DISCOVERY_PATH}"}
    context = {"errors": {}, **_choices(), **endpoints, **context}
    return render(request, template, admin, context, status_code)


@dataclass(frozen=True)
class WorkbenchLink:
    """An app's link for one corporation's WeCom workbench (its `/launch/...` URL)."""

    corp_id: str
    corp_name: str
    url: str


async def _workbench_links(request: Request, client: Client) -> list[WorkbenchLink]:
    """The app's link for each enabled corporation, oldest first."""
    enabled = await run_action(request, lambda db: corps.list_corps(db, enabled_only=True))
    issuer: str = request.app.state.settings.issuer
    return [
        WorkbenchLink(
            corp.corp_id, corp.name, clients.workbench_link(issuer, client.client_id, corp.corp_id)
        )
        for corp in enabled
    ]


async def _app_page(
    request: Request,
    admin: Admin,
    client: Client,
    status_code: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("values", values_of(client))
    context["confirmations"] = CONFIRMATIONS
    context["workbench_links"] = await _workbench_links(request, client)
    return _with_form(request, admin, "admin/app.html", {"app": client, **context}, status_code)


async def _list_page(
    request: Request, admin: Admin, status_code: int = 200, **context: Any
) -> Response:
    apps = await run_action(request, clients.list_clients)
    context.setdefault("values", new_app_values())
    return _with_form(request, admin, "admin/apps.html", {"apps": apps, **context}, status_code)


def _no_secret(request: Request, admin: Admin) -> Response:
    """A public app has no secret to rotate or retire."""
    return message(request, admin, "admin.app.no_secret", 409)


@area.page
async def apps_page(request: Request, admin: Admin) -> Response:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return await _list_page(request, admin, notice=notice)


@area.form
async def create_app(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/apps: register; the next page shows the secret, this once."""
    values = form_values(form)
    try:
        args = {**parsed(values), "public": values["public"]}
        registered = await run_action(
            request,
            lambda db: clients.create_client(
                db,
                args["name"],
                args["redirect_uris"],
                actor=_actor(admin),
                box=request.app.state.box,
                **create_args(args),
            ),
        )
    except ValidationError as error:
        errors = {error.field: str(error)}
        return await _list_page(request, admin, 422, values=values, errors=errors)
    return _hand_over(request, registered.client.client_id, registered.client_secret, "created")


@area.page
async def app_page(request: Request, admin: Admin) -> Response:
    client = await _client(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    secret = _handed_over(request, client.client_id)
    asked = request.query_params.get("confirm", "")
    confirm = asked if asked in CONFIRMATIONS and asked != "delete" else None
    response = await _app_page(
        request, admin, client, notice=notice, secret=secret, confirm=confirm
    )
    if SECRET_COOKIE in request.cookies:  # shown once: gone with this answer
        response.delete_cookie(SECRET_COOKIE, path=f"/admin/apps/{client.client_id}")
    return response


@area.form
async def update_app(request: Request, admin: Admin, form: FormData) -> Response:
    client_id = request.path_params["client_id"]
    values = form_values(form)
    try:
        args = update_args(parsed(values))
        await run_action(
            request, lambda db: clients.update_client(db, client_id, actor=_actor(admin), **args)
        )
    except (ValidationError, ConflictError) as error:
        client = await _client(request)
        # A conflict here: private_key_jwt chosen without keys, for an app that has none. The
        # page says what is wrong in its own words: the service's English stays out of it.
        errors = {getattr(error, "field", "jwks"): str(error)}
        return await _app_page(request, admin, client, 422, values=values, errors=errors)
    return see_other(f"/admin/apps/{client_id}?done=saved")


@area.form
async def rotate_secret(request: Request, admin: Admin, form: FormData) -> Response:
    """A new secret, shown this once; the previous one works on until retired."""
    client_id = request.path_params["client_id"]
    try:
        registered = await run_action(
            request,
            lambda db: clients.rotate_secret(
                db, client_id, actor=_actor(admin), box=request.app.state.box
            ),
        )
    except ValidationError:  # a public app
        return _no_secret(request, admin)
    return _hand_over(request, client_id, registered.client_secret, "rotated")


@area.form
async def retire_secret(request: Request, admin: Admin, form: FormData) -> Response:
    client_id = request.path_params["client_id"]
    try:
        await run_action(
            request,
            lambda db: clients.retire_previous_secret(db, client_id, actor=_actor(admin)),
        )
    except ValidationError:  # a public app
        return _no_secret(request, admin)
    return see_other(f"/admin/apps/{client_id}?done=retired")


@area.page
async def confirm_delete(request: Request, admin: Admin) -> Response:
    """GET /admin/apps/{id}/delete: the question, before the POST that deletes."""
    return await _app_page(request, admin, await _client(request), confirm="delete")


@area.form
async def delete_app(request: Request, admin: Admin, form: FormData) -> Response:
    client_id = request.path_params["client_id"]
    await run_action(request, lambda db: clients.delete_client(db, client_id, actor=_actor(admin)))
    return see_other("/admin/apps?done=deleted")
