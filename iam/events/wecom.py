"""WeCom's encrypted callbacks (接收事件服务器), one URL per corporation:
`{issuer}/events/wecom/{corp_id}`.

- `GET`: WeCom checks the URL when an admin saves it: the signature over `echostr` is
  verified, `echostr` decrypted (its receiveid must be this corporation), and the plaintext
  answered alone (`text/plain`, no newline).
- `POST`: a change of the corporation's directory. The envelope's signature is verified, the
  message decrypted and parsed (no DTD, no entities), the event stored once (WeCom sends it
  again when no answer came within 5 s: its ciphertext's digest is unique), and 200 answered at
  once; the event is handled right after the answer (`iam.services.directory`), so a slow
  WeCom `user/get` never makes WeCom retry.

A refusal (bad signature, another corporation's receiveid, bad padding, malformed XML) is a
400, logged and audited, and stores nothing. Timestamps are not checked for age: handling is
idempotent, and WeCom's official test vectors are years old.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from iam.db.unit import in_worker
from iam.errors import IamError, RateLimitedError
from iam.federation.connector import UpstreamUnavailableError
from iam.federation.wecom.callbacks import (
    CallbackCrypto,
    CallbackError,
    envelope_fields,
    parse_event,
)
from iam.federation.wecom.client import WeComApiError
from iam.secretbox import SecretBoxError
from iam.services import audit, corps, directory
from iam.services.corps import CallbackSettings

log = logging.getLogger("iam.events")

#: The longest value each query parameter may have (a signature is 40 hex digits).
MAX_PARAM = {"msg_signature": 40, "timestamp": 20, "nonce": 64, "echostr": 1024}


def _refused(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers={"cache-control": "no-store"})


def _params(request: Request, *names: str) -> dict[str, str] | None:
    """The query parameters WeCom sends, each present and of a bounded length; None if not."""
    values = {name: request.query_params.get(name, "") for name in names}
    if any(not value or len(value) > MAX_PARAM[name] for name, value in values.items()):
        return None
    return values


async def _crypto(request: Request) -> CallbackCrypto | None:
    """The crypto of the corporation in the path; None when it has no callback settings (or
    is unknown or disabled)."""
    state = request.app.state
    corp_id = request.path_params["corp_id"]
    try:
        found: CallbackSettings | None = await in_worker(
            state.store, lambda db: corps.callback_settings(db, state.box, corp_id)
        )
    except SecretBoxError:
        log.error(
            "the callback settings of %s no longer decrypt (IAM_SECRET_KEY changed?)", corp_id
        )
        return None
    if found is None:
        return None
    return CallbackCrypto(found.token, found.encoding_aes_key, found.corp_id)


async def _audit_refusal(request: Request, reason: str) -> Response:
    """The refusal, audited: WeCom never sends a bad signature, so these are forgeries or a
    misconfiguration. Past a limit per corporation and per address they are only counted
    (429), so a flood of forgeries cannot fill the audit trail."""
    corp_id = request.path_params["corp_id"]
    ip = request.client.host if request.client else None
    try:
        request.app.state.rate_limits.check("callback_refused", key=corp_id, ip=ip)
    except RateLimitedError as error:
        return _refused(429, f"too many refused callbacks; try again in {error.retry_after} s")
    log.warning("refused a WeCom callback for %s: %s", corp_id, reason)
    await in_worker(
        request.app.state.store,
        lambda db: audit.record(
            db.connection(),
            "wecom.callback_refused",
            outcome="failure",
            ip=ip,
            corp_id=corp_id[:64],
            reason=reason,
        ),
    )
    return _refused(400, "refused")


async def verify_url(request: Request) -> Response:
    """GET: WeCom checking the URL."""
    params = _params(request, "msg_signature", "timestamp", "nonce", "echostr")
    crypto = await _crypto(request) if params else None
    if params is None or crypto is None:
        return _refused(404 if params else 400, "no such callback")
    try:
        echo = crypto.open_echo(
            params["msg_signature"], params["timestamp"], params["nonce"], params["echostr"]
        )
    except CallbackError as error:
        return await _audit_refusal(request, error.reason)
    return PlainTextResponse(echo, headers={"cache-control": "no-store"})


async def receive(request: Request) -> Response:
    """POST: an event. Stored, answered, then handled."""
    params = _params(request, "msg_signature", "timestamp", "nonce")
    crypto = await _crypto(request) if params else None
    if params is None or crypto is None:
        return _refused(404 if params else 400, "no such callback")
    body = await request.body()
    try:
        plaintext = crypto.open_message(
            params["msg_signature"], params["timestamp"], params["nonce"], body
        )
        encrypted, _to = envelope_fields(body)
        event = parse_event(plaintext)
    except CallbackError as error:
        return await _audit_refusal(request, error.reason)
    kind = event.change_type or event.event or event.msg_type or "unknown"
    fields: dict[str, Any] = {
        **event.fields,
        "MsgType": event.msg_type,
        "Event": event.event,
        "ChangeType": event.change_type,
        "CreateTime": event.create_time,
    }
    state = request.app.state
    corp_id = crypto.receive_id
    if kind in directory.DEPARTMENT_EVENTS:
        state.wecom.forget_departments(corp_id)
    stored = await in_worker(
        state.store, lambda db: directory.store_event(db, corp_id, encrypted, kind, fields)
    )
    if stored is None:  # WeCom sending it again: already stored (and handled, or about to be)
        return Response(status_code=200)
    return Response(status_code=200, background=BackgroundTask(handle_quietly, state, stored))


def handle_quietly(state: Any, event_id: int) -> None:
    """Handle a stored event after the answer (in a worker thread). When WeCom cannot be asked
    now, the event stays unhandled: `iam corps sync` handles it, and reconciles besides."""
    try:
        outcome = directory.handle_event(state.store, state.directory_lookup, event_id)
    except (UpstreamUnavailableError, WeComApiError, IamError) as error:
        log.warning("WeCom event %s left for the next sync: %s", event_id, error)
        return
    log.info("WeCom event %s: %s", event_id, outcome)


routes = [
    Route("/events/wecom/{corp_id}", verify_url, methods=["GET"]),
    Route("/events/wecom/{corp_id}", receive, methods=["POST"]),
]
