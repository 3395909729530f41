"""Admin: the audit trail, newest first, filtered by person, app, event and time, paged by a
cursor (an event id) so that new events never shift a page; as a console page people can read
(names, events in words, times in the console's zone), a CSV export, and the API."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, tzinfo
from functools import partial
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from iam.admin.auth import Caller
from iam.admin.json_api import api, no_store_json
from iam.admin.operations import UNAUTHORIZED, answer, error, query_parameters
from iam.admin.pages import page, render
from iam.admin.query import read_query
from iam.clock import utcnow
from iam.db.models import Admin, AuditEvent
from iam.db.unit import in_worker
from iam.errors import ValidationError
from iam.i18n import MESSAGES, translator
from iam.records import audit as records
from iam.records.audit import parse_moment
from iam.records.base import Mode
from iam.services import audit
from iam.web import Web

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

#: Each event the code records, and the message that names it for people. A test
#: (tests/admin/test_audit.py) fails on an event recorded anywhere in `iam` that is missing here.
EVENTS: dict[str, str] = {
    "admin.created": "admin.event.admin_created",
    "admin.login": "admin.event.admin_login",
    "admin.login_failed": "admin.event.admin_login_failed",
    "admin.logout": "admin.event.admin_logout",
    "admin.password_set": "admin.event.admin_password_set",
    "client.created": "admin.event.client_created",
    "client.deleted": "admin.event.client_deleted",
    "client.previous_secret_retired": "admin.event.client_previous_secret_retired",
    "client.secret_rotated": "admin.event.client_secret_rotated",
    "client.updated": "admin.event.client_updated",
    "corp.added": "admin.event.corp_added",
    "corp.tested": "admin.event.corp_tested",
    "corp.updated": "admin.event.corp_updated",
    "directory.synced": "admin.event.directory_synced",
    "key.created": "admin.event.key_created",
    "key.rotated": "admin.event.key_rotated",
    "link.created": "admin.event.link_created",
    "link.disabled": "admin.event.link_disabled",
    "link.enabled": "admin.event.link_enabled",
    "link.refreshed": "admin.event.link_refreshed",
    "link.rekeyed": "admin.event.link_rekeyed",
    "link.removed": "admin.event.link_removed",
    "link.trusted_mobile_refused": "admin.event.link_trusted_mobile_refused",
    "link.used": "admin.event.link_used",
    "login.failed": "admin.event.login_failed",
    "login.succeeded": "admin.event.login_succeeded",
    "logout.backchannel_failed": "admin.event.logout_backchannel_failed",
    "logout.backchannel_given_up": "admin.event.logout_backchannel_given_up",
    "logout.backchannel_sent": "admin.event.logout_backchannel_sent",
    "oauth.failed": "admin.event.oauth_failed",
    "otp.rejected": "admin.event.otp_rejected",
    "otp.sent": "admin.event.otp_sent",
    "otp.undelivered": "admin.event.otp_undelivered",
    "otp.withheld": "admin.event.otp_withheld",
    "session.context_chosen": "admin.event.session_context_chosen",
    "session.ended": "admin.event.session_ended",
    "session.renewed": "admin.event.session_renewed",
    "session.started": "admin.event.session_started",
    "token.failed": "admin.event.token_failed",
    "token.issued": "admin.event.token_issued",
    "token.revoked": "admin.event.token_revoked",
    "upstream.login_failed": "admin.event.upstream_login_failed",
    "user.created": "admin.event.user_created",
    "user.disabled": "admin.event.user_disabled",
    "user.enabled": "admin.event.user_enabled",
    "user.session_ended": "admin.event.user_session_ended",
    "user.sessions_ended": "admin.event.user_sessions_ended",
    "user.updated": "admin.event.user_updated",
    "wecom.callback_refused": "admin.event.wecom_callback_refused",
}

#: The detail fields people read most, and the message that names each; others show their key.
FIELDS: dict[str, str] = {
    "amr": "admin.event_field.amr",
    "callback": "admin.event_field.callback",
    "changed": "admin.event_field.changed",
    "count": "admin.event_field.count",
    "enabled": "admin.event_field.enabled",
    "error": "admin.event_field.error",
    "fields": "admin.event_field.fields",
    "grant_type": "admin.event_field.grant_type",
    "kid": "admin.event_field.kid",
    "link_id": "admin.event_field.link_id",
    "method": "admin.event_field.method",
    "phone": "admin.event_field.phone",
    "provider": "admin.event_field.provider",
    "purpose": "admin.event_field.purpose",
    "reason": "admin.event_field.reason",
    "scope": "admin.event_field.scope",
    "sessions_ended": "admin.event_field.sessions_ended",
    "sid": "admin.event_field.sid",
    "subject": "admin.event_field.subject",
    "tries_left": "admin.event_field.tries_left",
    "trust_mobile": "admin.event_field.trust_mobile",
    "username": "admin.event_field.username",
    "via": "admin.event_field.via",
}

#: The text filters of the page and the export (each no longer than its column).
TEXT_FILTERS = {"person": 100, "user_id": 36, "client_id": 64, "event": 64}
#: Rows an export holds at most: the newest that pass the filters.
CSV_CAP = 100_000
#: Events an export reads per unit of work (and holds in memory at once).
CSV_BATCH = 1000


def _typed(request: Request) -> dict[str, str]:
    """The filters as typed: to fill the form in again, and to keep in every link."""
    params = request.query_params
    typed = {name: params.get(name, "").strip()[:most] for name, most in TEXT_FILTERS.items()}
    return typed | {name: params.get(name, "").strip()[:32] for name in ("since", "until")}


def _filters(typed: dict[str, str], zone: tzinfo) -> audit.Filters:
    """The typed filters as the search takes them: times are in the console's zone
    (`IAM_TIMEZONE`), turned into UTC here. `ValueError` for a time that is not one."""
    since, until = (
        parse_moment(typed[name], zone) if typed[name] else None for name in ("since", "until")
    )
    return audit.Filters(
        user_id=typed["user_id"] or None,
        client_id=typed["client_id"] or None,
        event=typed["event"] or None,
        since=since,
        until=until,
        person=typed["person"] or None,
    )


def _context(typed: dict[str, str], t: Callable[..., str]) -> dict[str, Any]:
    """What the page shows whatever the search finds: the form, filled in."""
    events = sorted((name, t(key)) for name, key in EVENTS.items())
    return {"filters": typed, "rows": [], "events": events, "csv_cap": f"{CSV_CAP:,}"}


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _value(value: Any, t: Callable[..., str]) -> str:
    """A detail's value as text: yes/no, a list joined, a nested object as compact JSON."""
    if isinstance(value, bool):
        return t("admin.audit_yes" if value else "admin.audit_no")
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_value(item, t) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if isinstance(value, str) and value in MESSAGES and "{" not in MESSAGES[value].get("en", ""):
        return t(value)  # a message key recorded as a detail (a failed test's problems)
    return str(value)


