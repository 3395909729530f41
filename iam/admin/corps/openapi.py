"""Admin corporations: their part of the OpenAPI document (the schemas are the records')."""

from __future__ import annotations

from typing import Any

from iam.admin import operations as doc
from iam.records.base import Mode
from iam.records.corps import (
    CORP_ID_DESCRIPTION,
    ConnectionTest,
    Corp,
    CorpInput,
    CorpPatch,
    CorpProblem,
)
from iam.services import corps

SCHEMAS: list[tuple[type[Any], Mode]] = [
    (Corp, "serialization"),
    (ConnectionTest, "serialization"),
    (CorpProblem, "serialization"),
    (CorpInput, "validation"),
    (CorpPatch, "validation"),
]

_CORP_ID = {
    **doc.path_parameter("corp_id", {"type": "string", "pattern": corps.CORP_ID_PATTERN}),
    "description": CORP_ID_DESCRIPTION,
}
_NOT_FOUND = doc.error("No such corporation")

PATHS: dict[str, Any] = {
    "/corps": {
        "get": {
            "operationId": "listCorps",
            "tags": ["corps"],
            "summary": "List the connected WeCom corporations, oldest first.",
            "responses": {
                "200": doc.answer("The corporations", doc.listing("corps", Corp)),
                "401": doc.UNAUTHORIZED,
            },
        },
        "post": {
            "operationId": "addCorp",
            "tags": ["corps"],
            "summary": "Connect a WeCom corporation with its self-built app.",
            "requestBody": doc.body(CorpInput),
            "responses": {
                "201": doc.created("Connected", Corp, "the corporation"),
                "401": doc.UNAUTHORIZED,
                "409": doc.error("A corporation with this corp id is already connected"),
                **doc.BODY_ERRORS,
            },
        },
    },
    "/corps/{corp_id}": {
        "parameters": [_CORP_ID],
        "get": {
            "operationId": "getCorp",
            "tags": ["corps"],
            "summary": "One corporation.",
            "responses": {
                "200": doc.answer("The corporation", Corp),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "updateCorp",
            "tags": ["corps"],
            "summary": (
                "Change a corporation: name, agent id, secret, trust_mobile, enabled, callback "
                "Token, EncodingAESKey."
            ),
            "requestBody": doc.body(CorpPatch),
            "responses": {
                "200": doc.answer("The corporation now", Corp),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
                **doc.BODY_ERRORS,
            },
        },
    },
    "/corps/{corp_id}/test": {
        "parameters": [_CORP_ID],
        "post": {
            "operationId": "testCorp",
            "tags": ["corps"],
            "summary": "Ask WeCom for an access token now (past the cache), then for the app's "
            "settings (agent/get), and say everything found wrong. Disabled corporations may be "
            "tested too. The result is kept on the corporation: a failed test hides it from "
            "the login page, a passing one shows it again. Audited as corp.tested.",
            "responses": {
                "200": doc.answer(
                    "WeCom's answer (also when it refused or did not answer)",
                    ConnectionTest,
                ),
                "401": doc.UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
        },
    },
}
