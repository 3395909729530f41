"""Admin apps: their part of the OpenAPI document (the schemas are the records')."""

from typing import Any

from iam.admin import operations as doc
from iam.records.apps import App, AppInput, AppPatch, AppWithSecret
from iam.records.base import Mode

SCHEMAS: list[tuple[type[Any], Mode]] = [
    (App, "serialization"),
    (AppWithSecret, "serialization"),
    (AppInput, "validation"),
    (AppPatch, "validation"),
]

_CLIENT_ID = doc.path_parameter("client_id")
_NOT_FOUND = doc.error("No such app")
_NO_SECRET = doc.error("A public app, or one that signs with its keys, has no secret")
_CONFLICT = doc.error(
    "The change does not fit the app as it is: private_key_jwt for an app without keys, keys "
    "for an app that uses a secret, none for a confidential app or a secret method for a public "
    "one"
)
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
                "200": doc.answer("The apps, oldest first", doc.listing("apps", App)),
                "401": doc.UNAUTHORIZED,
            },
        },
        "post": {
            "operationId": "createApp",
            "tags": ["apps"],
            "summary": "Register an app",
            "description": "A confidential app's secret is in this answer and nowhere else.",
            "requestBody": doc.body(AppInput),
            "responses": {
                "201": doc.created("Registered", AppWithSecret, "the app", links=_LINKS),
                "401": doc.UNAUTHORIZED,
                **doc.BODY_ERRORS,
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
                "200": doc.answer("The app", App),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateApp",
            "tags": ["apps"],
            "summary": "Change an app's settings",
            "requestBody": doc.body(AppPatch),
            "responses": {
                "200": doc.answer("The app as it is now", App),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _CONFLICT,
                **doc.BODY_ERRORS,
            },
        },
        "delete": {
            "operationId": "deleteApp",
            "tags": ["apps"],
            "summary": "Delete an app; its tokens stop working",
            "responses": {
                "204": {"description": "Deleted"},
                "401": doc.UNAUTHORIZED,
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
                "200": doc.answer("The new secret", AppWithSecret),
                "401": doc.UNAUTHORIZED,
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
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
                "409": _NO_SECRET,
            },
        },
    },
}
