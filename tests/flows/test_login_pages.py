"""The phone + SMS code pages over HTTP: limits, CSRF, privacy, cookies, languages, headers."""

from __future__ import annotations

import re

import httpx
from conftest import ISSUER, PHONE, Front, World
from starlette.testclient import TestClient

from iam.app import create_app
from iam.services.sms import WebhookSms
from iam.web import BROWSER_COOKIE, SESSION_COOKIE

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
    cookie = set_cookie_header(page, BROWSER_COOKIE).lower()
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


def test_sms_gateway_failure_shows_a_clear_page(settings, store, world: World) -> None:
    failing = WebhookSms(
        "https://sms.example/send", transport=httpx.MockTransport(lambda r: httpx.Response(502))
    )
    with TestClient(create_app(settings, store=store, sms=failing), base_url=ISSUER) as client:
        front = Front(client, sms=None)  # type: ignore[arg-type]
        answer = front.send_code()
    assert answer.status_code == 503
    assert "could not be sent" in answer.text


def test_unknown_path_is_a_page_not_a_trace(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
