"""The admin API's OpenAPI 3.1 document, put together from what each area declares."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iam.admin import apps, audit, corps, keys, users
from iam.admin.operations import ERROR_SCHEMA
from iam.records.base import schemas as record_schemas

AREAS = (apps, corps, users, audit, keys)


def document(issuer: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    records = []
    for area in AREAS:
        paths.update(area.PATHS)
        if isinstance(area.SCHEMAS, dict):
            schemas.update(area.SCHEMAS)
        else:
            records.extend(area.SCHEMAS)
    schemas.update(record_schemas(records))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iam admin API",
            "version": "1",
            "description": "Apps, WeCom corporations, users and links, the audit trail and "
            "signing keys. Authenticate with a bearer access token from this server's "
            "client_credentials grant for a client flagged as admin, with scope iam:admin "
            "(a token issued for a person is never one), or with the admin console's "
            "session: then a change (POST, PATCH, DELETE) must come from the console, with "
            "the issuer's Origin or the console's CSRF token in X-CSRF-Token; otherwise it "
            'is refused with 403 {"error": "csrf"}.',
        },
        "servers": [{"url": f"{issuer}/admin/api"}],
        "security": [{"bearer": []}, {"console": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "console": {"type": "apiKey", "in": "cookie", "name": "iam_admin"},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document(request.app.state.settings.issuer))


routes = [Route("/api/openapi.json", openapi_json, methods=["GET"])]
