"""Admin apps: the API handlers under /admin/api/apps (the bodies and answers are the records
of `iam.records.apps`)."""

from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from iam.admin.auth import Caller
from iam.admin.json_api import ApiError, api, no_store_json
from iam.admin.json_body import read_json
from iam.db.unit import Work, in_worker
from iam.errors import NotFoundError, ValidationError
from iam.records.apps import App, AppInput, AppPatch, AppWithSecret
from iam.records.base import read
from iam.services import clients

T = TypeVar("T")

LIFETIME_FIELDS = ("access_token_ttl", "id_token_ttl", "refresh_token_ttl")
#: The service's names for a field at fault → the API's and the forms'.
FIELD_NAMES = {
    "redirect_uri": "redirect_uris",
    "post_logout_redirect_uri": "post_logout_redirect_uris",
    "allowed_scopes": "scopes",
}


def create_args(values: dict[str, Any]) -> dict[str, Any]:
    """create_client's keyword arguments from the API's (or a form's) names."""
    args = {key: value for key, value in values.items() if key not in ("name", "redirect_uris")}
    if "scopes" in args:
        args["scopes"] = " ".join(args["scopes"])
    return args


def update_args(values: dict[str, Any]) -> dict[str, Any]:
    args = dict(values)
    if "scopes" in args:
        args["allowed_scopes"] = args.pop("scopes")
    return args


async def run_action(request: Request, work: Work[T]) -> T:
    """Run an action as one unit of work in a worker thread; the field a service names at
    fault is named as the API and the forms name it."""
    try:
        return await in_worker(request.app.state.store, work)
    except ValidationError as error:
        raise ValidationError(FIELD_NAMES.get(error.field, error.field), str(error)) from None


@api
async def api_list(request: Request, caller: Caller) -> Response:
    apps = await run_action(request, clients.list_clients)
    return no_store_json({"apps": [App.of(client).to_json() for client in apps]})


@api
async def api_create(request: Request, caller: Caller) -> Response:
    values = read(AppInput, await read_json(request)).sent()
    registered = await run_action(
        request,
        lambda db: clients.create_client(
            db,
            values["name"],
            values["redirect_uris"],
            actor=caller.actor,
            box=request.app.state.box,
            **create_args(values),
        ),
    )
    body = AppWithSecret.registered(registered).to_json()
    return no_store_json(body, 201, location=f"/admin/api/apps/{registered.client.client_id}")


@api
async def api_get(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    client = await run_action(request, lambda db: clients.get_client(db, client_id))
    return no_store_json(App.of(client).to_json())


@api
async def api_update(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    values = read(AppPatch, await read_json(request)).sent()
    args = update_args(values)
    client = await run_action(
        request, lambda db: clients.update_client(db, client_id, actor=caller.actor, **args)
    )
    return no_store_json(App.of(client).to_json())


@api
async def api_delete(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    await run_action(request, lambda db: clients.delete_client(db, client_id, actor=caller.actor))
    return no_store_json(status_code=204)


@api
async def api_rotate(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    try:
        registered = await run_action(
            request,
            lambda db: clients.rotate_secret(
                db, client_id, actor=caller.actor, box=request.app.state.box
            ),
        )
    except ValidationError as error:  # a public app: it has no secret
        raise ApiError(409, "conflict", str(error)) from None
    return no_store_json(AppWithSecret.registered(registered).to_json())


@api
async def api_retire(request: Request, caller: Caller) -> Response:
    client_id = request.path_params["client_id"]
    try:
        await run_action(
            request, lambda db: clients.retire_previous_secret(db, client_id, actor=caller.actor)
        )
    except ValidationError as error:  # a public app: it has no secret
        raise ApiError(409, "conflict", str(error)) from None
    return no_store_json(status_code=204)


#: The paths below an app, and the one method each takes.
SUBRESOURCES = {"secret": "POST", "previous-secret": "DELETE"}


async def api_below_app(request: Request) -> Response:
    """What the routes above leave: a wrong method on a path below an app (405, as the router
    would say), or an id with a slash in it (sent as %2F), which is no app (the API's JSON 404,
    not the router's plain-text one)."""
    allowed = SUBRESOURCES.get(request.path_params["rest"])
    if allowed is not None:
        raise HTTPException(405, headers={"allow": allowed})
    return await _no_such_app(request)


@api
async def _no_such_app(request: Request, caller: Caller) -> Response:
    client_id = f"{request.path_params['client_id']}/{request.path_params['rest']}"
    raise NotFoundError(f"No client {client_id!r}.")
