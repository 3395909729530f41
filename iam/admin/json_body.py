"""An API request's JSON body and its fields: each refusal an `ApiError` naming the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from iam.admin.json_api import ApiError

MAX_JSON_BYTES = 64 * 1024


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object: `application/json` (so no plain HTML form can send it
    cross-site), at most 64 KiB."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send application/json.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_JSON_BYTES):
        raise ApiError(413, "too_large", "The request body is too large.")
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", "The request body is too large.")
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return data


def field_of(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool
) -> Any:
    """One field of a JSON body, of the given type; `ApiError` 422 naming it otherwise."""
    if name not in data or data[name] is None:
        if required:
            raise ApiError(422, "invalid", f"{name} is required.", name)
        return None
    value = data[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
    if not isinstance(value, kind):
        raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
    return value


def whole_number(data: dict[str, Any], name: str, *, required: bool) -> int | None:
    """An integer field; JSON Schema counts 600.0 as an integer too, so it is read as 600."""
    value: int | float | None = field_of(data, name, (int, float), required=required)
    if isinstance(value, float):
        if not value.is_integer():
            raise ApiError(422, "invalid", f"{name} has the wrong type.", name)
        value = int(value)
    return value


def unknown_fields(data: dict[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ApiError(422, "invalid", f"Unknown field {extra[0]!r}.", extra[0])
