"""Admin: token signing keys. The console and the API list them (public facts only: never a
private key) and rotate: a new key signs from now on, the old one stays in JWKS until the
tokens it signed have expired."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import api
from iam.admin.pages import console_form, page, render, see_other
from iam.clock import utcnow
from iam.db.models import Admin, SigningKey
from iam.services import signing_keys

NO_STORE = {"cache-control": "no-store"}


def iso(moment: datetime | None) -> str | None:
    """A stored (naive UTC) time as RFC 3339."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_views(keys: list[SigningKey], now: datetime) -> list[dict[str, Any]]:
    """The keys, newest first, with what the issuer makes of them: the newest unretired key
    signs (as `signing_keys.load_material` picks it); a key is in JWKS until `publish_until`."""
    signing = next((key.kid for key in keys if key.retired_at is None), None)
    return [
        {
            "kid": key.kid,
            "alg": key.alg,
            "created_at": iso(key.created_at),
            "retired_at": iso(key.retired_at),
            "publish_until": iso(key.publish_until),
            "signing": key.kid == signing,
            "published": key.retired_at is None
            or (key.publish_until is not None and key.publish_until > now),
            "public_jwk": dict(key.public_jwk),
        }
        for key in keys
    ]


async def _keys(request: Request) -> list[dict[str, Any]]:
    found = await run_in_threadpool(signing_keys.list_keys, request.app.state.store)
    return key_views(found, utcnow())


async def _rotate(request: Request, actor: str) -> dict[str, Any]:
    """Rotate, then drop this instance's cached key ring so it signs with the new key at once
    (other instances pick it up within the ring's few seconds)."""
    state = request.app.state
    key = await run_in_threadpool(lambda: signing_keys.rotate(state.store, state.box, actor=actor))
    state.oidc.keys.invalidate()
    return key_views([key], utcnow())[0]


# --- the API -----------------------------------------------------------------------------------


@api
async def api_list(request: Request, caller: Caller) -> Response:
    return JSONResponse({"keys": await _keys(request)}, headers=NO_STORE)


@api
async def api_rotate(request: Request, caller: Caller) -> Response:
    return JSONResponse(await _rotate(request, caller.actor), status_code=201, headers=NO_STORE)


# --- the console -------------------------------------------------------------------------------


def _readable(value: str | None) -> str | None:
    return None if value is None else value.replace("T", " ").replace("Z", " UTC")


def _shown(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same facts, with times for people."""
    times = ("created_at", "retired_at", "publish_until")
    return [{**view, **{name: _readable(view[name]) for name in times}} for view in views]


async def _keys_page(
    request: Request,
    admin: Admin,
    *,
    notice_key: str | None = None,
    error_key: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "keys": _shown(await _keys(request)),
        "notice_key": notice_key,
        "error_key": error_key,
    }
    return render(request, "admin/keys.html", admin, context, status_code)


@page
async def list_page(request: Request, admin: Admin) -> Response:
    rotated = request.query_params.get("done") == "rotated"
    return await _keys_page(request, admin, notice_key="admin.key.rotated" if rotated else None)


@page
async def rotate(request: Request, admin: Admin) -> Response:
    """POST /admin/keys/rotate, with the confirmation box ticked."""
    form = await console_form(request, admin)
    if isinstance(form, Response):
        return form
    if form.get("confirm") != "yes":
        return await _keys_page(
            request, admin, error_key="admin.key.confirm_needed", status_code=422
        )
    await _rotate(request, f"admin:{admin.username}")
    return see_other("/admin/keys?done=rotated")


# --- the OpenAPI description -------------------------------------------------------------------

_TIME = {"type": "string", "format": "date-time"}
_UNAUTHORIZED = {
    "description": "No console session and no admin bearer token.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}

SCHEMAS: dict[str, Any] = {
    "SigningKey": {
        "type": "object",
        "description": "A token signing key's public facts (the private key never leaves the "
        "server).",
        "required": [
            "kid",
            "alg",
            "created_at",
            "retired_at",
            "publish_until",
            "signing",
            "published",
            "public_jwk",
        ],
        "additionalProperties": False,
        "properties": {
            "kid": {"type": "string"},
            "alg": {"type": "string"},
            "created_at": _TIME,
            "retired_at": {**_TIME, "type": ["string", "null"]},
            "publish_until": {
                **_TIME,
                "type": ["string", "null"],
                "description": "A retired key stays in JWKS until then (the longest token "
                "lifetime after its retirement, an hour at least).",
            },
            "signing": {"type": "boolean", "description": "This key signs new tokens."},
            "published": {"type": "boolean", "description": "This key is in /jwks.json."},
            "public_jwk": {
                "type": "object",
                "description": "The public key as a JWK (RFC 7517), as /jwks.json has it.",
                "required": ["kty", "kid"],
                "properties": {"kty": {"type": "string"}, "kid": {"type": "string"}},
            },
        },
    }
}

PATHS: dict[str, Any] = {
    "/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "The signing keys, newest first.",
            "responses": {
                "200": {
                    "description": "The keys.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["keys"],
                                "additionalProperties": False,
                                "properties": {
                                    "keys": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/SigningKey"},
                                    }
                                },
                            }
                        }
                    },
                },
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/keys/rotate": {
        "post": {
            "operationId": "rotateKey",
            "summary": "A new key signs from now on; the previous one stays published until the "
            "tokens it signed have expired. No request body.",
            "responses": {
                "201": {
                    "description": "The new signing key.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SigningKey"}}
                    },
                },
                "401": _UNAUTHORIZED,
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
