"""Sending SMS codes: `console` (dev mode only: log, and keep for the dev outbox) or
`webhook:<url>`, which is sent from a queue after the answer has gone."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx

from iam.clock import utcnow
from iam.errors import IamError
from iam.services.phones import mask_phone

log = logging.getLogger("iam.sms")
WEBHOOK_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


class SmsDeliveryError(IamError):
    """The SMS gateway did not take the message."""


@dataclass(frozen=True)
class SmsMessage:
    phone: str
    code: str
    purpose: str
    expires_in: int
    sent_at: datetime


class SmsSender(Protocol):
    def send(self, message: SmsMessage) -> None:
        """Hand the message over without waiting for a gateway (a code's answer must take the
        same time whether or not an SMS leaves)."""
        ...


class ConsoleSms:
    """Logs the code and keeps the last messages for the dev outbox (`/dev/outbox`)."""

    def __init__(self, keep: int = 50) -> None:
        self._messages: deque[SmsMessage] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def send(self, message: SmsMessage) -> None:
        log.warning(
            "SMS (console backend) to %s: code %s for %s",
            message.phone,
            message.code,
            message.purpose,
        )
        with self._lock:
            self._messages.appendleft(message)

    def messages(self) -> list[SmsMessage]:
        with self._lock:
            return list(self._messages)


class WebhookSms:
    """POSTs `{"phone","code","purpose","expires_in"}` as JSON; any non-2xx is a failure."""

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url
        self._client = httpx.Client(timeout=WEBHOOK_TIMEOUT, transport=transport)

    def send(self, message: SmsMessage) -> None:
        payload = {
            "phone": message.phone,
            "code": message.code,
            "purpose": message.purpose,
            "expires_in": message.expires_in,
        }
        try:
            response = self._client.post(self.url, json=payload)
        except httpx.HTTPError as error:
            log.warning("SMS webhook failed for %s: %s", mask_phone(message.phone), error)
            raise SmsDeliveryError(f"the gateway is unreachable: {type(error).__name__}") from None
        if not response.is_success:
            log.warning(
                "SMS webhook answered %s for %s", response.status_code, mask_phone(message.phone)
            )
            raise SmsDeliveryError(f"the gateway answered {response.status_code}")


#: Seconds to wait before each retry of a message the gateway did not take.
RETRY_DELAYS = (1.0, 4.0, 15.0)
#: Messages waiting at most; past it a message is dropped (and reported) rather than held.
QUEUE_SIZE = 1000


class DeliveryQueue:
    """Sends through `gateway` from a worker thread, after the answer has gone: the gateway's
    time and failures never show to the person (or to someone probing which numbers have an
    account). A message the gateway refuses is retried while its code lives; one that is never
    taken is logged and handed to `on_failure` (the audit trail)."""

    def __init__(
        self,
        gateway: WebhookSms,
        on_failure: Callable[[SmsMessage, str], None] | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.gateway = gateway
        self.on_failure = on_failure
        self._delays = tuple(retry_delays)
        self._queue: queue.Queue[SmsMessage | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()

    def send(self, message: SmsMessage) -> None:
        self._start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._failed(message, "the SMS queue is full")

    def join(self) -> None:
        """Wait until every queued message is sent or given up (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the messages already queued, waiting `timeout` seconds at most."""
        with self._lock:
            worker = self._worker
        if worker is None:
            return
        self._stopping.set()
        self._queue.put(None)
        worker.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="sms-queue", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self._deliver(message)
            finally:
                self._queue.task_done()

    def _deliver(self, message: SmsMessage) -> None:
        expires = message.sent_at + timedelta(seconds=message.expires_in)
        reason = ""
        for attempt, delay in enumerate((0.0, *self._delays)):
            if attempt and (self._stopping.wait(delay) or utcnow() >= expires):
                break
            try:
                self.gateway.send(message)
                return
            except SmsDeliveryError as error:
                reason = str(error)
        self._failed(message, reason or "not sent")

    def _failed(self, message: SmsMessage, reason: str) -> None:
        log.error("SMS to %s was not delivered: %s", mask_phone(message.phone), reason)
        if self.on_failure is not None:
            try:
                self.on_failure(message, reason)
            except Exception:  # noqa: BLE001 - the worker must outlive a failed report
                log.exception("could not record an undelivered SMS")


def new_message(phone: str, code: str, purpose: str, expires_in: int) -> SmsMessage:
    return SmsMessage(phone, code, purpose, expires_in, utcnow())


def sender_for(
    backend: str, on_failure: Callable[[SmsMessage, str], None] | None = None
) -> SmsSender:
    """`console` gives the dev outbox; `webhook:<url>` a queue in front of the gateway."""
    if backend == "console":
        return ConsoleSms()
    return DeliveryQueue(WebhookSms(backend.partition(":")[2]), on_failure)
