"""The phone + SMS code pages over HTTP: limits, CSRF, privacy, cookies, languages, headers."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import CORP_A, ISSUER, PHONE, RP_REDIRECT
from support.protocol import query_of
from support.units import in_unit
from support.wecom import connect_corp
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
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, prompt="login")
    asked = front.authorize(**params)
    assert asked.headers["location"].startswith("/login?flow=")
    front.login(flow=query_of(asked.headers["location"])["flow"])
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


def shown(front: Front, answer) -> str:
    """The page a POST step's 303 sends the browser to."""
    assert answer.status_code == 303, answer.text
    assert answer.headers["cache-control"] == "no-store"
    page = front.client.get(answer.headers["location"])
    assert page.status_code == 200, page.headers.get("location")
    return page.text


def without_number(html: str, phone: str) -> str:
    return visible_text(html).replace(phone[3:6] + "****" + phone[-4:], "N")


def test_unknown_numbers_look_exactly_like_known_ones(front: Front, world: World) -> None:
    known = front.send_code(PHONE)
    known_page = shown(front, known)
    unknown = front.send_code(UNKNOWN_PHONE)
    assert known.headers["location"] == unknown.headers["location"] == "/login?step=code"
    unknown_page = shown(front, unknown)
    assert without_number(known_page, PHONE) == without_number(unknown_page, UNKNOWN_PHONE)
    assert [message.phone for message in front.sms.messages()] == [PHONE]
    # and a guessed code for the unknown number fails like a wrong one
    guessed = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": UNKNOWN_PHONE, "code": "000000"}
    )
    assert guessed.headers["location"] == "/login?step=code&problem=wrong_code"
    assert SESSION_COOKIE not in guessed.headers.get("set-cookie", "")


def test_the_number_never_travels_in_a_url(front: Front, world: World) -> None:
    answers = [front.send_code("138 0013 8000"), front.send_code("138 0013 8000")]
    answers.append(front.client.post("/login", data={"csrf_token": front.csrf(), "code": "1"}))
    for answer in answers:
        assert answer.status_code == 303
        assert "138" not in answer.headers["location"], answer.headers["location"]


def test_the_code_step_shows_the_masked_number_and_the_countdown(
    front: Front, world: World
) -> None:
    page = shown(front, front.send_code("0086 138-0013-8000"))
    assert "+86 138****8000" in page
    assert PHONE not in visible_text(page)
    assert re.search(r'<button[^>]*id="resend"[^>]*disabled', page)
    assert re.search(r"Send a new code in (60|61) s", page)
    assert '<script src="/static/countdown.js"' in page
    assert [message.phone for message in front.sms.messages()] == [PHONE]


def test_a_reload_of_the_code_step_sends_nothing(front: Front, world: World) -> None:
    location = front.send_code().headers["location"]
    for _ in range(3):
        page = front.client.get(location)
        assert page.status_code == 200 and "+86 138****8000" in page.text
    assert len(front.sms.messages()) == 1


def test_the_code_step_without_a_code_is_the_phone_step(front: Front, world: World) -> None:
    page = front.client.get("/login?step=code")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    code = front.client.get("/login?step=code&problem=wrong_code")
    assert code.headers["location"] == "/login?problem=wrong_code"


def test_the_sign_in_form_may_leave_out_the_number(front: Front, world: World) -> None:
    """The code step knows the number (the browser's live code): a form with the code only."""
    front.send_code()
    answer = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "code": front.last_code()}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert SESSION_COOKIE in answer.headers["set-cookie"]


def test_unknown_problems_are_not_shown(front: Front, world: World) -> None:
    page = front.client.get("/login?problem=<b>hacked</b>&wait=9999999999")
    assert page.status_code == 200
    assert "<b>hacked" not in page.text
    assert 'role="alert"' not in page.text


def test_bad_phone_numbers_are_refused_clearly(front: Front, world: World) -> None:
    for phone in ["", "12345", "not a phone", "+0123456789", "1380013800a", "x" * 5000]:
        answer = front.send_code(phone)
        assert answer.headers["location"] == "/login?problem=phone_invalid", phone
        assert "international number" in shown(front, answer)
    assert front.sms.messages() == []