def _row(event: AuditEvent, names: audit.Names, web: Web, t: Callable[..., str]) -> dict[str, Any]:
    """An event as people read it: its time in the console's zone, its name in words, the
    names of whom and what it is about (with their ids), its detail as labelled fields."""
    corp_id = audit.corp_of(event)
    detail = {key: value for key, value in (event.detail or {}).items() if key != "corp_id"}
    local = _local(event, web)
    return {
        "time": local.strftime("%Y-%m-%d %H:%M:%S"),
        "iso": local.isoformat(timespec="seconds"),
        "event": event.event,
        "event_text": t(EVENTS[event.event]) if event.event in EVENTS else event.event,
        "success": event.outcome == "success",
        "outcome": event.outcome,
        "actor": event.actor,
        "user_id": event.user_id,
        "user_name": names.users.get(event.user_id or ""),
        "client_id": event.client_id,
        "app_name": names.clients.get(event.client_id or ""),
        "corp_id": corp_id,
        "corp_name": names.corps.get(corp_id or ""),
        "ip": event.ip,
        "detail": [
            (t(FIELDS[key]) if key in FIELDS else key, _value(value, t))
            for key, value in sorted(detail.items())
        ],
    }


def _local(event: AuditEvent, web: Web) -> datetime:
    return event.occurred_at.replace(tzinfo=UTC).astimezone(web.timezone)


