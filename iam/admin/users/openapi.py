"""Admin users: their part of the OpenAPI document (the schemas and the search's parameters are
the records')."""

from __future__ import annotations

from typing import Any

from iam.admin.operations import (
    BODY_ERRORS,
    NO_CONTENT,
    UNAUTHORIZED,
    answer,
    body,
    error,
    path_parameter,
    query_parameters,
)
from iam.records.base import Mode
from iam.records.users import (
    USER_ID_SCHEMA,
    Link,
    Session,
    SessionsEnded,
    User,
    UserDetail,
    UserPage,
    UserPatch,
    UserQuery,
)

SCHEMAS: list[tuple[type[Any], Mode]] = [
    (User, "serialization"),
    (Link, "serialization"),
    (Session, "serialization"),
    (UserDetail, "serialization"),
    (UserPage, "serialization"),
    (SessionsEnded, "serialization"),
    (UserPatch, "validation"),
]


_USER_ID = path_parameter("user_id", USER_ID_SCHEMA)
_LINK_ID = path_parameter("link_id", USER_ID_SCHEMA)
_NOT_FOUND = error("No such user (or link)")
_INVALID = error("A parameter is unknown or out of its bounds (`field` names it)")

PATHS: dict[str, Any] = {
    "/users": {
        "get": {
            "operationId": "listUsers",
            "tags": ["users"],
            "summary": "Find users by name, phone, email or WeCom userid",
            "description": "`q` is matched literally (no wildcards), case-insensitively, "
            "anywhere in the name, email, phone or a linked identity's id; an 11-digit "
            "mainland phone number also matches its E.164 form. Oldest users first.",
            "parameters": query_parameters(UserQuery),
            "responses": {
                "200": answer("A page of users", UserPage),
                "401": UNAUTHORIZED,
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
                "200": answer("The user", UserDetail),
                "401": UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "setUserStatus",
            "tags": ["users"],
            "summary": "Enable or disable a user",
            "description": "Disabling ends every session of the user and revokes their "
            "refresh and access tokens; they can no longer sign in.",
            "requestBody": body(UserPatch),
            "responses": {
                "200": answer("The user as they are now", UserDetail),
                "401": UNAUTHORIZED,
                "404": _NOT_FOUND,
                **BODY_ERRORS,
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
                "204": {**NO_CONTENT, "description": "Removed"},
                "401": UNAUTHORIZED,
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
                "200": answer("How many sessions ended", SessionsEnded),
                "401": UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
}
