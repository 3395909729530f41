"""A corporation whose last connection test failed is left off the login page and the linking
offer (issue #14 §5), until a test passes or an admin enables it explicitly; it still takes the
sign-ins that reach it another way (a workbench link starts at /login/wecom/{corp_id})."""

from __future__ import annotations

import html
import re

import pytest
from httpx2 import Response
from support.browser import WeComFront
from support.constants import CORP_A, CORP_B, RP_REDIRECT, WECOM_BASE
from support.protocol import query_of
from support.units import in_unit
from support.world import World

from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import clients, corps

pytestmark = pytest.mark.usefixtures("reused_signing_key")

EN = {"accept-language": "en-US,en;q=0.9"}
FAILED = corps.ConnectionResult(
    ok=False,
    errcode=0,
    errmsg="ok",
    reason=corps.APP_CLOSED,
    problems=(corps.Problem(corps.APP_CLOSED),),
    api="agent/get",
)
PASSED = corps.ConnectionResult(ok=True, errcode=0, errmsg="ok", expires_in=7200)


def buttons(page: Response) -> list[str]:
    """The corporations the page offers, by the corp id of each WeCom link, in page order."""
    hrefs = [html.unescape(h) for h in re.findall(r'href="(/login/wecom/[^"]+)"', page.text)]
    return [href.split("?")[0].rsplit("/", 1)[1] for href in hrefs]


def login_page(front: WeComFront) -> list[str]:
    page = front.client.get("/login", headers=EN)
    assert page.status_code == 200, page.text
    return buttons(page)


def remember_test(store: Store, corp_id: str, result: corps.ConnectionResult) -> None:
    in_unit(store, corps.record_test, corp_id, result, actor="admin:root")


def test_a_failed_test_hides_a_corporation_from_the_login_page(
    wecom_front: WeComFront, store: Store, box: SecretBox
) -> None:
    assert login_page(wecom_front) == [CORP_A, CORP_B]  # never tested: shown
    remember_test(store, CORP_A, FAILED)
    assert login_page(wecom_front) == [CORP_B]
    remember_test(store, CORP_A, PASSED)
    assert login_page(wecom_front) == [CORP_A, CORP_B]

    remember_test(store, CORP_B, FAILED)
    assert login_page(wecom_front) == [CORP_A]
    in_unit(store, corps.update_corp, box, CORP_B, actor="admin:root", enabled=True)
    assert login_page(wecom_front) == [CORP_A, CORP_B]  # the admin shows it anyway

    in_unit(store, corps.update_corp, box, CORP_A, actor="admin:root", enabled=False)
    remember_test(store, CORP_A, PASSED)
    assert login_page(wecom_front) == [CORP_B]  # a disabled one never


def test_a_hidden_corporation_still_takes_a_sign_in_that_reaches_it(
    wecom_front: WeComFront, store: Store
) -> None:
    remember_test(store, CORP_A, FAILED)
    started = wecom_front.start(CORP_A)
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith(WECOM_BASE)


def test_the_linking_offer_leaves_out_a_hidden_corporation(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    crm = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT], context_policy="required")
    assert wecom_front.login().status_code == 303
    remember_test(store, CORP_B, FAILED)
    params, _ = wecom_front.code_params(crm.client.client_id, RP_REDIRECT)
    answer = wecom_front.authorize(**params)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/select-identity?")
    assert query_of(answer.headers["location"])["flow"]
    page = wecom_front.client.get(answer.headers["location"], headers=EN)
    assert page.status_code == 200, page.text
    assert buttons(page) == [CORP_A]
