"""Workbench links (`/launch/{client_id}/wecom/{corp_id}`, issue #14 §1) over HTTP against the
simulator: the link signs the person in through the clicked corporation, silently inside WeCom,
and the app's own authorization request then completes with no page, with that context."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient
from support.browser import WeComFront, tokens_of
from support.clocks import RateClock
from support.constants import CORP_A, CORP_B, ISSUER, PHONE, RP_REDIRECT, WECOM_BASE
from support.protocol import query_of
from support.units import in_unit
from support.wecom import connect_corp

from iam.app import create_app
from iam.db.models import SsoSession, UpstreamLogin, WeComCorp
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.services import clients, users
from iam.services.clients import RegisteredClient
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

IN_WECOM = "Mozilla/5.0 (iPhone) wxwork/4.1.22 MicroMessenger/7.0.1"
INITIATE = "https://rp.example/initiate"


@pytest.fixture
def crm(store: Store) -> RegisteredClient:
    """An app that needs a subsidiary identity, with a workbench entry."""
    return in_unit(
        store,
        clients.create_client,
        "CRM",
        [RP_REDIRECT],
        context_policy="required",
        initiate_login_uri=INITIATE,
    )


@pytest.fixture
def in_wecom(wecom_front: WeComFront) -> WeComFront:
    """A browser inside the WeCom client (its user agent on every request)."""
    wecom_front.client.headers["user-agent"] = IN_WECOM
    return wecom_front


@pytest.fixture
def two_corps_person(store: Store) -> str:
    """张三, a member of both subsidiaries, linked to both."""
    person = in_unit(store, users.create_user, "张三", PHONE)
    in_unit(store, users.link_wecom, person.id, CORP_A, "zhangsan_A")
    in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    return person.id


def launch(front: WeComFront, client_id: str, corp_id: str, **params: str) -> Any:
    return front.client.get(f"/launch/{quote(client_id)}/wecom/{quote(corp_id)}", params=params)


def tapped(front: WeComFront, rp: RegisteredClient, corp_id: str, userid: str) -> Any:
    """Tap the app in `corp_id`'s workbench as `userid`: the answer of our callback."""
    started = launch(front, rp.client.client_id, corp_id)
    return front.client.get(front.pick(started, userid))


def context_of(tokens: dict[str, str]) -> dict[str, Any]:
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    context: dict[str, Any] = claims["wecom_context"]
    return context


def upstream_logins(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(UpstreamLogin)) or 0


# --- the story ----------------------------------------------------------------------------------


@pytest.mark.parametrize("corp_id", [CORP_A, CORP_B])
def test_a_workbench_link_lands_in_a_required_app_with_that_corporations_context(
    in_wecom: WeComFront, crm: RegisteredClient, two_corps_person: str, corp_id: str
) -> None:
    started = launch(in_wecom, crm.client.client_id, corp_id)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(f"{WECOM_BASE}/connect/oauth2/authorize?")  # in-app OAuth
    assert query_of(location.split("#")[0])["scope"] == "snsapi_base"  # silent
    userid = "zhangsan_A" if corp_id == CORP_A else "zs_b"
    back = in_wecom.client.get(in_wecom.pick(started, userid))
    assert back.status_code == 303, back.text
    assert back.headers["location"] == f"{INITIATE}?iss={quote(ISSUER, safe='')}"
    tokens = tokens_of(in_wecom, crm)  # the app's own request: a code, no page on the way
    assert context_of(tokens)["corpid"] == corp_id
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]


def test_the_other_workbench_switches_the_context_of_the_same_session(
    in_wecom: WeComFront, crm: RegisteredClient, two_corps_person: str, store: Store
) -> None:
    tapped(in_wecom, crm, CORP_A, "zhangsan_A")
    assert context_of(tokens_of(in_wecom, crm))["corpid"] == CORP_A
    tapped(in_wecom, crm, CORP_B, "zs_b")
    assert context_of(tokens_of(in_wecom, crm))["corpid"] == CORP_B
    with store() as db:  # one session, renewed with the new context
        assert db.scalar(select(func.count()).select_from(SsoSession)) == 1


def test_a_plain_browser_gets_the_qr_login(
    wecom_front: WeComFront, crm: RegisteredClient, two_corps_person: str
) -> None:
    started = launch(wecom_front, crm.client.client_id, CORP_B)
    assert started.headers["location"].startswith(f"{WECOM_BASE}/wwlogin/sso/login?")
    back = wecom_front.client.get(wecom_front.pick(started, "zs_b"))
    assert back.headers["location"].startswith(INITIATE)
    assert context_of(tokens_of(wecom_front, crm))["corpid"] == CORP_B


def test_the_target_link_uri_goes_along_when_it_is_on_the_apps_origin(
    in_wecom: WeComFront, crm: RegisteredClient, two_corps_person: str
) -> None:
    target = "https://rp.example/orders/42?tab=open"
    started = launch(in_wecom, crm.client.client_id, CORP_A, target_link_uri=target)
    back = in_wecom.client.get(in_wecom.pick(started, "zhangsan_A"))
    assert back.headers["location"].startswith(f"{INITIATE}?")
    assert query_of(back.headers["location"]) == {"iss": ISSUER, "target_link_uri": target}


