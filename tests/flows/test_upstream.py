"""WeCom login over HTTP against the simulator: start, callback, link or bind, and every failure."""

from __future__ import annotations

import pytest
from conftest import CORP_A, CORP_B, PHONE, WECOM_BASE, WeComFront, query_of
from sqlalchemy import select

from iam.db.models import AuditEvent, IdentityLink, SsoSession, User
from iam.db.store import Store

pytestmark = pytest.mark.usefixtures("reused_signing_key")


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


def test_login_url_is_qr_in_a_browser_and_oauth_inside_wecom(wecom_front: WeComFront) -> None:
    qr = wecom_front.start(CORP_A)
    assert qr.headers["location"].startswith(f"{WECOM_BASE}/wwlogin/sso/login?")
    in_app = wecom_front.start(CORP_B, **{"user-agent": "Mozilla/5.0 wxwork/4.1.22 MicroMessenger"})
    location = in_app.headers["location"]
    assert location.startswith(f"{WECOM_BASE}/connect/oauth2/authorize?")
    assert location.endswith("#wechat_redirect")
    assert query_of(location.split("#")[0])["scope"] == "snsapi_privateinfo"


def test_replayed_callback_is_refused(wecom_front: WeComFront, store: Store) -> None:
    callback = wecom_front.pick(wecom_front.start(), "zhangsan_A")
    assert wecom_front.client.get(callback).status_code == 303
    replay = wecom_front.client.get(callback)
    assert replay.status_code == 400
    with store() as db:
        events = db.scalars(select(AuditEvent.event).where(AuditEvent.outcome == "failure")).all()
    assert "upstream.login_failed" in events


def test_non_member_gets_a_clear_page(wecom_front: WeComFront, store: Store) -> None:
    answer = wecom_front.login_as("__outsider__")
    assert answer.status_code == 403
    with store() as db:
        assert db.scalars(select(IdentityLink)).all() == []
        assert db.scalars(select(User)).all() == []
