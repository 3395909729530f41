"""Sending SMS codes: `console` (log, and keep for the dev outbox) or `webhook:<url>`."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
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
    def send(self, message: SmsMessage) -> None: ...


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
            log.error("SMS webhook failed for %s: %s", mask_phone(message.phone), error)
            raise SmsDeliveryError("The SMS could not be sent. Try again later.") from error
        if not response.is_success:
            log.error(
                "SMS webhook answered %s for %s", response.status_code, mask_phone(message.phone)
            )
            raise SmsDeliveryError("The SMS could not be sent. Try again later.")


def new_message(phone: str, code: str, purpose: str, expires_in: int) -> SmsMessage:
    return SmsMessage(phone, code, purpose, expires_in, utcnow())


def sender_for(backend: str) -> SmsSender:
    if backend == "console":
        return ConsoleSms()
    return WebhookSms(backend.partition(":")[2])
