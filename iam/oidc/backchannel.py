"""Back-channel logout (OIDC Back-Channel Logout 1.0): the logout token, and the worker that
sends the queued ones (`iam.services.backchannel`) after the unit that ended a session commits.

The worker is an asyncio task of the app (started and stopped by its lifespan): every `interval`
seconds it claims the due rows (in a worker thread, one unit), POSTs each app its
`logout_token` with a short timeout (`httpx.AsyncClient`: no thread waits on a slow app), and
records each outcome (one unit each). A person's logout never waits for it. Rows left pending
by a stopped instance are due again when their lease ends, here or on any other instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import anyio.to_thread
import httpx
from joserfc import jwt

from iam.clock import epoch, utcnow
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.oidc.keys import KeyRing
from iam.services import backchannel
from iam.services.backchannel import Delivery

log = logging.getLogger("iam.backchannel")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: A logout token is good for this many seconds (it is sent at once, or again fresh).
TOKEN_LIFETIME = 120
#: Seconds an app has to answer one POST.
TIMEOUT = 5.0
#: Seconds between two looks at the queue.
INTERVAL = 2.0


def logout_token(keys: KeyRing, issuer: str, delivery: Delivery, now: datetime) -> str:
    """The signed `logout_token` for one app and one session: the ID tokens' key and algorithm,
    `typ` `logout+jwt`, the session's `sid` and the person's `sub`, and never a `nonce`."""
    issued = epoch(now)
    claims = {
        "iss": issuer,
        "aud": delivery.client_id,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME,
        "jti": secrets.token_urlsafe(16),
        "sub": delivery.sub,
        "sid": delivery.sid,
        "events": {EVENT: {}},
    }
    header = {"alg": keys.algorithm, "typ": "logout+jwt"}
    return jwt.encode(header, claims, keys.current().signing)


class BackchannelWorker:
    """Sends the queued logout tokens. `interval` None: no loop runs (a test calls
    `run_once`)."""

    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        issuer: str,
        *,
        interval: float | None = INTERVAL,
        timeout: float = TIMEOUT,
    ) -> None:
        self.store = store
        self.keys = keys
        self.issuer = issuer
        self.interval = interval
        self.timeout = timeout

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim what is due and send it; how many were claimed."""
        claimed = await anyio.to_thread.run_sync(
            one_unit, self.store, lambda db: backchannel.claim_due(db, now)
        )
        if claimed:  # a client of this round's own: rounds with work are rare
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                await asyncio.gather(*(self._deliver(http, delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, http: httpx.AsyncClient, delivery: Delivery) -> None:
        error: str | None = None
        try:
            token = await anyio.to_thread.run_sync(
                logout_token, self.keys, self.issuer, delivery, utcnow()
            )
            answer = await http.post(
                delivery.uri,
                data={"logout_token": token},
                headers={"Cache-Control": "no-store"},
            )
            if not answer.is_success:
                error = f"HTTP {answer.status_code}"
        except httpx.HTTPError as failure:
            error = (
                f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
            )
        except Exception as failure:  # noqa: BLE001 - any failure is a failed try, recorded
            log.exception("back-channel logout to %s failed", delivery.client_id)
            error = type(failure).__name__
        if error is None:
            await anyio.to_thread.run_sync(
                one_unit, self.store, lambda db: backchannel.record_sent(db, delivery)
            )
        else:
            log.warning(
                "back-channel logout to %s (try %d) failed: %s",
                delivery.client_id,
                delivery.attempt,
                error,
            )
            failed = error
            await anyio.to_thread.run_sync(
                one_unit, self.store, lambda db: backchannel.record_failed(db, delivery, failed)
            )

    async def _loop(self, interval: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the loop outlives one bad round (database down)
                log.exception("back-channel logout round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    def start(self) -> Sending | None:
        """Start a loop in the running event loop (the app's lifespan; pending rows, a previous
        run's too, go out), handed to `stop` at the end of that lifespan. None when the loop is
        off (`interval` None)."""
        if self.interval is None:
            return None
        stopping = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._loop(self.interval, stopping))
        return Sending(task, stopping)

    async def stop(self, sending: Sending | None) -> None:
        """End the loop `start` gave: a round under way finishes first (its sends are bounded by
        the timeout), so no unit is cut off in its worker thread; past that it is cancelled, and
        what it had claimed is sent again once its lease ends."""
        if sending is None:
            return
        sending.stopping.set()
        done, _pending = await asyncio.wait({sending.task}, timeout=self.timeout + 5)
        if not done:
            sending.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending.task


@dataclass(frozen=True)
class Sending:
    """A running loop of the worker, as `start` gave it."""

    task: asyncio.Task[None]
    stopping: asyncio.Event
