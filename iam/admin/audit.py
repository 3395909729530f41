"""Admin: the audit trail, newest first, filtered by user, app, event and time, paged by a
cursor (an event id) so that new events never shift a page; as a console page and the API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import ApiError, api
from iam.admin.json_body import unknown_fields
from iam.admin.pages import page, render
from iam.admin.users import (
    UNAUTHORIZED,
    error_response,
    int_param,
    iso,
    json_response,
    str_param,
)
from iam.db.models import Admin, AuditEvent
from iam.errors import ValidationError
from iam.services import audit

PAGE_SIZE = 50
FILTERS = ("user_id", "client_id", "event", "since", "until", "limit", "before")
#: The longest value each text filter can match (the columns' lengths).
MAX_LENGTHS = {"user_id": 36, "client_id": 64, "event": 64}


class BadTimeError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def parse_time(raw: str | None, name: str) -> datetime | None:
    """ISO 8601 (`2026-05-01T08:00:00Z`, an offset, or none: then it is UTC; the console's
    datetime-local fields send none) as naive UTC, how times are stored; None when not given.
    An instant past the ends of the calendar (year 1 at +01:00) is clamped to that end."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().upper())
    except ValueError:
        raise BadTimeError(name) from None
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if value.year == datetime.min.year else datetime.max


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": iso(event.occurred_at),
        "event": event.event,
        "outcome": event.outcome,
        "actor": event.actor,
        "user_id": event.user_id,
        "client_id": event.client_id,
        "ip": event.ip,
        "detail": dict(event.detail or {}),
    }


# --- the API ---------------------------------------------------------------------------------


@api
async def api_search(request: Request, caller: Caller) -> Response:
    """GET /admin/api/audit: one page of events and the cursor (`before`) of the next."""
    unknown_fields(dict(request.query_params), FILTERS)
    texts = {name: str_param(request, name, length) for name, length in MAX_LENGTHS.items()}
    try:
        since = parse_time(request.query_params.get("since"), "since")
        until = parse_time(request.query_params.get("until"), "until")
    except BadTimeError as error:
        message = f"{error.name} must be an ISO 8601 date and time (2026-05-01T08:00:00Z)."
        raise ApiError(422, "invalid", message, error.name) from None
    limit = int_param(request, "limit", PAGE_SIZE, 1, audit.MAX_PAGE)
    before = int_param(request, "before", 0, 1, audit.MAX_ID) or None
    found = await run_in_threadpool(
        lambda: audit.search_page(
            request.app.state.store,
            **texts,
            since=since,
            until=until,
            limit=limit,
            before_id=before,
        )
    )
    body = {"events": [event_json(event) for event in found.events], "next": found.next_before}
    return JSONResponse(body, headers={"cache-control": "no-store"})


# --- the console -----------------------------------------------------------------------------


def _row(event: AuditEvent) -> dict[str, Any]:
    """An event as the table shows it: UTC to the second, the detail as compact JSON."""
    return {
        "id": event.id,
        "time": event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        "event": event.event,
        "outcome": event.outcome,
        "actor": event.actor,
        "user_id": event.user_id,
        "client_id": event.client_id,
        "ip": event.ip,
        "detail": _breakable(
            json.dumps(
                event.detail or {},
                ensure_ascii=False,
                separators=(",", ":"),
                sort_keys=True,
                default=str,
            )
        ),
    }


def _breakable(text: str) -> list[str]:
    """Compact JSON in pieces that end at `,` `:` or `/`: the page may break the line there
    (`<wbr>`), so a long detail wraps inside its column."""
    return re.split(r"(?<=[,:/])", text)


@page
async def audit_page(request: Request, admin: Admin) -> Response:
    """The filter form and one page of the trail, with a link to the older events."""
    params = request.query_params
    filters = {
        name: params.get(name, "").strip()[:64]
        for name in ("user_id", "client_id", "event", "since", "until")
    }
    context: dict[str, Any] = {"filters": filters, "rows": [], "older_url": None}
    before = params.get("before", "")
    try:
        since = parse_time(filters["since"] or None, "since")
        until = parse_time(filters["until"] or None, "until")
        found = await run_in_threadpool(
            lambda: audit.search_page(
                request.app.state.store,
                user_id=filters["user_id"] or None,
                client_id=filters["client_id"] or None,
                event=filters["event"] or None,
                since=since,
                until=until,
                limit=PAGE_SIZE,
                before_id=int(before) if before.isascii() and before.isdigit() else None,
            )
        )
    except (BadTimeError, ValidationError):
        context["error_key"] = "admin.audit_bad_filter"
        return render(request, "admin/audit.html", admin, context, 400)
    context["rows"] = [_row(event) for event in found.events]
    kept = {name: value for name, value in filters.items() if value}
    if found.next_before is not None:
        context["older_url"] = "?" + urlencode({**kept, "before": found.next_before})
    if before:
        context["newest_url"] = "?" + urlencode(kept)
    return render(request, "admin/audit.html", admin, context)


# --- the API description ---------------------------------------------------------------------

SCHEMAS: dict[str, Any] = {
    "AuditEvent": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "occurred_at",
            "event",
            "outcome",
            "actor",
            "user_id",
            "client_id",
            "ip",
            "detail",
        ],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "occurred_at": {"type": "string", "format": "date-time"},
            "event": {"type": "string", "examples": ["login.succeeded"]},
            "outcome": {"type": "string", "examples": ["success", "failure"]},
            "actor": {
                "type": ["string", "null"],
                "description": "who did it when not the user: admin:<username>, "
                "client:<client_id>, cli",
            },
            "user_id": {"type": ["string", "null"]},
            "client_id": {"type": ["string", "null"]},
            "ip": {"type": ["string", "null"]},
            "detail": {"type": "object"},
        },
    },
    "AuditPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["events", "next"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}},
            "next": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "pass as `before` for the next (older) page; null on the last",
            },
        },
    },
}


def _text(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "maxLength": MAX_LENGTHS[name]}
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _time(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "format": "date-time"}
    return {"name": name, "in": "query", "description": description, "schema": schema}


PATHS: dict[str, Any] = {
    "/audit": {
        "get": {
            "operationId": "searchAudit",
            "summary": "The audit trail, newest first",
            "parameters": [
                _text("user_id", "events about this user"),
                _text("client_id", "events about this app"),
                _text("event", "an event name, or a prefix ending in a dot (`login.`)"),
                _time("since", "events at or after this time (no offset: UTC)"),
                _time("until", "events before this time (no offset: UTC)"),
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": audit.MAX_PAGE,
                        "default": PAGE_SIZE,
                    },
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "the `next` of the previous page",
                    "schema": {"type": "integer", "minimum": 1, "maximum": audit.MAX_ID},
                },
            ],
            "responses": {
                "200": json_response(
                    "A page of events", {"$ref": "#/components/schemas/AuditPage"}
                ),
                "401": UNAUTHORIZED,
                "422": error_response("A filter is refused; `field` names it."),
            },
        }
    }
}

routes: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/api/audit", api_search, methods=["GET"]),
]