@pytest.mark.parametrize(
    "typed",
    ["86 138 0013 8000", "0086 138-0013-8000", "+86 (138) 0013 8000", "１３８００１３８０００"],
)
def test_numbers_as_typed_in_china_get_a_code(front: Front, world: World, typed: str) -> None:
    answer = front.send_code(typed)
    assert answer.headers["location"] == "/login?step=code"
    assert [message.phone for message in front.sms.messages()] == [PHONE]


def test_the_wecom_buttons_stay_after_a_bad_number(
    front: Front, world: World, store, simulator
) -> None:
    connect_corp(store, simulator, CORP_A)
    page = shown(front, front.send_code("12345"))
    assert "international number" in page
    assert f'href="/login/wecom/{CORP_A}"' in page


def test_a_second_code_within_a_minute_is_refused(front: Front, world: World) -> None:
    assert front.send_code().headers["location"] == "/login?step=code"
    again = front.send_code()
    assert again.headers["location"] == "/login?step=code&problem=not_resent"
    page = shown(front, again)
    assert "No new code was sent" in page
    assert re.search(r"Send a new code in \d\d? s", page)
    assert len(front.sms.messages()) == 1


def test_five_wrong_codes_kill_the_code(front: Front, world: World) -> None:
    front.send_code()
    right = front.last_code()
    wrong = "000000" if right != "000000" else "111111"
    for tries_left in (4, 3, 2, 1):
        answer = front.client.post(
            "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": wrong}
        )
        page = shown(front, answer)
        assert f"{tries_left} tries left" in page
        assert "+86 138****8000" in page  # the number stays in sight
    last = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": wrong}
    )
    assert last.headers["location"] == "/login?step=code&problem=code_dead"
    back = front.client.get(last.headers["location"])  # no live code: the phone step
    assert back.headers["location"] == "/login?problem=code_dead"
    assert "Ask for a new one" in shown(front, back)
    too_late = front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": right}
    )
    assert too_late.status_code == 303
    assert SESSION_COOKIE not in too_late.headers.get("set-cookie", "")


def test_a_code_works_once(front: Front, world: World) -> None:
    front.send_code()
    code = front.last_code()
    form = {"phone": PHONE, "code": code}
    assert front.client.post("/login", data={**form, "csrf_token": front.csrf()}).status_code == 303
    front.client.cookies.delete(SESSION_COOKIE)  # signed in, the form would go on to home
    replay = front.client.post("/login", data={**form, "csrf_token": front.csrf()})
    assert replay.headers["location"] == "/login?step=code&problem=code_dead"
    assert SESSION_COOKIE not in replay.headers.get("set-cookie", "")


def test_malformed_code_is_refused(front: Front, world: World) -> None:
    front.send_code()
    for code in ["", "12345", "1234567", "abcdef"]:
        answer = front.client.post(
            "/login", data={"csrf_token": front.csrf(), "phone": PHONE, "code": code}
        )
        assert answer.headers["location"] == "/login?step=code&problem=code_invalid", code
    assert "Enter the 6-digit code" in shown(front, answer)


def test_oversized_forms_are_refused(front: Front) -> None:
    answer = front.client.post(
        "/login/otp", data={"csrf_token": front.csrf(), "phone": PHONE, "junk": "x" * 20000}
    )
    assert answer.status_code == 413


def test_unknown_flow_is_an_error_page(front: Front) -> None:
    page = front.client.get("/login?flow=not-a-flow")
    assert page.status_code == 400
    assert "expired" in page.text
    assert 'href="/login"' in page.text  # a fresh sign-in, not the gone request's
    posted = front.client.post(
        "/login/otp", data={"csrf_token": front.csrf(), "phone": PHONE, "flow": "not-a-flow"}
    )
    assert posted.headers["location"] == "/login?flow=not-a-flow"
    assert front.sms.messages() == []


