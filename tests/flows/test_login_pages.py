"""The phone + SMS code pages over HTTP: limits, CSRF, privacy, cookies, languages, headers."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import httpx
from sqlalchemy import select
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, PHONE
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.db.models import AuditEvent
from iam.services import otp
from iam.services.sms import DeliveryQueue, WebhookSms
from iam.web import SECURE_BROWSER_COOKIE, SESSION_COOKIE

UNKNOWN_PHONE = "+8613900139000"


def set_cookie_header(response, name: str) -> str:
    headers = [
        value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")
    ]
    assert headers, f"no {name} cookie set"
    return headers[0]


def visible_text(html: str) -> str:
    return re.sub(r'value="[^"]*"', "", html)


def test_login_page_has_security_headers_and_a_browser_cookie(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    cookie = set_cookie_header(page, SECURE_BROWSER_COOKIE).lower()  # https: __Host-
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    assert 'name="csrf_token"' in page.text


def test_pages_speak_chinese_or_english(client: TestClient) -> None:
    assert "手机号码" in client.get("/login", headers={"accept-language": "zh-CN,zh;q=0.9"}).text
    assert "Mobile phone number" in client.get("/login", headers={"accept-language": "en-US"}).text
    chosen = client.get("/login?lang=en", headers={"accept-language": "zh-CN"})
    assert "Mobile phone number" in chosen.text
    # the choice is remembered by a cookie
    assert "Mobile phone number" in client.get("/login", headers={"accept-language": "zh-CN"}).text


def test_sign_in_sets_a_new_session_cookie_and_shows_the_person(front: Front, world: World) -> None:
    front.client.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    answer = front.login()
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = set_cookie_header(answer, SESSION_COOKIE)
    assert "planted-by-an-attacker" not in cookie
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "secure" in lowered
    assert "Zhang San" in front.client.get("/").text


def test_signing_in_again_replaces_the_cookie_value(front: Front, world: World) -> None:
    front.login()
    first = front.client.cookies.get(SESSION_COOKIE)
    _age_challenges(front)  # the 60 s resend limit applies to the phone
    front.login()
    second = front.client.cookies.get(SESSION_COOKIE)
    assert second and second != first
    stale = TestClient(front.client.app, base_url=ISSUER, cookies={SESSION_COOKIE: first})
    assert "Zhang San" not in stale.get("/").text
    fresh = TestClient(front.client.app, base_url=ISSUER, cookies={SESSION_COOKIE: second})
    assert "Zhang San" in fresh.get("/").text


def _age_challenges(front: Front) -> None:
    from sqlalchemy import update

    from iam.clock import utcnow
    from iam.db.models import OtpChallenge

    store = front.client.app.state.store
    with store() as db:
        db.execute(update(OtpChallenge).values(created_at=utcnow().replace(year=2020)))
        db.commit()


def test_forms_without_a_valid_csrf_token_are_refused(front: Front, world: World) -> None:
    no_token = front.client.post("/login/otp", data={"phone": PHONE})
    assert no_token.status_code == 403
    forged = front.client.post("/login/otp", data={"phone": PHONE, "csrf_token": "0" * 64})
    assert forged.status_code == 403
    other_browser = TestClient(front.client.app, base_url=ISSUER)
    foreign_token = Front(other_browser, front.sms).csrf()
    stolen = front.client.post("/login/otp", data={"phone": PHONE, "csrf_token": foreign_token})
    assert stolen.status_code == 403
    assert front.sms.messages() == []
    assert front.client.post("/login", data={"phone": PHONE, "code": "123456"}).status_code == 403


def test_unknown_numbers_look_exactly_like_known_ones(front: Front, world: World) -> None:
    known = front.send_code(PHONE)
    unknown = front.send_code(UNKNOWN_PHONE)
    assert known.status_code == unknown.status_code == 200
    assert visible_text(known.text).replace(PHONE, "N") == visible_text(unknown.text).replace(
        UNKNOWN_PHONE, "N"
    )
    assert [message.phone for message in front.sms.messages()] == [PHONE]
    # and a guessed code for the unknown number fails like a wrong one
    guessed = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": UNKNOWN_PHONE, "code": "000000"}
    )
    assert guessed.status_code == 400
    assert SESSION_COOKIE not in guessed.headers.get("set-cookie", "")


def test_bad_phone_numbers_are_refused_clearly(front: Front, world: World) -> None:
    for phone in ["", "12345", "not a phone", "+0123456789", "1380013800a", "x" * 5000]:
        answer = front.send_code(phone)
        assert answer.status_code == 400, phone
        assert "international number" in answer.text
    assert front.sms.messages() == []


def test_a_second_code_within_a_minute_is_refused(front: Front, world: World) -> None:
    assert front.send_code().status_code == 200
    again = front.send_code()
    assert again.status_code == 429
    assert 0 < int(again.headers["retry-after"]) <= 60
    assert len(front.sms.messages()) == 1


def test_five_wrong_codes_kill_the_code(front: Front, world: World) -> None:
    front.send_code()
    right = front.last_code()
    wrong = "000000" if right != "000000" else "111111"
    for tries_left in (4, 3, 2, 1):
        answer = front.client.post(
            "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": wrong}
        )
        assert answer.status_code == 400
        assert f"{tries_left} tries left" in answer.text
    front.client.post("/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": wrong})
    too_late = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": right}
    )
    assert too_late.status_code == 400
    assert SESSION_COOKIE not in too_late.headers.get("set-cookie", "")


def test_a_code_works_once(front: Front, world: World) -> None:
    front.send_code()
    code = front.last_code()
    form = {"phone": PHONE, "code": code}
    assert front.client.post("/login", data={**form, "csrf_token": front.csrf()}).status_code == 303
    replay = front.client.post("/login", data={**form, "csrf_token": front.csrf()})
    assert replay.status_code == 400


def test_malformed_code_is_refused(front: Front, world: World) -> None:
    front.send_code()
    for code in ["", "12345", "1234567", "abcdef"]:
        answer = front.client.post(
            "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": code}
        )
        assert answer.status_code == 400, code


def test_oversized_forms_are_refused(front: Front) -> None:
    answer = front.client.post(
        "/login/otp", data={"csrf_token": front.csrf(), "phone": PHONE, "junk": "x" * 20000}
    )
    assert answer.status_code == 413


def test_unknown_flow_is_an_error_page(front: Front) -> None:
    page = front.client.get("/login?flow=not-a-flow")
    assert page.status_code == 400
    assert "expired" in page.text


def _queued_gateway(answer: Callable[[httpx.Request], httpx.Response]) -> DeliveryQueue:
    gateway = WebhookSms("https://sms.example/send", transport=httpx.MockTransport(answer))
    return DeliveryQueue(gateway, None, retry_delays=(0.0, 0.0))


def _alike(known: str, unknown: str) -> bool:
    """The pages for the two numbers are the same but for the number (and the CSRF token)."""

    def without(text: str, number: str) -> str:
        return re.sub(r'name="csrf_token" value="[^"]+"', "", text).replace(number, "")

    return without(known, PHONE[3:]) == without(unknown, UNKNOWN_PHONE[3:])


def test_known_and_unknown_numbers_answer_alike_while_the_gateway_is_slow(
    settings, store, world: World
) -> None:
    """The answer never waits for the gateway (which only known numbers reach), so neither its
    time nor its content tells whether a number has an account."""
    release, reached = threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        reached.set()
        release.wait(10)
        return httpx.Response(200)

    queue = _queued_gateway(slow)
    app = create_app(settings, store=store, sms=queue)
    with TestClient(app, base_url=ISSUER) as client:
        front = Front(client, sms=None)  # type: ignore[arg-type]
        known = front.send_code(PHONE)
        answered_while_blocked = not release.is_set()
        unknown = front.send_code(UNKNOWN_PHONE)
        assert reached.wait(5)  # the known number's message did go to the gateway
        release.set()
        queue.join()
    assert answered_while_blocked
    assert known.status_code == unknown.status_code == 200
    assert _alike(known.text, unknown.text)


def test_a_failing_gateway_is_retried_and_audited_not_shown(settings, store, world: World) -> None:
    tries: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        return httpx.Response(502)

    queue = _queued_gateway(down)
    app = create_app(settings, store=store, sms=queue)
    queue.on_failure = lambda message, reason: in_unit(
        store, otp.record_undelivered, message, reason
    )
    with TestClient(app, base_url=ISSUER) as client:
        front = Front(client, sms=None)  # type: ignore[arg-type]
        known = front.send_code(PHONE)
        unknown = front.send_code(UNKNOWN_PHONE)
        queue.join()
    assert known.status_code == unknown.status_code == 200
    assert _alike(known.text, unknown.text)
    assert len(tries) == 3
    with store() as db:
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.event == "otp.undelivered"))
    assert event.user_id == world.user.id
    assert event.detail["reason"] == "the gateway answered 502"


def test_unknown_path_is_a_page_not_a_trace(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
