"""The pieces every area's part of the OpenAPI document is made of: references to the records'
schemas, answers, the refusals every operation shares, request bodies and path parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from iam.records.base import REF_TEMPLATE, schemas


def ref(schema: type[BaseModel] | str) -> dict[str, str]:
    name = schema if isinstance(schema, str) else schema.__name__
    return {"$ref": REF_TEMPLATE.format(model=name)}


def answer(
    description: str, schema: type[BaseModel] | dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A JSON answer: a record (by reference) or an inline schema."""
    shown = schema if isinstance(schema, dict) else ref(schema)
    return {"description": description, "content": {"application/json": {"schema": shown}}, **extra}


def created(description: str, record: type[BaseModel], what: str, **extra: Any) -> dict[str, Any]:
    """A 201 answer: the new resource, and its URL in this API in `Location`."""
    location = {"description": f"{what}'s URL in this API", "required": True}
    return answer(
        description,
        record,
        headers={"Location": {**location, "schema": {"type": "string"}}},
        **extra,
    )


def listing(key: str, record: type[BaseModel]) -> dict[str, Any]:
    """`{"<key>": [record, ...]}`."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [key],
        "properties": {key: {"type": "array", "items": ref(record)}},
    }


def error(description: str) -> dict[str, Any]:
    return answer(description, ref("Error"))


def body(record: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(record)}}}


def query_parameters(record: type[BaseModel]) -> list[dict[str, Any]]:
    """A record's fields as an operation's query parameters (its schema says each one's bounds
    and default; the record checks them: `iam.admin.query.read_query`)."""
    schema = schemas([(record, "validation")])[record.__name__]
    return [
        {"name": name, "in": "query", "schema": field}
        for name, field in schema["properties"].items()
    ]


def path_parameter(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


NO_CONTENT = {"description": "Done"}
UNAUTHORIZED = error("Neither a console session nor an admin bearer token")
BODY_ERRORS = {
    "400": error("The body is not a JSON object"),
    "413": error("The body is larger than 64 KiB"),
    "415": error("The body is not application/json"),
    "422": error("A field is missing, unknown, of the wrong type or invalid (`field` names it)"),
}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the field at fault, for 422"},
    },
}
