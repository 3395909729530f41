"""Rate limits on the SMS code pages (/login/otp, /login, /bind): the page after the step says
what happened and how long to wait (in minutes), and a refused attempt sends nothing and checks
nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from support.browser import Front, WeComFront
from support.clocks import Clock, RateClock
from support.constants import CORP_A, ISSUER, PHONE
from support.protocol import query_of
from support.units import in_unit
from support.wecom import connect_corp
from support.world import World

from iam.app import create_app
from iam.db.models import IdentityLink, OtpChallenge, UpstreamLogin
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.services import otp, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key", "rate_clock")

OTHER_PHONES = ("+8613800138001", "+8613800138002")


@pytest.fixture
def browser(settings: Settings, store: Store, sms: ConsoleSms) -> Iterator[Callable[[str], Front]]:
    """A factory: an English-speaking browser on the app built with these `IAM_RATE_LIMITS`."""
    with ExitStack() as stack:

        def make(limits: str) -> Front:
            app = create_app(replace(settings, rate_limits=limits), store=store, sms=sms)
            client = stack.enter_context(TestClient(app, base_url=ISSUER, follow_redirects=False))
            client.headers["accept-language"] = "en-US"
            return Front(client, sms)

        yield make


def submit(front: Front, code: str, phone: str = PHONE):
    return front.client.post(
        "/login", data={"csrf_token": front.csrf(), "phone": phone, "code": code, "flow": ""}
    )


def problem(answer) -> str:
    """What a POST step's 303 says went wrong ("" when nothing did)."""
    assert answer.status_code == 303, answer.text
    assert "retry-after" not in answer.headers or answer.headers["retry-after"].isdigit()
    return query_of(answer.headers["location"]).get("problem", "")


def shown(front: Front, answer) -> str:
    """The text of the page a POST step's 303 sends the browser to."""
    page = front.client.get(answer.headers["location"])
    assert page.status_code == 200, page.headers.get("location")
    return page.text


def challenges(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(OtpChallenge))


def test_sending_codes_past_the_address_limit_is_refused_and_sends_nothing(
    browser, store: Store, sms: ConsoleSms, world: World
) -> None:
    for number, phone in enumerate(OTHER_PHONES):
        in_unit(store, users.create_user, f"User {number}", phone)
    front = browser("otp_send.ip=2/600")
    assert problem(front.send_code(OTHER_PHONES[0])) == ""
    assert problem(front.send_code(OTHER_PHONES[1])) == ""
    refused = front.send_code(PHONE)
    assert refused.headers["location"] == "/login?problem=not_sent&wait=500"
    assert "No code was sent: too many codes were asked for. Try again in 9 min." in shown(
        front, refused
    )
    assert [message.phone for message in sms.messages()] == list(reversed(OTHER_PHONES))
    assert challenges(store) == 2


def test_refused_sends_spend_nothing(browser, store: Store, world: World) -> None:
    """Malformed numbers and sends refused by the 60 s rule are not attempts: they spend none
    of the number's or the address's budget, and store nothing."""
    front = browser("otp_send.ip=2/600,otp_send.key=2/600")
    assert problem(front.send_code("not a phone")) == "phone_invalid"
    assert problem(front.send_code("12")) == "phone_invalid"
    assert problem(front.send_code(PHONE)) == ""
    for _ in range(3):
        assert problem(front.send_code(PHONE)) == "not_resent"  # 60 s apart
    assert challenges(store) == 1
    assert problem(front.send_code(OTHER_PHONES[0])) == ""


@pytest.fixture
def two_browsers(
    settings: Settings, store: Store, sms: ConsoleSms
) -> Iterator[tuple[Front, Front]]:
    """The owner's browser and a stranger's, on one app with the default limits."""
    app = create_app(settings, store=store, sms=sms)
    with ExitStack() as stack:
        fronts = []
        for _ in range(2):
            client = stack.enter_context(TestClient(app, base_url=ISSUER, follow_redirects=False))
            client.headers["accept-language"] = "en-US"
            fronts.append(Front(client, sms))
        yield fronts[0], fronts[1]


def test_a_stranger_cannot_lock_the_owner_out(
    two_browsers: tuple[Front, Front], world: World
) -> None:
    """The review's repro: 6 quick sends and 11 wrong codes from a stranger's browser for the
    owner's number; the owner's correct code still signs in."""
    owner, stranger = two_browsers
    assert problem(owner.send_code()) == ""
    owners_code = owner.last_code()
    sends = [problem(stranger.send_code()) for _ in range(6)]
    assert sends == ["", *["not_resent"] * 5]
    wrong = "000000" if owners_code != "000000" else "111111"
    guesses = [submit(stranger, wrong) for _ in range(11)]
    assert all(problem(guess) for guess in guesses)
    assert not any("iam_session" in guess.headers.get("set-cookie", "") for guess in guesses)
    signed_in = submit(owner, owners_code)
    assert signed_in.status_code == 303, signed_in.text


