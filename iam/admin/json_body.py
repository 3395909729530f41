"""An API request's JSON body: an object, sent as JSON, of bounded size (its fields are read by
the records of `iam.records`)."""

from __future__ import annotations

import json
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
