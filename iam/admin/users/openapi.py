"""Admin users: their part of the OpenAPI document (the schemas and the search's parameters are
the records')."""

from __future__ import annotations

from typing import Any

from iam.admin import operations as doc
from iam.records import users as records
from iam.records.base import Mode

SCHEMAS: list[tuple[type[Any], Mode]] = [
    (records.User, "serialization"),
    (records.Link, "serialization"),
    (records.Session, "serialization"),
    (records.UserDetail, "serialization"),
    (records.UserPage, "serialization"),
    (records.SessionsEnded, "serialization"),
    (records.UserPatch, "validation"),
]


_USER_ID = doc.path_parameter("user_id", records.USER_ID_SCHEMA)
_LINK_ID = doc.path_parameter("link_id", records.USER_ID_SCHEMA)
_NOT_FOUND = doc.error("No such user (or link)")
_INVALID = doc.error("A parameter is unknown or out of its bounds (`field` names it)")

PATHS: dict[str, Any] = {
    "/users": {
        "get": {
            "operationId": "listUsers",
            "tags": ["users"],
            "summary": "Find users by name, phone, email or WeCom userid",
            "description": "`q` is matched literally (no wildcards), case-insensitively, "
            "anywhere in the name, email, phone or a linked identity's id; an 11-digit "
            "mainland phone number also matches its E.164 form. Oldest users first.",
            "parameters": doc.query_parameters(records.UserQuery),
            "responses": {
                "200": doc.answer("A page of users", records.UserPage),
                "401": doc.UNAUTHORIZED,
                "422": _INVALID,
            },
        }
    },
    "/users/{user_id}": {
        "parameters": [_USER_ID],
        "get": {
            "operationId": "getUser",
            "tags": ["users"],
            "summary": "A user with every link and their live sessions",
            "responses": {
                "200": doc.answer("The user", records.UserDetail),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "setUserStatus",
            "tags": ["users"],
            "summary": "Enable or disable a user",
            "description": "Disabling ends every session of the user and revokes their "
            "refresh and access tokens; they can no longer sign in.",
            "requestBody": doc.body(records.UserPatch),
            "responses": {
                "200": doc.answer("The user as they are now", records.UserDetail),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
                **doc.BODY_ERRORS,
            },
        },
    },
    "/users/{user_id}/links/{link_id}": {
        "parameters": [_USER_ID, _LINK_ID],
        "delete": {
            "operationId": "removeUserLink",
            "tags": ["users"],
            "summary": "Remove one of the user's identity links",
            "description": "Sessions whose identity context was this link keep going without "
            "a context.",
            "responses": {
                "204": {**doc.NO_CONTENT, "description": "Removed"},
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
    "/users/{user_id}/sessions": {
        "parameters": [_USER_ID],
        "delete": {
            "operationId": "endUserSessions",
            "tags": ["users"],
            "summary": "End every session of the user and revoke the tokens bound to them",
            "responses": {
                "200": doc.answer("How many sessions ended", records.SessionsEnded),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
}