def _query(typed: dict[str, str], **more: Any) -> str:
    """A link's query: the filters in use, and `more`."""
    return "?" + urlencode({**{k: v for k, v in typed.items() if v}, **more})


@page
async def audit_page(request: Request, admin: Admin) -> Response:
    """The filter form and one page of the trail, with a link to the older events."""
    web = _web(request)
    t = translator(web.language(request))
    before = request.query_params.get("before", "")
    typed = _typed(request)
    context = _context(typed, t)
    try:
        filters = _filters(typed, web.timezone)
        shown = await in_worker(
            request.app.state.store,
            lambda db: audit.named_page(
                db,
                filters,
                records.PAGE_SIZE,
                int(before) if before.isascii() and before.isdigit() else None,
            ),
        )
    except (ValueError, ValidationError):  # no time, or a filter the service refuses
        return _refused(request, admin, context)
    context["rows"] = [_row(event, shown.names, web, t) for event in shown.events]
    context["person_name"] = shown.names.users.get(typed["user_id"])
    context["csv_url"] = "/admin/audit.csv" + _query(typed)
    if shown.next_before is not None:
        context["older_url"] = _query(typed, before=shown.next_before)
    if before:
        context["newest_url"] = _query(typed)
    return render(request, "admin/audit.html", admin, context)


def _refused(request: Request, admin: Admin, context: dict[str, Any]) -> Response:
    context["error_key"] = "admin.audit_bad_filter"
    return render(request, "admin/audit.html", admin, context, 400)


# --- the export --------------------------------------------------------------------------------

#: A cell a spreadsheet would read as a formula starts with one of these: it gets a `'` first.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(cells: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([_cell(cell) for cell in cells])
    return out.getvalue()


CSV_COLUMNS = [
    "admin.audit_time",
    "admin.audit_event",
    "admin.audit_event_name",
    "admin.audit_outcome",
    "admin.audit_person",
    "admin.audit_user",
    "admin.audit_app_name",
    "admin.audit_app",
    "admin.audit_corp",
    "admin.audit_corp_id",
    "admin.audit_actor",
    "admin.audit_ip",
    "admin.audit_detail",
]


def _csv_row(event: AuditEvent, names: audit.Names, web: Web, t: Callable[..., str]) -> str:
    row = _row(event, names, web, t)
    return _csv_line(
        [
            _local(event, web).isoformat(sep=" ", timespec="seconds"),
            row["event_text"],
            event.event,
            t("admin.audit_success" if row["success"] else "admin.audit_failure"),
            row["user_name"],
            event.user_id,
            row["app_name"],
            event.client_id,
            row["corp_name"],
            row["corp_id"],
            event.actor,
            event.ip,
            "; ".join(f"{label}: {value}" for label, value in row["detail"]),
        ]
    )


@page
async def audit_csv(request: Request, admin: Admin) -> Response:
    """GET /admin/audit.csv: the events the page's filters keep, newest first, as a UTF-8 CSV
    with a BOM (Excel then reads Chinese right). Streamed a batch (one unit of work) at a time,
    at most `CSV_CAP` rows: an export never holds the whole trail in memory."""
    web = _web(request)
    t = translator(web.language(request))
    typed = _typed(request)
    try:
        filters = _filters(typed, web.timezone)
    except ValueError:
        return _refused(request, admin, _context(typed, t))
    store = request.app.state.store

    async def lines() -> AsyncIterator[str]:
        yield "\ufeff" + _csv_line([t(key) for key in CSV_COLUMNS])
        before: int | None = None
        left = CSV_CAP
        while left > 0:
            batch = partial(
                audit.named_page, filters=filters, limit=min(CSV_BATCH, left), before=before
            )
            shown = await in_worker(store, batch)
            yield "".join(_csv_row(event, shown.names, web, t) for event in shown.events)
            left -= len(shown.events)
            if shown.next_before is None:
                return
            before = shown.next_before

    stamp = utcnow().replace(tzinfo=UTC).astimezone(web.timezone).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="audit-{stamp}.csv"',
            "cache-control": "no-store",
        },
    )


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
    Route("/audit.csv", audit_csv, methods=["GET"]),
    Route("/api/audit", api_search, methods=["GET"]),
]