def _queued_gateway(answer: Callable[[httpx.Request], httpx.Response]) -> DeliveryQueue:
    gateway = WebhookSms("https://sms.example/send", transport=httpx.MockTransport(answer))
    return DeliveryQueue(gateway, None, retry_delays=(0.0, 0.0))


def _alike(known: str, unknown: str) -> bool:
    """The pages for the two numbers are the same but for the number (and the CSRF token)."""

    def without(text: str, number: str) -> str:
        text = re.sub(r'name="csrf_token" value="[^"]+"', "", text)
        text = re.sub(r"\b\d\d? s\b|data-resend-in=\"\d+\"", "", text)  # the countdown
        return text.replace(number, "").replace(number[3:6] + "****" + number[-4:], "")

    return without(known, PHONE) == without(unknown, UNKNOWN_PHONE)


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
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        front = Front(client, sms=None)  # type: ignore[arg-type]
        known = shown(front, front.send_code(PHONE))
        answered_while_blocked = not release.is_set()
        unknown = shown(front, front.send_code(UNKNOWN_PHONE))
        assert reached.wait(5)  # the known number's message did go to the gateway
        release.set()
        queue.join()
    assert answered_while_blocked
    assert _alike(known, unknown)


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
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        front = Front(client, sms=None)  # type: ignore[arg-type]
        known = shown(front, front.send_code(PHONE))
        unknown = shown(front, front.send_code(UNKNOWN_PHONE))
        queue.join()
    assert _alike(known, unknown)
    assert len(tries) == 3
    with store() as db:
        [event] = db.scalars(select(AuditEvent).where(AuditEvent.event == "otp.undelivered"))
    assert event.user_id == world.user.id
    assert event.detail["reason"] == "the gateway answered 502"


def test_unknown_path_is_a_page_not_a_trace(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")


def _flow(front: Front, world: World, **extra: str) -> str:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, **extra)
    asked = front.authorize(**params)
    assert asked.headers["location"].startswith("/login?flow="), asked.headers
    return query_of(asked.headers["location"])["flow"]


def test_a_second_tab_goes_on_to_the_app_once_signed_in(front: Front, world: World) -> None:
    """Tab A is left on the login page of a request; the person signs in in tab B (for
    another request): a reload or a submit in tab A goes on to A's request."""
    tab_a = _flow(front, world)
    tab_b = _flow(front, world)
    assert front.client.get(f"/login?flow={tab_a}").status_code == 200
    assert front.login(flow=tab_b).headers["location"] == f"/flow/{tab_b}"
    for reload in (f"/login?flow={tab_a}", f"/login?flow={tab_a}&step=code"):
        again = front.client.get(reload)
        assert again.status_code == 303 and again.headers["location"] == f"/flow/{tab_a}"
    sent = len(front.sms.messages())
    submitted = front.client.post(
        "/login/otp", data={"csrf_token": front.csrf(), "phone": PHONE, "flow": tab_a}
    )
    assert submitted.headers["location"] == f"/flow/{tab_a}"
    assert len(front.sms.messages()) == sent  # no code for someone signed in
    assert front.client.get(f"/flow/{tab_a}").status_code == 302  # on to the app


def test_back_after_a_completed_sign_in_goes_home(front: Front, world: World) -> None:
    flow = _flow(front, world)
    done = front.login(flow=flow)
    assert front.client.get(done.headers["location"]).status_code == 302  # the app has its code
    for back in (f"/login?flow={flow}", f"/login?flow={flow}&step=code", "/login"):
        page = front.client.get(back)
        assert page.status_code == 303 and page.headers["location"] == "/", back
    assert "Zhang San" in front.client.get("/").text


def test_a_request_that_asks_for_a_new_sign_in_still_gets_the_form(
    front: Front, world: World
) -> None:
    """prompt=login: the session predates the request, so the login page asks (no loop back
    to the request)."""
    front.login()
    flow = _flow(front, world, prompt="login")
    page = front.client.get(f"/login?flow={flow}")
    assert page.status_code == 200 and 'action="/login/otp"' in page.text
