"""Admin apps: their part of the OpenAPI document."""

from typing import Any

from iam.admin.apps.api import CLAIM_PATTERN, LIFETIME_FIELDS, MAX_URIS, NAME_PATTERN, URI_PATTERN
from iam.services import clients

# --- OpenAPI ---------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


_URI = {
    "type": "string",
    "maxLength": 2000,
    "pattern": URI_PATTERN,
    "description": "Exact-match redirect URI: https, or http on a loopback host; no fragment, "
    "wildcard or user info.",
}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_LIFETIMES = {
    name: {
        "type": "integer",
        "minimum": least,
        "maximum": most,
        "default": default,
        "description": "seconds" + ("; 0 means no refresh tokens" if least == 0 else ""),
    }
    for name, (default, least, most) in clients.LIFETIMES.items()
}
_INPUT_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN},
    "redirect_uris": {"type": "array", "minItems": 1, "maxItems": MAX_URIS, "items": _URI},
    "post_logout_redirect_uris": {"type": "array", "maxItems": MAX_URIS, "items": _URI},
    "scopes": {
        "type": "array",
        "items": {"type": "string", "enum": list(clients.SUPPORTED_SCOPES)},
        "default": clients.DEFAULT_SCOPES.split(),
    },
    "context_policy": {
        "type": "string",
        "enum": list(clients.CONTEXT_POLICIES),
        "default": "none",
        "description": "none: tokens describe the person only; required: they always carry "
        "the identity context claim; optional: when the session has a context.",
    },
    "context_claim": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": CLAIM_PATTERN,
        "not": {"enum": sorted(clients.RESERVED_CLAIMS)},
        "default": clients.DEFAULT_CONTEXT_CLAIM,
    },
    **_LIFETIMES,
}
_APP_FIELDS: dict[str, Any] = {
    "client_id": {"type": "string"},
    "name": {"type": "string"},
    "public": {"type": "boolean", "description": "no secret, PKCE required; fixed at creation"},
    "admin": {"type": "boolean", "description": "may call this API (scope iam:admin)"},
    "redirect_uris": {"type": "array", "items": {"type": "string"}},
    "post_logout_redirect_uris": {"type": "array", "items": {"type": "string"}},
    "scopes": {"type": "array", "items": {"type": "string"}},
    "context_policy": {"type": "string", "enum": list(clients.CONTEXT_POLICIES)},
    "context_claim": {"type": "string"},
    **{name: {"type": "integer"} for name in LIFETIME_FIELDS},
    "has_previous_secret": {
        "type": "boolean",
        "description": "a rotated-out secret still works until retired",
    },
    "created_at": _TIMESTAMP,
    "secret_rotated_at": {"type": ["string", "null"], "format": "date-time"},
}
_SECRET = {
    "type": ["string", "null"],
    "description": "shown this once (null for a public app); only its digest is kept",
}

SCHEMAS: dict[str, Any] = {
    "App": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_APP_FIELDS),
        "properties": _APP_FIELDS,
    },
    "AppWithSecret": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_APP_FIELDS, "client_secret"],
        "properties": {**_APP_FIELDS, "client_secret": _SECRET},
    },
    "AppInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "redirect_uris"],
        "properties": {
            **_INPUT_FIELDS,
            "public": {
                "type": "boolean",
                "default": False,
                "description": "a public app (mobile, single-page) has no secret and must use "
                "PKCE; this cannot change later",
            },
        },
    },
    "AppPatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "Only the fields sent change. Public/confidential cannot change.",
        "properties": _INPUT_FIELDS,
    },
}

_CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_UNAUTHORIZED = _error("Neither a console session nor an admin bearer token")
_NOT_FOUND = _error("No such app")
_BODY_ERRORS = {
    "400": _error("The body is not a JSON object"),
    "413": _error("The body is larger than 64 KiB"),
    "415": _error("The body is not application/json"),
    "422": _error("A field is missing, unknown, of the wrong type or invalid (`field` names it)"),
}
_NO_SECRET = _error("A public app has no secret")
_LINK = {"client_id": "$response.body#/client_id"}
_LINKS = {
    "GetApp": {"operationId": "getApp", "parameters": _LINK},
    "UpdateApp": {"operationId": "updateApp", "parameters": _LINK},
    "DeleteApp": {"operationId": "deleteApp", "parameters": _LINK},
    "RotateAppSecret": {"operationId": "rotateAppSecret", "parameters": _LINK},
    "RetireAppPreviousSecret": {"operationId": "retireAppPreviousSecret", "parameters": _LINK},
}

PATHS: dict[str, Any] = {
    "/apps": {
        "get": {
            "operationId": "listApps",
            "tags": ["apps"],
            "summary": "All registered apps",
            "responses": {
                "200": _json(
                    "The apps, oldest first",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["apps"],
                        "properties": {"apps": {"type": "array", "items": _ref("App")}},
                    },
                ),
                "401": _UNAUTHORIZED,
            },
        },
        "post": {
            "operationId": "createApp",
            "tags": ["apps"],
            "summary": "Register an app",
            "description": "A confidential app's secret is in this answer and nowhere else.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AppInput")}},
            },
            "responses": {
                "201": _json(
                    "Registered",
                    _ref("AppWithSecret"),
                    headers={
                        "Location": {
                            "description": "the app's URL in this API",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    },
                    links=_LINKS,
                ),
                "401": _UNAUTHORIZED,
                **_BODY_ERRORS,
            },
        },
    },
    "/apps/{client_id}": {
        "parameters": [_CLIENT_ID],
        "get": {
            "operationId": "getApp",
            "tags": ["apps"],
            "summary": "One app",
            "responses": {
                "200": _json("The app", _ref("App")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateApp",
            "tags": ["apps"],
            "summary": "Change an app's settings",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AppPatch")}},
            },
            "responses": {
                "200": _json("The app as it is now", _ref("App")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                **_BODY_ERRORS,
            },
        },
        "delete": {
            "operationId": "deleteApp",
            "tags": ["apps"],
            "summary": "Delete an app; its tokens stop working",
            "responses": {
                "204": {"description": "Deleted"},
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
    "/apps/{client_id}/secret": {
        "parameters": [_CLIENT_ID],
        "post": {
            "operationId": "rotateAppSecret",
            "tags": ["apps"],
            "summary": "Rotate the secret",
            "description": "A new secret, in this answer only. The one it replaces keeps "
            "working until retired (two at most: rotating again retires the older).",
            "responses": {
                "200": _json("The new secret", _ref("AppWithSecret")),
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _NO_SECRET,
            },
        },
    },
    "/apps/{client_id}/previous-secret": {
        "parameters": [_CLIENT_ID],
        "delete": {
            "operationId": "retireAppPreviousSecret",
            "tags": ["apps"],
            "summary": "Retire the previous secret",
            "description": "Only the current secret works afterwards. Nothing to retire is "
            "not an error.",
            "responses": {
                "204": {"description": "Retired (or there was none)"},
                "401": _UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _NO_SECRET,
            },
        },
    },
}
