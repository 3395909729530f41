"""Admin: the audit trail, newest first, filtered by user, app, event and time, paged by a
cursor (an event id) so that new events never shift a page; as a console page and the API."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import api, no_store_json
from iam.admin.operations import UNAUTHORIZED, answer, error, query_parameters
from iam.admin.pages import page, render
from iam.admin.query import read_query
from iam.db.models import Admin, AuditEvent
from iam.db.unit import in_worker
from iam.errors import ValidationError
from iam.records import audit as records
from iam.records.audit import parse_moment
from iam.records.base import Mode
from iam.services import audit

# --- the API ---------------------------------------------------------------------------------


@api
async def api_search(request: Request, caller: Caller) -> Response:
    """GET /admin/api/audit: one page of events and the cursor (`before`) of the next."""
    query = read_query(records.AuditQuery, request)
    found = await in_worker(
        request.app.state.store,
        lambda db: audit.search(db, **query.model_dump()),
    )
    body = records.AuditPage.of(found).to_json()
    return no_store_json(body)


# --- the console -----------------------------------------------------------------------------


def _row(event: AuditEvent) -> dict[str, Any]:
    """An event as the table shows it: the API's record, its time UTC to the second, the
    detail as compact JSON."""
    row = records.AuditEvent.of(event).model_dump()
    compact = json.dumps(
        row["detail"], ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str
    )
    return {
        **row,
        "time": event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        "detail": _breakable(compact),
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
        since = parse_moment(filters["since"]) if filters["since"] else None
        until = parse_moment(filters["until"]) if filters["until"] else None
        found = await in_worker(
            request.app.state.store,
            lambda db: audit.search(
                db,
                user_id=filters["user_id"] or None,
                client_id=filters["client_id"] or None,
                event=filters["event"] or None,
                since=since,
                until=until,
                limit=records.PAGE_SIZE,
                before=int(before) if before.isascii() and before.isdigit() else None,
            ),
        )
    except (ValueError, ValidationError):  # no time, or a filter the service refuses
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

SCHEMAS: list[tuple[type[Any], Mode]] = [
    (records.AuditEvent, "serialization"),
    (records.AuditPage, "serialization"),
]


PATHS: dict[str, Any] = {
    "/audit": {
        "get": {
            "operationId": "searchAudit",
            "tags": ["audit"],
            "summary": "The audit trail, newest first",
            "parameters": query_parameters(records.AuditQuery),
            "responses": {
                "200": answer("A page of events", records.AuditPage),
                "401": UNAUTHORIZED,
                "422": error("A filter is refused; `field` names it."),
            },
        }
    }
}

routes: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/api/audit", api_search, methods=["GET"]),
]