def test_an_unknown_member_binds_first_then_lands_in_the_app(
    in_wecom: WeComFront, crm: RegisteredClient, store: Store
) -> None:
    started = launch(in_wecom, crm.client.client_id, CORP_B)
    answer = in_wecom.client.get(in_wecom.pick(started, "zs_b"))
    assert answer.headers["location"].startswith("/bind?")
    bound = in_wecom.bind(answer)
    assert bound.status_code == 303, bound.text
    assert bound.headers["location"].startswith(f"{INITIATE}?iss=")
    assert context_of(tokens_of(in_wecom, crm))["corpid"] == CORP_B


# --- what a link cannot do ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/orders",
        "https://rp.example.evil.example/",
        "http://rp.example/orders",  # another scheme is another origin
        "javascript:alert(1)",
        "/orders",
    ],
)
def test_a_target_off_the_apps_origins_is_refused(
    in_wecom: WeComFront, crm: RegisteredClient, store: Store, target: str
) -> None:
    answer = launch(in_wecom, crm.client.client_id, CORP_A, target_link_uri=target)
    assert answer.status_code == 400
    assert "outside the app" in answer.text
    assert upstream_logins(store) == 0


def test_links_that_lead_nowhere_get_a_clear_page(
    in_wecom: WeComFront, crm: RegisteredClient, store: Store
) -> None:
    plain = in_unit(store, clients.create_client, "Wiki", [RP_REDIRECT])
    cases = [
        (launch(in_wecom, "c_nosuchapp", CORP_A), 404, "does not know"),
        (launch(in_wecom, plain.client.client_id, CORP_A), 400, "initiate_login_uri"),
        (launch(in_wecom, crm.client.client_id, "wwnosuchcorp"), 404, "not connected"),
    ]
    for answer, status, words in cases:
        assert answer.status_code == status and words in answer.text, answer.text
    with store() as db:
        db.execute(update(WeComCorp).where(WeComCorp.corp_id == CORP_A).values(enabled=False))
        db.commit()
    disabled = launch(in_wecom, crm.client.client_id, CORP_A)
    assert disabled.status_code == 404 and "not connected" in disabled.text
    assert upstream_logins(store) == 0


# --- rate limits (§3) ---------------------------------------------------------------------------


@pytest.fixture
def limited(
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
    rate_clock: RateClock,
) -> Iterator[Callable[[str], WeComFront]]:
    """A browser on an app whose rate limits are `IAM_RATE_LIMITS`-style overrides, counted on
    a clock no window ends on during the test (`rate_clock`)."""
    connect_corp(store, simulator, CORP_A)
    with ExitStack() as stack:

        def front(limits: str) -> WeComFront:
            settings = replace(wecom_settings, rate_limits=limits)
            app = create_app(settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))
            browser = stack.enter_context(TestClient(app, base_url=ISSUER, follow_redirects=False))
            return WeComFront(browser, sms, simulator)

        yield front


def test_starts_are_limited_per_address_with_a_page_that_says_when(
    limited: Callable[[str], WeComFront], crm: RegisteredClient, store: Store
) -> None:
    front = limited("flow_start.ip=2/600")
    assert launch(front, crm.client.client_id, CORP_A).status_code == 303
    assert front.start(CORP_A).status_code == 303
    for refused in (launch(front, crm.client.client_id, CORP_A), front.start(CORP_A)):
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "Try again in" in refused.text
    assert upstream_logins(store) == 2


def test_a_corporations_sign_ins_stop_at_its_ceiling_before_wecom_is_asked(
    limited: Callable[[str], WeComFront], simulator: WeComSimulator, two_corps_person: str
) -> None:
    front = limited("upstream_login.key=2/60")
    for _ in range(2):
        assert front.login_as("zhangsan_A").status_code == 303
    asked = dict(simulator.calls)
    refused = front.login_as("zhangsan_A")
    assert refused.status_code == 429
    assert "to stay within WeCom" in refused.text and "min" in refused.text
    assert "phone number" in refused.text  # what to do meanwhile
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert dict(simulator.calls) == asked  # WeCom was not asked


def test_one_networks_sign_ins_are_limited_at_the_callback(
    limited: Callable[[str], WeComFront], simulator: WeComSimulator, two_corps_person: str
) -> None:
    front = limited("upstream_login.ip=1/60")
    assert front.login_as("zhangsan_A").status_code == 303
    refused = front.login_as("zhangsan_A")
    assert refused.status_code == 429 and "from your network" in refused.text
    front.client.cookies.clear()
    front.client.get("/?lang=zh-CN")
    chinese = front.login_as("zhangsan_A")
    assert chinese.status_code == 429 and "分钟后再试" in chinese.text
