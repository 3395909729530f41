"""WeCom login over HTTP against the simulator: start, callback, link or bind, and every failure."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import redis
import uvicorn
from sqlalchemy import func, select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from support.browser import WeComFront
from support.clocks import Clock
from support.constants import (
    CORP_A,
    CORP_B,
    ISSUER,
    PHONE,
    RP_REDIRECT,
    TEST_SECRET,
    WECOM_BASE,
)
from support.databases import flushed_redis
from support.protocol import query_of
from support.units import in_unit
from support.wecom import connect_corp

from iam.app import create_app
from iam.clock import utcnow
from iam.db.models import AuditEvent, IdentityLink, OtpChallenge, SsoSession, User, WeComCorp
from iam.db.store import Store
from iam.devtools.wecom_simulator import SimMember, WeComSimulator
from iam.federation.wecom.tokens import RedisTokenCache
from iam.secretbox import SecretBox
from iam.services import clients, corps, rows, upstream, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

IN_WECOM = {"user-agent": "Mozilla/5.0 (iPhone) wxwork/4.1.22 MicroMessenger/7.0.1"}
LISI_PHONE = "+8613900139000"
ONE_MINUTE = timedelta(minutes=1)
#: Written before a test's logins: corporations connected, the first run's signing key.
SETUP_EVENTS = ("corp.added", "key.created")


# --- helpers ------------------------------------------------------------------------------------


def state_of(started: Any) -> str:
    """The state our server put into the WeCom login URL of a /login/wecom/... answer."""
    assert started.status_code == 303, started.text
    return query_of(started.headers["location"].split("#")[0])["state"]


def callback(front: WeComFront, corp_id: str, **params: str) -> Any:
    return front.client.get(f"/callback/wecom/{corp_id}", params=params)


def counts(store: Store) -> tuple[int, int, int]:
    """(users, links, sessions)."""
    with store() as db:
        return (
            db.scalar(select(func.count()).select_from(User)),
            db.scalar(select(func.count()).select_from(IdentityLink)),
            db.scalar(select(func.count()).select_from(SsoSession)),
        )


def events(store: Store, *names: str, after: int = 0) -> list[AuditEvent]:
    """Audit events other than the set-up's (or only `names`), oldest first; only those after
    the event numbered `after`."""
    with store() as db:
        statement = select(AuditEvent).where(
            AuditEvent.event.not_in(SETUP_EVENTS), AuditEvent.id > after
        )
        if names:
            statement = statement.where(AuditEvent.event.in_(names))
        return list(db.scalars(statement.order_by(AuditEvent.id)))


def last_event(store: Store) -> int:
    with store() as db:
        return db.scalar(select(func.max(AuditEvent.id))) or 0


def only_failure(store: Store, after: int = 0) -> dict[str, Any]:
    """The one audit event after a failed login (there must be exactly one), as its detail."""
    trail = events(store, after=after)
    assert [(e.event, e.outcome) for e in trail] == [("upstream.login_failed", "failure")], trail
    return trail[0].detail


def age_codes(store: Store) -> None:
    """Make every SMS code sent so far old enough that the 60 s resend limit allows another."""
    with store() as db:
        db.execute(update(OtpChallenge).values(created_at=utcnow() - ONE_MINUTE))
        db.commit()


def the_link(store: Store) -> IdentityLink:
    with store() as db:
        return db.scalars(select(IdentityLink)).one()


def the_session(store: Store) -> SsoSession:
    with store() as db:
        return db.scalars(select(SsoSession)).one()


# --- signing in ---------------------------------------------------------------------------------


def test_first_login_binds_by_sms_and_the_second_comes_straight_through(
    wecom_front: WeComFront, store: Store
) -> None:
    answer = wecom_front.login_as("zhangsan_A")
    assert answer.headers["location"].startswith("/bind?")
    bound = wecom_front.bind(answer)
    assert bound.status_code == 303, bound.text
    assert bound.headers["location"] == "/"
    with store() as db:
        link = db.scalars(select(IdentityLink)).one()
        user = db.get(User, link.user_id)
        sso = db.scalars(select(SsoSession)).one()
    assert link.provider_user_id == f"{CORP_A}/zhangsan_A"
    assert link.link_metadata["corp_name"] == "子公司A"
    assert link.link_metadata["position"] == "销售经理"
    assert user.phone == PHONE
    assert (sso.user_id, sso.context_link_id, sso.amr) == (user.id, link.id, ["wecom"])

    again = wecom_front.login_as("zhangsan_A")
    assert again.status_code == 303, again.text
    assert again.headers["location"] == "/"
    with store() as db:
        assert db.scalar(select(IdentityLink.id)) == link.id
        assert len(db.scalars(select(IdentityLink)).all()) == 1


def test_known_member_signs_in_with_that_link_as_context_and_fresh_metadata(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    member = SimMember("wangwu", "王五", [2], "销售代表")
    simulator.add_member(CORP_A, member)
    bound = wecom_front.bind(wecom_front.login_as("wangwu"), phone="+8613300133000")
    assert bound.status_code == 303, bound.text
    first = the_link(store)
    assert first.provider_user_id == f"{CORP_A}/wangwu"
    assert first.link_metadata == {
        "provider": "wecom",
        "corpid": CORP_A,
        "corp_name": "子公司A",
        "userid": "wangwu",
        "name": "王五",
        "department": ["销售部"],
        "department_ids": [2],
        "position": "销售代表",
        "avatar": "",
    }

    # WeCom changes the member (an admin renames them, moves them, respells the userid)
    member.userid = "WangWu"
    member.name = "王五五"
    member.department = [3, 4]
    member.position = "售后主管"
    member.avatar = "https://wework.qpic.cn/wwhead/wangwu/0"
    wecom_front.client.cookies.clear()  # a new browser: no session to renew
    started = wecom_front.start(CORP_A, **IN_WECOM)  # in the app: snsapi_base, no getuserdetail
    again = wecom_front.client.get(wecom_front.pick(started, "wangwu"))
    assert again.status_code == 303 and again.headers["location"] == "/", again.text

    link = the_link(store)
    assert link.id == first.id
    assert link.provider_user_id == f"{CORP_A}/WangWu"  # WeCom's spelling, as it is now
    assert link.provider_user_key == f"{CORP_A}/wangwu"
    assert link.link_metadata["name"] == "王五五"
    assert link.link_metadata["department"] == ["售后服务部", "财务部"]
    assert link.link_metadata["department_ids"] == [3, 4]
    assert link.link_metadata["position"] == "售后主管"
    assert link.link_metadata["avatar"] == ""  # a post-2022 app reads no avatar silently
    assert link.last_login_at is not None and link.last_login_at >= first.last_login_at
    with store() as db:
        newest = db.scalars(select(SsoSession).order_by(SsoSession.created_at.desc())).first()
    assert (newest.user_id, newest.context_link_id, newest.amr) == (
        link.user_id,
        link.id,
        ["wecom"],
    )
    used = events(store, "link.used")
    assert [(e.user_id, e.detail["link_id"]) for e in used] == [(link.user_id, link.id)]
    assert "王五" in wecom_front.client.get("/").text


def test_a_link_made_with_another_spelling_is_the_same_identity(
    wecom_front: WeComFront, store: Store
) -> None:
    """WeCom userids are case-insensitive: an admin-made `ZHANGSAN_A` link is zhangsan_A's."""
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    in_unit(store, users.link_wecom, user.id, CORP_A, "ZHANGSAN_A", {"position": "stale"})
    answer = wecom_front.login_as("zhangsan_A")
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    link = the_link(store)
    assert link.user_id == user.id
    assert link.provider_user_id == f"{CORP_A}/zhangsan_A"
    assert link.link_metadata["position"] == "销售经理"
    assert the_session(store).context_link_id == link.id
    assert counts(store) == (1, 1, 1)