def test_a_stranger_spending_the_daily_cap_leaves_the_owner_a_code(
    two_browsers: tuple[Front, Front],
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    rate_clock: RateClock,
) -> None:
    """Ten sends spaced out used to block the number for a day; the cap is per browser."""
    owner, stranger = two_browsers
    clock = Clock().install(monkeypatch, otp)
    for _ in range(10):
        assert problem(stranger.send_code()) == ""
        clock.advance(seconds=121)
        rate_clock.wall += 121
    refused = stranger.send_code()
    assert problem(refused) == "daily_limit"
    assert "No code was sent" in shown(stranger, refused)
    assert problem(owner.send_code()) == ""
    assert submit(owner, owner.last_code()).status_code == 303


def test_wrong_codes_past_the_phone_limit_refuse_even_the_right_code(
    browser, store: Store, world: World
) -> None:
    """The limit is checked before the code: once spent, guessing is over for the window. The
    number is counted however it is written."""
    front = browser("otp_verify.key=2/600")
    assert problem(front.send_code()) == ""
    code = front.last_code()
    wrong = "000000" if code != "000000" else "111111"
    assert problem(submit(front, wrong, "+8613800138000")) == "wrong_code"
    assert problem(submit(front, wrong, "138 0013 8000")) == "wrong_code"
    refused = submit(front, code, "１３８００１３８０００")
    assert refused.headers["location"] == "/login?step=code&problem=too_many_tries&wait=500"
    page = shown(front, refused)
    assert "Too many tries. Try again in 9 min." in page
    assert "+86 138****8000" in page  # still the code step: the code is alive
    assert "iam_session" not in refused.headers.get("set-cookie", "")


def test_the_phone_limit_does_not_stop_another_phone(
    browser, store: Store, sms: ConsoleSms, world: World
) -> None:
    in_unit(store, users.create_user, "Li Si", OTHER_PHONES[0])
    front = browser("otp_verify.key=1/600")
    front.send_code()
    assert problem(submit(front, "000000" if front.last_code() != "000000" else "1")) != ""
    assert problem(front.send_code(OTHER_PHONES[0])) == ""
    signed_in = submit(front, sms.messages()[0].code, OTHER_PHONES[0])
    assert signed_in.status_code == 303, signed_in.text


# --- /bind ---


@pytest.fixture
def bind_browser(
    wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator
) -> Iterator[WeComFront]:
    settings = replace(wecom_settings, rate_limits="otp_verify.key=1/600")
    connect_corp(store, simulator, CORP_A)
    app = create_app(settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        client.headers["accept-language"] = "en-US"
        yield WeComFront(client, sms, simulator)


def test_binding_codes_are_limited_per_phone(bind_browser: WeComFront, store: Store) -> None:
    front = bind_browser
    answer = front.login_as("zhangsan_A", CORP_A)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
    page = answer.headers["location"]
    form = {"csrf_token": front.csrf(page), "binding": query_of(page)["binding"], "phone": PHONE}
    assert problem(front.client.post("/bind", data=form)) == ""
    code = front.last_code()
    wrong = "000000" if code != "000000" else "111111"
    assert problem(front.client.post("/bind", data={**form, "code": wrong})) == "wrong_code"
    refused = front.client.post("/bind", data={**form, "code": code})
    assert problem(refused) == "too_many_tries"
    assert "Try again in 9 min." in shown(front, refused)
    with store() as db:
        assert db.scalar(select(func.count()).select_from(IdentityLink)) == 0


def test_wecom_logins_started_are_limited_per_address(
    wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator
) -> None:
    """Each start stores a state row: an address may not leave more than its limit."""
    settings = replace(wecom_settings, rate_limits="flow_start.ip=2/600")
    connect_corp(store, simulator, CORP_A)
    app = create_app(settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        answers = []
        for _ in range(3):
            client.cookies.clear()
            answers.append(client.get(f"/login/wecom/{CORP_A}", params={"lang": "en"}))
    assert [answer.status_code for answer in answers] == [303, 303, 429]
    assert answers[2].headers["retry-after"] == "500"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(UpstreamLogin)) == 2
