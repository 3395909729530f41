"""iam/services/sms.py: the console outbox and the webhook gateway (through httpx.MockTransport)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from iam.services.sms import (
    ConsoleSms,
    DeliveryQueue,
    SmsDeliveryError,
    SmsMessage,
    WebhookSms,
    new_message,
    sender_for,
)

URL = "https://sms.example.com/send?token=abc"


def _message(code: str = "123456", phone: str = "+8613800138000") -> SmsMessage:
    return new_message(phone, code, "login", 300)


def _webhook(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[WebhookSms, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return WebhookSms(URL, transport=httpx.MockTransport(handler)), seen


# --- WebhookSms -------------------------------------------------------------------------


def test_webhook_posts_exactly_the_contract_fields_as_json() -> None:
    sender, seen = _webhook(lambda request: httpx.Response(200))
    sender.send(new_message("+8613800138000", "042137", "bind", 300))
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "phone": "+8613800138000",
        "code": "042137",
        "purpose": "bind",
        "expires_in": 300,
    }


def test_webhook_keeps_leading_zeros_of_the_code_as_a_string() -> None:
    sender, seen = _webhook(lambda request: httpx.Response(204))
    sender.send(_message("000123"))
    assert json.loads(seen[0].content)["code"] == "000123"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_accepts_any_2xx(status: int) -> None:
    sender, seen = _webhook(lambda request: httpx.Response(status))
    sender.send(_message())
    assert len(seen) == 1


@pytest.mark.parametrize("status", [301, 400, 401, 404, 429, 500, 503])
def test_webhook_non_2xx_is_a_delivery_error(status: int) -> None:
    sender, _ = _webhook(lambda request: httpx.Response(status))
    with pytest.raises(SmsDeliveryError):
        sender.send(_message())


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_webhook_transport_failure_is_a_delivery_error(error: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("gateway unreachable", request=request)

    sender, _ = _webhook(fail)
    with pytest.raises(SmsDeliveryError):
        sender.send(_message())


def test_webhook_failure_message_does_not_leak_the_code_or_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, _ = _webhook(lambda request: httpx.Response(500))
    with pytest.raises(SmsDeliveryError) as caught:
        sender.send(_message("987654", "+8613812345678"))
    assert "987654" not in str(caught.value)
    assert "987654" not in caplog.text
    assert "+8613812345678" not in caplog.text


# --- ConsoleSms -------------------------------------------------------------------------


def test_console_keeps_messages_newest_first() -> None:
    sms = ConsoleSms()
    for code in ("111111", "222222", "333333"):
        sms.send(_message(code))
    assert [message.code for message in sms.messages()] == ["333333", "222222", "111111"]


def test_console_keeps_a_bounded_number_of_messages() -> None:
    sms = ConsoleSms(keep=3)
    for index in range(5):
        sms.send(_message(f"{index:06d}"))
    assert [message.code for message in sms.messages()] == ["000004", "000003", "000002"]


def test_console_default_bound_is_fifty() -> None:
    sms = ConsoleSms()
    for index in range(60):
        sms.send(_message(f"{index:06d}"))
    assert len(sms.messages()) == 50
    assert sms.messages()[0].code == "000059"


def test_console_messages_is_a_copy() -> None:
    sms = ConsoleSms()
    sms.send(_message())
    sms.messages().clear()
    assert len(sms.messages()) == 1


def test_console_starts_empty() -> None:
    assert ConsoleSms().messages() == []


# --- choosing the backend ---------------------------------------------------------------


def test_sender_for_console_is_a_console_sender() -> None:
    assert isinstance(sender_for("console"), ConsoleSms)


def test_sender_for_webhook_queues_for_the_url_after_the_prefix() -> None:
    sender = sender_for("webhook:https://sms.example.com/send?key=a:b")
    assert isinstance(sender, DeliveryQueue)
    assert sender.gateway.url == "https://sms.example.com/send?key=a:b"


# --- DeliveryQueue ----------------------------------------------------------------------


def _queue(
    answers: list[int], delays: tuple[float, ...] = (0.0, 0.0, 0.0)
) -> tuple[DeliveryQueue, list[httpx.Request], list[tuple[SmsMessage, str]]]:
    """A queue in front of a gateway answering `answers` in turn (then 200)."""
    pending = list(answers)
    failures: list[tuple[SmsMessage, str]] = []
    gateway, seen = _webhook(lambda request: httpx.Response(pending.pop(0) if pending else 200))
    queue = DeliveryQueue(gateway, lambda m, reason: failures.append((m, reason)), delays)
    return queue, seen, failures


def test_queue_sends_after_send_has_returned() -> None:
    """The caller never waits for the gateway: its answer takes the same time either way."""
    release = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        return httpx.Response(200)

    gateway = WebhookSms(URL, transport=httpx.MockTransport(slow))
    queue = DeliveryQueue(gateway)
    started = time.monotonic()
    queue.send(_message())
    assert time.monotonic() - started < 0.5
    release.set()
    queue.join()
    queue.close()


def test_queue_retries_a_refused_message_until_the_gateway_takes_it() -> None:
    queue, seen, failures = _queue([500, 503])
    queue.send(_message())
    queue.join()
    assert len(seen) == 3
    assert failures == []


def test_queue_gives_up_after_the_retries_and_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, seen, failures = _queue([500, 500, 500, 500, 500])
    queue.send(_message("987654", "+8613812345678"))
    queue.join()
    assert len(seen) == 4  # the first try and three retries
    [(message, reason)] = failures
    assert message.code == "987654"
    assert reason == "the gateway answered 500"
    assert "not delivered" in caplog.text
    assert "987654" not in caplog.text and "+8613812345678" not in caplog.text


def test_queue_stops_retrying_a_code_that_has_expired() -> None:
    queue, seen, failures = _queue([500, 500, 500, 500])
    queue.send(new_message("+8613800138000", "123456", "login", 0))
    queue.join()
    assert len(seen) == 1
    assert len(failures) == 1


def test_queue_close_sends_what_is_queued_first() -> None:
    queue, seen, _ = _queue([])
    for code in ("111111", "222222"):
        queue.send(_message(code))
    queue.close()
    assert [json.loads(request.content)["code"] for request in seen] == ["111111", "222222"]


def test_new_message_carries_the_fields() -> None:
    message = new_message("+8613800138000", "123456", "login", 300)
    assert (message.phone, message.code, message.purpose, message.expires_in) == (
        "+8613800138000",
        "123456",
        "login",
        300,
    )
    assert message.sent_at.tzinfo is None
