"""Admin: token signing keys. The console and the API list them (public facts only: never a
private key) and rotate: a new key signs from now on, the old one stays in JWKS until the
tokens it signed have expired."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import api, no_store_json
from iam.admin.operations import UNAUTHORIZED, answer, listing
from iam.admin.pages import form_page, page, render, see_other
from iam.clock import utcnow
from iam.db.models import Admin
from iam.db.unit import in_worker
from iam.records.base import Mode
from iam.records.keys import SigningKey
from iam.services import signing_keys


async def _records(request: Request) -> list[SigningKey]:
    found = await in_worker(request.app.state.store, signing_keys.list_keys)
    return SigningKey.all_of(found, utcnow())


async def _keys(request: Request) -> list[dict[str, Any]]:
    return [key.to_json() for key in await _records(request)]


async def _rotate(request: Request, actor: str) -> dict[str, Any]:
    """Rotate (a new key of each algorithm), then drop this instance's cached key ring so it
    signs with the new keys at once (other instances pick them up within the ring's few
    seconds). The answer is the new RS256 key, as before ES256 keys came; the list has both."""
    state = request.app.state
    keys = await in_worker(state.store, lambda db: signing_keys.rotate(db, state.box, actor=actor))
    state.oidc.keys.invalidate()
    return SigningKey.all_of(keys, utcnow())[0].to_json()


# --- the API -----------------------------------------------------------------------------------


@api
async def api_list(request: Request, caller: Caller) -> Response:
    return no_store_json({"keys": await _keys(request)})


@api
async def api_rotate(request: Request, caller: Caller) -> Response:
    return no_store_json(await _rotate(request, caller.actor), 201)


# --- the console -------------------------------------------------------------------------------


async def _keys_page(
    request: Request,
    admin: Admin,
    *,
    notice_key: str | None = None,
    error_key: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "keys": await _records(request),  # its times shown in the console's zone
        "notice_key": notice_key,
        "error_key": error_key,
    }
    return render(request, "admin/keys.html", admin, context, status_code)


@page
async def list_page(request: Request, admin: Admin) -> Response:
    rotated = request.query_params.get("done") == "rotated"
    return await _keys_page(request, admin, notice_key="admin.key.rotated" if rotated else None)


@form_page
async def rotate(request: Request, admin: Admin, form: FormData) -> Response:
    """POST /admin/keys/rotate, with the confirmation box ticked."""
    if form.get("confirm") != "yes":
        return await _keys_page(
            request, admin, error_key="admin.key.confirm_needed", status_code=422
        )
    await _rotate(request, f"admin:{admin.username}")
    return see_other("/admin/keys?done=rotated")


# --- the OpenAPI description -------------------------------------------------------------------

SCHEMAS: list[tuple[type[Any], Mode]] = [(SigningKey, "serialization")]

PATHS: dict[str, Any] = {
    "/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "The signing keys, newest first.",
            "responses": {
                "200": answer("The keys.", listing("keys", SigningKey)),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/keys/rotate": {
        "post": {
            "operationId": "rotateKey",
            "summary": "A new key of each algorithm (RS256, ES256) signs from now on; the "
            "previous ones stay published until the tokens they signed have expired. No request "
            "body.",
            "responses": {
                "201": answer("The new RS256 signing key (GET /keys lists both).", SigningKey),
                "401": UNAUTHORIZED,
            },
        }
    },
}

routes: list[BaseRoute] = [
    Route("/keys", list_page, methods=["GET"]),
    Route("/keys/rotate", rotate, methods=["POST"]),
    Route("/api/keys", api_list, methods=["GET"]),
    Route("/api/keys/rotate", api_rotate, methods=["POST"]),
]