def test_signing_in_as_another_member_replaces_the_context(
    wecom_front: WeComFront, store: Store
) -> None:
    """张三 in subsidiary A, then 张三 in subsidiary B (same phone, so the same core user): the
    session's context follows the last WeCom login."""
    wecom_front.bind(wecom_front.login_as("zhangsan_A"))
    first_session = the_session(store)
    age_codes(store)
    bound = wecom_front.bind(wecom_front.login_as("zs_b", CORP_B))
    assert bound.status_code == 303, bound.text
    with store() as db:
        links = {link.provider_user_id: link for link in db.scalars(select(IdentityLink))}
    b_link = links[f"{CORP_B}/zs_b"]
    assert b_link.user_id == links[f"{CORP_A}/zhangsan_A"].user_id
    assert counts(store) == (1, 2, 1)
    session = the_session(store)  # renewed: the same sid, the new context
    assert (session.id, session.context_link_id) == (first_session.id, b_link.id)
    assert first_session.context_link_id == links[f"{CORP_A}/zhangsan_A"].id


def test_login_url_is_qr_in_a_browser_and_oauth_inside_wecom(wecom_front: WeComFront) -> None:
    qr = wecom_front.start(CORP_A)
    assert qr.headers["location"].startswith(f"{WECOM_BASE}/wwlogin/sso/login?")
    in_app = wecom_front.start(CORP_B, **{"user-agent": "Mozilla/5.0 wxwork/4.1.22 MicroMessenger"})
    location = in_app.headers["location"]
    assert location.startswith(f"{WECOM_BASE}/connect/oauth2/authorize?")
    assert location.endswith("#wechat_redirect")
    assert query_of(location.split("#")[0])["scope"] == "snsapi_base"  # silent, no consent
    assert query_of(location.split("#")[0])["redirect_uri"] == f"{ISSUER}/callback/wecom/{CORP_B}"
    assert state_of(qr) != state_of(in_app)


# --- corporations trusted for mobile numbers ----------------------------------------------------


@pytest.fixture
def trusting_front(
    wecom_settings: Settings, store: Store, sms: ConsoleSms, simulator: WeComSimulator
) -> Iterator[WeComFront]:
    """Subsidiary A trusted for mobiles, subsidiary B not."""
    connect_corp(store, simulator, CORP_A, trust_mobile=True)
    connect_corp(store, simulator, CORP_B)
    app = create_app(wecom_settings, store=store, sms=sms, wecom_http=TestClient(simulator.app))
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as browser:
        yield WeComFront(browser, sms, simulator)


def test_trusted_mobile_binds_a_new_person_without_sms(
    trusting_front: WeComFront, store: Store, sms: ConsoleSms
) -> None:
    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.client.get(trusting_front.pick(started, "lisi"))
    answer = trusting_front.consent(answer, "lisi")
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    assert sms.messages() == []
    link = the_link(store)
    with store() as db:
        user = db.get(User, link.user_id)
    assert (user.name, user.phone) == ("李四", LISI_PHONE)
    assert user.phone_verified_at is not None
    assert link.provider_user_id == f"{CORP_A}/lisi"
    created = events(store, "link.created")
    assert [e.detail["method"] for e in created] == ["trusted_mobile"]
    assert len(events(store, "user.created")) == 1
    sso = the_session(store)
    assert (sso.user_id, sso.context_link_id, sso.amr) == (user.id, link.id, ["wecom"])


def test_trusted_mobile_links_to_the_person_with_that_phone(
    trusting_front: WeComFront, store: Store, sms: ConsoleSms
) -> None:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.client.get(trusting_front.pick(started, "zhangsan_A"))
    answer = trusting_front.consent(answer, "zhangsan_A")
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    assert sms.messages() == []
    assert the_link(store).user_id == user.id
    assert counts(store) == (1, 1, 1)


def test_a_known_member_of_a_trusting_corporation_signs_in_silently_in_one_round(
    trusting_front: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    """Least privilege: the consent screen only for a member we do not know yet."""
    person = in_unit(store, users.create_user, "李四", LISI_PHONE)
    in_unit(store, users.link_wecom, person.id, CORP_A, "lisi")
    started = trusting_front.start(CORP_A, **IN_WECOM)
    assert query_of(started.headers["location"].split("#")[0])["scope"] == "snsapi_base"
    answer = trusting_front.client.get(trusting_front.pick(started, "lisi"))
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    assert simulator.calls["getuserdetail"] == 0
    assert the_session(store).user_id == person.id


def test_a_failed_getuserdetail_in_the_consented_round_binds_by_sms(
    trusting_front: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.client.get(trusting_front.pick(started, "lisi"))
    simulator.fail_next("getuserdetail", 48002, "api forbidden")
    answer = trusting_front.consent(answer, "lisi")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
    assert simulator.calls["getuserdetail"] == 1
    assert counts(store) == (0, 0, 0)
    bound = trusting_front.bind(answer, phone=LISI_PHONE)
    assert bound.status_code == 303, bound.text
    assert [e.detail["method"] for e in events(store, "link.created")] == ["sms"]


def test_the_consented_round_is_asked_once(
    trusting_front: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    """A member WeCom has no mobile for comes back from the second round with none: binding by
    SMS, not a third trip."""
    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.consent(
        trusting_front.client.get(trusting_front.pick(started, "wangfang")), "wangfang"
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")


def test_without_a_trusted_mobile_the_person_binds_by_sms(
    trusting_front: WeComFront, store: Store
) -> None:
    cases = [  # corporation, member, user agent, phone, asked again with consent
        (CORP_A, "wangfang", IN_WECOM, "+8613100131001", True),  # WeCom knows no mobile for her
        (CORP_A, "lisi", {}, "+8613100131002", False),  # QR login: no consented round, no mobile
        (CORP_B, "zs_b", IN_WECOM, "+8613100131003", False),  # a corporation not trusted for them
    ]
    for number, (corp_id, userid, headers, phone, consented) in enumerate(cases, start=1):
        started = trusting_front.start(corp_id, **headers)
        answer = trusting_front.client.get(trusting_front.pick(started, userid))
        if consented:
            answer = trusting_front.consent(answer, userid)
        assert answer.status_code == 303, userid
        assert answer.headers["location"].startswith("/bind?"), userid
        assert counts(store)[1] == number - 1, userid
        bound = trusting_front.bind(answer, phone=phone)
        assert bound.status_code == 303, bound.text
        assert counts(store)[:2] == (number, number), userid
    assert [e.detail["method"] for e in events(store, "link.created")] == ["sms"] * 3


def test_a_trusted_mobile_does_not_take_over_a_person_linked_in_another_corporation(
    trusting_front: WeComFront, store: Store, sms: ConsoleSms, simulator: WeComSimulator
) -> None:
    """Finding 12 of #11: subsidiary A's WeCom admin sets a new member's mobile to the number of
    a person known through subsidiary B. The login is not the person's: /bind asks for the SMS
    code, which only the phone's holder has, and nothing is linked before it is proven."""
    person = in_unit(store, users.create_user, "张三", PHONE)
    in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    simulator.add_member(
        CORP_A, SimMember("mallory", "张三", [2], "销售代表", mobile="13800138000")
    )
    before = last_event(store)

    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.client.get(trusting_front.pick(started, "mallory"))
    answer = trusting_front.consent(answer, "mallory")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/bind?")
    assert counts(store) == (1, 1, 0)  # no session, no link for the member
    trail = events(store, after=before)
    assert [(e.event, e.outcome) for e in trail] == [("link.trusted_mobile_refused", "failure")]
    assert trail[0].user_id == person.id
    assert trail[0].detail["reason"] == "active_link_elsewhere"
    assert trail[0].detail["linked_elsewhere"] == [f"{CORP_B}/zs_b"]
    assert trail[0].detail["next"] == "sms"
    assert sms.messages() == []
    page = trusting_front.client.get(answer.headers["location"])
    assert page.status_code == 200 and 'name="phone"' in page.text

    token = query_of(answer.headers["location"])["binding"]
    csrf = trusting_front.csrf(answer.headers["location"])
    form = {"csrf_token": csrf, "binding": token, "phone": PHONE}
    sent = trusting_front.client.post("/bind", data=form)
    assert sent.status_code == 303, sent.text
    right = trusting_front.last_code()
    guessed = trusting_front.client.post(
        "/bind", data={**form, "code": f"{(int(right) + 1) % 10**6:06d}"}
    )
    assert query_of(guessed.headers["location"])["step"] == "code"  # the code step again
    assert 'name="code"' in trusting_front.client.get(guessed.headers["location"]).text
    assert counts(store) == (1, 1, 0)

    bound = trusting_front.client.post("/bind", data={**form, "code": right})
    assert bound.status_code == 303, bound.text
    with store() as db:
        link = db.scalars(
            select(IdentityLink).where(IdentityLink.provider_user_id == f"{CORP_A}/mallory")
        ).one()
    assert link.user_id == person.id
    assert [e.detail["method"] for e in events(store, "link.created", after=before)] == ["sms"]
    assert the_session(store).user_id == person.id


def test_a_trusted_mobile_binds_a_person_whose_links_elsewhere_are_disabled(
    trusting_front: WeComFront, store: Store, sms: ConsoleSms
) -> None:
    """Someone who left subsidiary B is vouched for by A's directory alone, as before."""
    person = in_unit(store, users.create_user, "张三", PHONE)
    left = in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    with store() as db:
        db.execute(update(IdentityLink).where(IdentityLink.id == left.id).values(status="disabled"))
        db.commit()
    before = last_event(store)
    started = trusting_front.start(CORP_A, **IN_WECOM)
    answer = trusting_front.client.get(trusting_front.pick(started, "zhangsan_A"))
    answer = trusting_front.consent(answer, "zhangsan_A")
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    assert sms.messages() == []
    assert counts(store) == (1, 2, 1)
    assert the_session(store).user_id == person.id
    assert events(store, "link.trusted_mobile_refused") == []
    created = events(store, "link.created", after=before)
    assert [e.detail["method"] for e in created] == ["trusted_mobile"]


# --- people WeCom does not vouch for ------------------------------------------------------------


def test_non_member_gets_a_clear_page(wecom_front: WeComFront, store: Store) -> None:
    answer = wecom_front.login_as("__outsider__")
    assert answer.status_code == 403
    assert "not a member of this company" in answer.text
    assert counts(store) == (0, 0, 0)
    detail = only_failure(store)
    assert (detail["reason"], detail["provider"], detail["connector_id"]) == (
        "upstream.not_a_member",
        "wecom",
        CORP_A,
    )


def test_declining_at_wecom_is_a_clear_page(wecom_front: WeComFront, store: Store) -> None:
    answer = wecom_front.login_as("__decline__")
    assert answer.status_code == 400
    assert "cancelled" in answer.text
    assert counts(store) == (0, 0, 0)
    assert only_failure(store)["reason"] == "wecom.declined"
    assert wecom_front.simulator.calls["getuserinfo"] == 0


def test_a_member_of_a_corporation_not_connected_here_gets_a_clear_page(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    """企业互联/上下游: auth/getuserinfo answers `CorpId/userid` for a member of a downstream
    corporation; that corporation is not connected here."""
    simulator.add_member(CORP_A, SimMember("wwdownstream/xiaoming", "小明", [2]))
    started = wecom_front.start(CORP_A)
    code = simulator.issue_code(CORP_A, "wwdownstream/xiaoming")
    answer = callback(wecom_front, CORP_A, code=code, state=state_of(started))
    assert answer.status_code == 403
    assert "企业互联/上下游" in answer.text and "not connected to group sign-in" in answer.text
    assert counts(store) == (0, 0, 0)
    assert only_failure(store)["reason"] == "upstream.member_elsewhere"
    assert simulator.calls["user_get"] == 0


def test_a_member_of_a_connected_corporation_is_their_own_link(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    """The same person through subsidiary A's shared app (as `CORP_B/zs_b`) and through B's own
    app is one link: B's, looked up in B's directory with B's app."""
    person = in_unit(store, users.create_user, "张三", PHONE)
    link = in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    simulator.add_member(CORP_A, SimMember(f"{CORP_B}/zs_b", "张三", [2]))
    started = wecom_front.start(CORP_A)
    code = simulator.issue_code(CORP_A, f"{CORP_B}/zs_b")
    answer = callback(wecom_front, CORP_A, code=code, state=state_of(started))
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    assert counts(store) == (1, 1, 1)
    session = the_session(store)
    assert (session.user_id, session.context_link_id) == (person.id, link.id)
    assert the_link(store).link_metadata["corpid"] == CORP_B
    assert simulator.calls["user_get"] == 1


def test_a_member_a_connected_corporation_does_not_have_is_not_a_member(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    simulator.add_member(CORP_A, SimMember(f"{CORP_B}/nobody", "某人", [2]))
    started = wecom_front.start(CORP_A)
    code = simulator.issue_code(CORP_A, f"{CORP_B}/nobody")
    answer = callback(wecom_front, CORP_A, code=code, state=state_of(started))
    assert answer.status_code == 403 and "not a member" in answer.text
    assert counts(store) == (0, 0, 0)
    assert only_failure(store)["reason"] == "upstream.not_a_member"


@pytest.mark.parametrize("disable", ["link", "user"])
def test_a_disabled_link_or_user_cannot_sign_in(
    wecom_front: WeComFront, store: Store, disable: str
) -> None:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    in_unit(store, users.link_wecom, user.id, CORP_A, "zhangsan_A", {"position": "as linked"})
    with store() as db:
        if disable == "link":
            db.execute(update(IdentityLink).values(status="disabled"))
        else:
            db.execute(update(User).values(status="disabled"))
        db.commit()
    mark = last_event(store)
    answer = wecom_front.login_as("zhangsan_A")
    assert answer.status_code == 403
    assert "disabled" in answer.text
    assert counts(store) == (1, 1, 0)
    assert only_failure(store, after=mark)["reason"] == "upstream.disabled"
    assert the_link(store).link_metadata == {"position": "as linked"}  # not refreshed


# --- bad, used, expired or foreign callbacks ----------------------------------------------------


def test_replayed_callback_is_refused(wecom_front: WeComFront, store: Store) -> None:
    callback_url = wecom_front.pick(wecom_front.start(), "zhangsan_A")
    assert wecom_front.client.get(callback_url).status_code == 303
    replay = wecom_front.client.get(callback_url)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert only_failure(store)["reason"] == "upstream.bad_state"
    assert wecom_front.simulator.calls["getuserinfo"] == 1  # the replay never reached WeCom


def test_a_used_code_with_a_fresh_state_is_wecoms_40029(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    code = simulator.issue_code(CORP_A, "zhangsan_A")
    first = callback(wecom_front, CORP_A, code=code, state=state_of(wecom_front.start()))
    assert first.status_code == 303 and first.headers["location"].startswith("/bind?")
    assert events(store) == []

    again = callback(wecom_front, CORP_A, code=code, state=state_of(wecom_front.start()))
    assert again.status_code == 400  # a rejected callback, not an upstream failure
    assert "expired or was already used (error 40029)" in again.text
    detail = only_failure(store)
    assert (detail["reason"], detail["code"]) == ("wecom.invalid_code", 40029)
    assert code not in str(detail)
    assert counts(store) == (0, 0, 0)


def test_an_expired_state_is_refused(
    wecom_front: WeComFront, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, upstream, rows)
    callback_url = wecom_front.pick(wecom_front.start(), "zhangsan_A")
    clock.advance(minutes=11)
    answer = wecom_front.client.get(callback_url)
    assert answer.status_code == 400
    assert only_failure(store)["reason"] == "upstream.bad_state"
    assert wecom_front.simulator.calls["getuserinfo"] == 0
    assert counts(store) == (0, 0, 0)


def test_a_state_from_another_browser_is_refused_and_stays_usable(
    wecom_front: WeComFront, store: Store
) -> None:
    callback_url = wecom_front.pick(wecom_front.start(), "zhangsan_A")
    with TestClient(wecom_front.client.app, base_url=ISSUER, follow_redirects=False) as thief:
        stolen = thief.get(callback_url)
    assert stolen.status_code == 400
    assert only_failure(store)["reason"] == "upstream.bad_state"
    assert counts(store) == (0, 0, 0)
    # the rightful browser's login still works: the foreign attempt did not spend the state
    assert wecom_front.client.get(callback_url).headers["location"].startswith("/bind?")


def test_a_callback_without_state_is_refused(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    wecom_front.start()
    answer = callback(wecom_front, CORP_A, code=simulator.issue_code(CORP_A, "zhangsan_A"))
    assert answer.status_code == 400
    assert only_failure(store)["reason"] == "upstream.bad_state"
    assert simulator.calls["getuserinfo"] == 0


def test_a_state_for_another_corporation_is_refused(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    state = state_of(wecom_front.start(CORP_A))
    answer = callback(wecom_front, CORP_B, code=simulator.issue_code(CORP_B, "zs_b"), state=state)
    assert answer.status_code == 400
    detail = only_failure(store)
    assert (detail["reason"], detail["connector_id"]) == ("upstream.bad_state", CORP_B)
    assert simulator.calls["getuserinfo"] == 0
    assert counts(store) == (0, 0, 0)


def test_unknown_disabled_or_malformed_corporations_are_404_pages(
    wecom_front: WeComFront, store: Store
) -> None:
    with store() as db:
        db.execute(update(WeComCorp).where(WeComCorp.corp_id == CORP_B).values(enabled=False))
        db.commit()
    for path in [
        "/login/wecom/wwnosuchcorp0009",
        f"/login/wecom/{CORP_B}",
        "/login/wecom/not%20a%20corp",
        "/login/dingtalk/anything",
        "/callback/wecom/wwnosuchcorp0009?code=abc&state=def",
        f"/callback/wecom/{CORP_B}?code=abc&state=def",
        "/callback/dingtalk/anything?code=abc&state=def",
    ]:
        page = wecom_front.client.get(path)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert "not connected" in page.text, path
    assert counts(store) == (0, 0, 0)


def test_an_oversized_callback_is_refused(wecom_front: WeComFront, store: Store) -> None:
    answer = callback(wecom_front, CORP_A, code="x" * 5000, state=state_of(wecom_front.start()))
    assert answer.status_code == 413
    assert wecom_front.simulator.calls["getuserinfo"] == 0


def test_a_code_over_512_bytes_never_reaches_wecom(wecom_front: WeComFront, store: Store) -> None:
    answer = callback(wecom_front, CORP_A, code="x" * 600, state=state_of(wecom_front.start()))
    assert answer.status_code == 400
    assert only_failure(store)["reason"] == "upstream.callback_rejected"
    assert wecom_front.simulator.calls["getuserinfo"] == 0


def test_a_flow_of_another_browser_cannot_be_carried_to_wecom(
    wecom_front: WeComFront, store: Store
) -> None:
    rp = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    params, _ = wecom_front.code_params(rp.client.client_id, RP_REDIRECT)
    flow = query_of(wecom_front.authorize(**params).headers["location"])["flow"]
    with TestClient(wecom_front.client.app, base_url=ISSUER, follow_redirects=False) as other:
        refused = other.get(f"/login/wecom/{CORP_A}", params={"flow": flow})
    assert refused.status_code == 400
    assert "expired" in refused.text
    assert wecom_front.start(CORP_A, flow="no-such-flow").status_code == 400


# --- WeCom errors -------------------------------------------------------------------------------

#: (api, errcode, what the page says, the audited reason): every class of REASONS in
#: iam/federation/wecom/client.py.
WECOM_ERRORS = [
    ("gettoken", 40001, "misconfigured", "wecom.misconfigured"),
    ("gettoken", 40013, "misconfigured", "wecom.misconfigured"),
    ("getuserinfo", 45009, "WeCom is busy", "wecom.busy"),
    ("getuserinfo", 45033, "WeCom is busy", "wecom.busy"),
    ("getuserinfo", -1, "WeCom is busy", "wecom.busy"),
    ("getuserinfo", 60020, "does not accept calls from this server", "wecom.ip_not_trusted"),
    ("getuserinfo", 50001, "not a trusted domain", "wecom.redirect_untrusted"),
    ("user_get", 60011, "may not read your member details", "wecom.no_privilege"),
    ("user_get", 50002, "may not read your member details", "wecom.no_privilege"),
    ("user_get", 60111, "does not know this member", "wecom.unknown_member"),
    ("department_get", 45009, "WeCom is busy", "wecom.busy"),
    ("getuserinfo", 99999, "WeCom answered with an error", "wecom.error"),
]
#: What the client remembers for a while (a refused gettoken, a corporation WeCom blocked), so
#: the next login does not ask WeCom at once.
REMEMBERED = {40001, 40013, 45009, 45033}


@pytest.mark.parametrize(
    ("api", "errcode", "message", "reason"),
    WECOM_ERRORS,
    ids=[f"{api}-{errcode}" for api, errcode, _, _ in WECOM_ERRORS],
)
def test_each_wecom_error_class_is_a_clear_page_and_one_audit_event(
    wecom_front: WeComFront,
    simulator: WeComSimulator,
    store: Store,
    api: str,
    errcode: int,
    message: str,
    reason: str,
) -> None:
    # WeCom's -1 (system busy) is asked once more: it must come twice to fail a login
    simulator.fail_next(
        api, errcode, "injected, from ip: 10.0.0.1", times=2 if errcode == -1 else 1
    )
    answer = wecom_front.login_as("zhangsan_A")
    assert answer.status_code == 502
    assert message in answer.text
    assert f"error {errcode})" in answer.text
    (failed,) = events(store)
    assert failed.event == "upstream.login_failed"
    assert (failed.detail["code"], failed.detail["reason"]) == (errcode, reason)
    assert counts(store) == (0, 0, 0)
    if errcode not in REMEMBERED:  # and with WeCom well again, the same browser signs in
        assert wecom_front.login_as("zhangsan_A").headers["location"].startswith("/bind?")


def test_wecom_http_failures_are_an_unavailable_page(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    for api, path in [
        ("gettoken", "gettoken"),
        ("getuserinfo", "auth/getuserinfo"),
        ("user_get", "user/get"),
        ("department_get", "department/get"),
    ]:
        mark = last_event(store)
        simulator.fail_http(api, 502)
        answer = wecom_front.login_as("zhangsan_A")
        assert answer.status_code == 502, api
        assert "WeCom could not be reached" in answer.text, api
        detail = only_failure(store, after=mark)
        assert (detail["reason"], detail["code"]) == ("wecom.unavailable", None), api
        assert f"WeCom {path} answered HTTP 502" in detail["detail"], detail
        assert counts(store) == (0, 0, 0), api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_simulator(simulator: WeComSimulator) -> Iterator[str]:
    """The simulator's API on a real socket (TestClient ignores timeouts): its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            simulator.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=3,  # lets a delayed answer finish, not be cancelled
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the simulator did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # not about the database
def test_a_wecom_that_does_not_answer_in_time_is_a_timeout_page(
    live_simulator: str,
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
) -> None:
    connect_corp(store, simulator, CORP_A)
    settings = replace(wecom_settings, wecom_api_base=live_simulator)
    with httpx.Client(timeout=httpx.Timeout(0.5, connect=0.5), follow_redirects=False) as http:
        app = create_app(settings, store=store, sms=sms, wecom_http=http)
        with TestClient(app, base_url=ISSUER, follow_redirects=False) as browser:
            front = WeComFront(browser, sms, simulator)
            flow, _ = crm_flow(front, store)
            mark = last_event(store)
            callback_url = front.pick(front.start(CORP_A, flow), "zhangsan_A")
            simulator.delay("getuserinfo", 1.5)  # three times the read timeout
            answer = front.client.get(callback_url)
            simulator.delay("getuserinfo", 0)
    assert answer.status_code == 502
    assert "did not answer in time" in answer.text  # not WeCom's (late) answer
    assert back_link(answer) == f"/login?flow={flow}"  # the same sign-in, for the same app
    detail = only_failure(store, after=mark)
    assert detail["reason"] == "wecom.timeout"
    assert counts(store) == (0, 0, 0)


# --- the access token cache ---------------------------------------------------------------------


def test_one_access_token_per_corporation_across_many_logins(
    wecom_front: WeComFront, simulator: WeComSimulator, store: Store
) -> None:
    for index in range(2):
        simulator.add_member(CORP_A, SimMember(f"extra_a{index}", f"甲{index}", [2]))
        simulator.add_member(CORP_B, SimMember(f"extra_b{index}", f"乙{index}", [3]))
    logins = [
        (CORP_A, "zhangsan_A"),
        (CORP_B, "zs_b"),
        (CORP_A, "lisi"),
        (CORP_B, "chenqi"),
        (CORP_A, "wangfang"),
        (CORP_B, "zhouba"),
        (CORP_A, "extra_a0"),
        (CORP_B, "extra_b0"),
        (CORP_A, "extra_a1"),
        (CORP_B, "extra_b1"),
    ]
    for corp_id, userid in logins:
        answer = wecom_front.login_as(userid, corp_id)
        assert answer.headers["location"].startswith("/bind?"), (corp_id, userid)
    assert simulator.calls["getuserinfo"] == 10
    assert simulator.calls["gettoken"] == 2

    simulator.expire_tokens()  # WeCom drops its tokens early: 42001, a new token, once more
    answer = wecom_front.login_as("lisi")
    assert answer.headers["location"].startswith("/bind?"), answer.text
    assert simulator.calls["gettoken"] == 3
    assert events(store) == []


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    with flushed_redis(10) as client:  # test_tokens.py has the default one
        yield client


def test_instances_share_the_access_token_through_redis(
    shared_redis: redis.Redis,
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
) -> None:
    connect_corp(store, simulator, CORP_A)
    browsers = []
    for _instance in range(2):
        app = create_app(
            wecom_settings,
            store=store,
            sms=sms,
            wecom_http=TestClient(simulator.app),
            wecom_cache=RedisTokenCache(shared_redis),
        )
        browsers.append(TestClient(app, base_url=ISSUER, follow_redirects=False))
    with browsers[0] as first, browsers[1] as second:
        for browser, userid in [(first, "zhangsan_A"), (second, "lisi"), (first, "wangfang")]:
            answer = WeComFront(browser, sms, simulator).login_as(userid)
            assert answer.headers["location"].startswith("/bind?"), answer.text
    assert simulator.calls["getuserinfo"] == 3
    assert simulator.calls["gettoken"] == 1
    assert shared_redis.keys("iam:wecom:token:*")


# --- the login page and a whole authorization ---------------------------------------------------


def test_login_page_offers_one_wecom_button_per_enabled_corporation(
    wecom_front: WeComFront, store: Store
) -> None:
    page = wecom_front.client.get("/login")
    assert f'href="/login/wecom/{CORP_A}"' in page.text
    assert f'href="/login/wecom/{CORP_B}"' in page.text
    assert "WeCom · 子公司A" in page.text and "WeCom · 子公司B" in page.text
    assert "企业微信 · 子公司A" in wecom_front.client.get("/login?lang=zh-CN").text

    rp = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    params, _ = wecom_front.code_params(rp.client.client_id, RP_REDIRECT)
    flow = query_of(wecom_front.authorize(**params).headers["location"])["flow"]
    with store() as db:
        db.execute(update(WeComCorp).where(WeComCorp.corp_id == CORP_B).values(enabled=False))
        db.commit()
    page = wecom_front.client.get("/login", params={"flow": flow, "lang": "en"})
    assert f'href="/login/wecom/{CORP_A}?flow={flow}"' in page.text
    assert f"/login/wecom/{CORP_B}" not in page.text


def test_a_whole_authorization_through_wecom_login_and_binding(
    wecom_front: WeComFront, store: Store
) -> None:
    rp = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    params, verifier = wecom_front.code_params(rp.client.client_id, RP_REDIRECT)
    to_login = wecom_front.authorize(**params)
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login?")
    flow = query_of(to_login.headers["location"])["flow"]
    page = wecom_front.client.get(to_login.headers["location"])
    button = re.search(rf'href="(/login/wecom/{CORP_A}\?flow=[^"]+)"', page.text)
    assert button, page.text

    started = wecom_front.client.get(button.group(1))
    to_bind = wecom_front.client.get(wecom_front.pick(started, "zhangsan_A"))
    assert to_bind.headers["location"].startswith("/bind?")
    bound = wecom_front.bind(to_bind)
    assert bound.status_code == 303 and bound.headers["location"] == f"/flow/{flow}"
    to_rp = wecom_front.client.get(bound.headers["location"])
    assert to_rp.status_code == 302, to_rp.text
    assert to_rp.headers["location"].startswith(RP_REDIRECT + "?")
    query = query_of(to_rp.headers["location"])
    assert query["state"] == params["state"]

    tokens = wecom_front.exchange(query["code"], verifier, RP_REDIRECT, rp)
    assert tokens.status_code == 200, tokens.text
    claims = jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})
    link = the_link(store)
    assert claims["sub"] == link.user_id
    assert claims["amr"] == ["wecom"]
    assert claims["nonce"] == params["nonce"]
    assert claims["phone_number"] == PHONE

    # the next app asks again: the session answers at once, no WeCom trip
    params, _ = wecom_front.code_params(rp.client.client_id, RP_REDIRECT)
    silent = wecom_front.authorize(**params)
    assert silent.status_code == 302 and silent.headers["location"].startswith(RP_REDIRECT)


def test_a_known_member_goes_straight_back_to_the_authorization(
    wecom_front: WeComFront, store: Store
) -> None:
    wecom_front.bind(wecom_front.login_as("zhangsan_A"))
    wecom_front.client.cookies.clear()
    rp = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    params, _ = wecom_front.code_params(rp.client.client_id, RP_REDIRECT)
    flow = query_of(wecom_front.authorize(**params).headers["location"])["flow"]
    answer = wecom_front.login_as("zhangsan_A", flow=flow)
    assert answer.status_code == 303 and answer.headers["location"] == f"/flow/{flow}"
    to_rp = wecom_front.client.get(answer.headers["location"])
    assert to_rp.status_code == 302 and to_rp.headers["location"].startswith(RP_REDIRECT)


# --- quota safety, through HTTP (issue #14 §3) ---------------------------------------------------


def test_a_wrong_secret_costs_one_gettoken_for_many_logins(
    wecom_front: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    """A refused gettoken is remembered for a while: twenty people meeting a wrong secret are
    twenty clear pages, not twenty calls that count against the corporation's quota."""
    in_unit(
        store,
        corps.update_corp,
        SecretBox(TEST_SECRET),
        CORP_A,
        actor="cli",
        secret="a-secret-that-was-rotated-in-wecom-0000000",
    )
    for _ in range(20):
        answer = wecom_front.login_as("zhangsan_A")
        assert answer.status_code == 502 and "40001" in answer.text
    assert simulator.calls["gettoken"] == 1
    assert simulator.calls["getuserinfo"] == 0
    assert counts(store) == (0, 0, 0)


def test_wecom_busy_is_asked_once_more_and_the_login_goes_on(
    wecom_front: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    simulator.fail_next("user_get", -1, "system busy")
    answer = wecom_front.login_as("zhangsan_A")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
    assert simulator.calls["user_get"] == 2


# --- the way back after an error (issue #16 §1) -------------------------------------------------


def back_link(page: Any) -> str:
    """Where the error page's way back ("Back to sign-in") goes."""
    found = re.search(r'<a id="back" href="([^"]+)">', page.text)
    assert found, page.text
    return found.group(1).replace("&amp;", "&")


def crm_flow(front: WeComFront, store: Store) -> tuple[str, dict[str, str]]:
    """An app's authorization request waiting at the login page: (its flow, its parameters)."""
    rp = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    params, _ = front.code_params(rp.client.client_id, RP_REDIRECT)
    return query_of(front.authorize(**params).headers["location"])["flow"], params


def _declined(front: WeComFront, store: Store, flow: str) -> Any:
    return front.login_as("__decline__", flow=flow)


def _not_a_member(front: WeComFront, store: Store, flow: str) -> Any:
    return front.login_as("__outsider__", flow=flow)


def _wecom_down(front: WeComFront, store: Store, flow: str) -> Any:
    front.simulator.fail_http("getuserinfo", 502)
    return front.login_as("zhangsan_A", flow=flow)


def _wecom_busy(front: WeComFront, store: Store, flow: str) -> Any:
    front.simulator.fail_next("getuserinfo", 45009)
    return front.login_as("zhangsan_A", flow=flow)


def _no_privilege(front: WeComFront, store: Store, flow: str) -> Any:
    front.simulator.fail_next("user_get", 60011)
    return front.login_as("zhangsan_A", flow=flow)


def _disabled(front: WeComFront, store: Store, flow: str) -> Any:
    user = in_unit(store, users.create_user, "张三", PHONE)
    in_unit(store, users.link_wecom, user.id, CORP_A, "zhangsan_A")
    in_unit(store, users.set_user_status, user.id, False, actor="test")
    return front.login_as("zhangsan_A", flow=flow)


def _replayed(front: WeComFront, store: Store, flow: str) -> Any:
    callback_url = front.pick(front.start(CORP_A, flow), "__decline__")
    front.client.get(callback_url)
    return front.client.get(callback_url)


#: A WeCom error of each kind, made during a sign-in (for `flow`, or none): (how, status, says).
ERROR_KINDS = {
    "declined": (_declined, 400, "cancelled"),
    "not_a_member": (_not_a_member, 403, "not a member"),
    "wecom_down": (_wecom_down, 502, "could not be reached"),
    "wecom_busy": (_wecom_busy, 502, "WeCom is busy"),
    "no_privilege": (_no_privilege, 502, "may not read your member details"),
    "disabled": (_disabled, 403, "disabled"),
    "replayed_state": (_replayed, 400, "already used"),
}


@pytest.mark.parametrize("kind", list(ERROR_KINDS))
def test_an_error_leads_back_to_the_same_sign_in_for_the_same_app(
    wecom_front: WeComFront, store: Store, kind: str
) -> None:
    make_error, status, says = ERROR_KINDS[kind]
    flow, params = crm_flow(wecom_front, store)
    page = make_error(wecom_front, store, flow)
    assert page.status_code == status, page.text
    assert says in page.text
    assert back_link(page) == f"/login?flow={flow}"
    assert "Back to sign-in for CRM" in page.text

    # and signing in there goes on to the app, with the request it made
    again = wecom_front.client.get(back_link(page))
    assert again.status_code == 200 and "CRM" in again.text
    in_unit(store, users.create_user, "李四", LISI_PHONE)
    signed_in = wecom_front.login(LISI_PHONE, flow)
    assert signed_in.headers["location"] == f"/flow/{flow}", signed_in.text
    to_app = wecom_front.client.get(signed_in.headers["location"])
    assert to_app.status_code == 302 and to_app.headers["location"].startswith(RP_REDIRECT)
    assert query_of(to_app.headers["location"])["state"] == params["state"]


@pytest.mark.parametrize("kind", list(ERROR_KINDS))
def test_an_error_without_an_app_leads_back_to_the_login_page(
    wecom_front: WeComFront, store: Store, kind: str
) -> None:
    make_error, status, says = ERROR_KINDS[kind]
    page = make_error(wecom_front, store, "")
    assert page.status_code == status and says in page.text
    assert back_link(page) == "/login"
    assert ">Back to sign-in</a>" in page.text


def test_a_foreign_state_or_an_ended_request_leads_back_to_the_login_page(
    wecom_front: WeComFront, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow, _ = crm_flow(wecom_front, store)
    with TestClient(wecom_front.client.app, base_url=ISSUER, follow_redirects=False) as other:
        elsewhere = WeComFront(other, wecom_front.sms, wecom_front.simulator)
        foreign = elsewhere.pick(elsewhere.start(CORP_A), "zhangsan_A")
    refused = wecom_front.client.get(foreign)  # a state this browser was never given
    assert refused.status_code == 400 and back_link(refused) == "/login"

    callback_url = wecom_front.pick(wecom_front.start(CORP_A, flow), "__decline__")
    clock = Clock().install(monkeypatch, upstream, rows)
    clock.advance(minutes=31)  # the app's request ends, and the state with it
    ended = wecom_front.client.get(callback_url)
    assert ended.status_code == 400 and back_link(ended) == "/login"


def test_a_person_who_asked_to_link_is_led_back_to_the_selector(
    wecom_front: WeComFront, store: Store
) -> None:
    flow, _ = crm_flow(wecom_front, store)
    in_unit(store, users.create_user, "李四", LISI_PHONE)
    assert wecom_front.login(LISI_PHONE, flow).status_code == 303
    started = wecom_front.client.get(f"/login/wecom/{CORP_A}", params={"flow": flow, "link": "1"})
    page = wecom_front.client.get(wecom_front.pick(started, "__decline__"))
    assert page.status_code == 400
    assert back_link(page) == f"/select-identity?flow={flow}"


def test_an_unknown_corporation_at_the_start_leads_back_to_the_same_sign_in(
    wecom_front: WeComFront, store: Store
) -> None:
    flow, _ = crm_flow(wecom_front, store)
    page = wecom_front.start("wwnosuchcorp", flow)
    assert page.status_code == 404 and back_link(page) == f"/login?flow={flow}"


def test_the_error_page_in_chinese_names_the_app(wecom_front: WeComFront, store: Store) -> None:
    flow, _ = crm_flow(wecom_front, store)
    wecom_front.client.cookies.set("iam_lang", "zh-CN")
    page = wecom_front.login_as("__decline__", flow=flow)
    assert "企业微信登录已取消" in page.text, page.text
    assert "返回「CRM」的登录" in page.text
    assert back_link(page) == f"/login?flow={flow}"


@pytest.mark.parametrize(
    "back",
    ["https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "login"],
)
def test_the_way_back_is_only_ever_a_path_on_this_site(wecom_front: WeComFront, back: str) -> None:
    """An error page's link is a path here: anything else (never built from input, but a
    mistake must not become an open redirect) is the login page."""
    app = wecom_front.client.app

    async def page(request: Request) -> Response:
        return app.state.web.error_page(request, "error.not_found", 404, back=back, back_app="X")

    app.router.routes.insert(0, Route("/test-way-back", page))
    answer = wecom_front.client.get("/test-way-back")
    assert answer.status_code == 404
    assert '<a id="back" href="/login">' in answer.text
