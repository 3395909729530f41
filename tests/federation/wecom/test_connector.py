"""iam/federation/wecom/connector.py against the WeCom simulator, reached through the real
WeComClient (over the simulator's ASGI app) with an in-process token cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.testclient import TestClient

from iam.devtools.wecom_simulator import SimCorp, SimMember, WeComSimulator, demo_corps
from iam.federation.connector import (
    CallbackRejectedError,
    ConnectorError,
    Identity,
    LoginHints,
    MemberElsewhereError,
    NotAMemberError,
    UpstreamUnavailableError,
)
from iam.federation.wecom.client import WeComApiError, WeComClient
from iam.federation.wecom.connector import (
    MAX_DEPARTMENTS,
    WeComConfig,
    WeComConnector,
    subject_of,
)
from iam.federation.wecom.tokens import MemoryTokenCache

API_BASE = "https://qyapi.weixin.qq.com"
OAUTH = "https://open.weixin.qq.com/connect/oauth2/authorize"
QR = "https://login.work.weixin.qq.com/wwlogin/sso/login"
CALLBACK = "https://iam.example/callback/wecom/wwsubsidiarya0001"
STATE = "0123456789abcdefABCDEF"
CORP_A = "wwsubsidiarya0001"
CORP_B = "wwsubsidiaryb0002"
#: An app made before 2022-06-20: user/get still gives mobile, email and avatar.
CORP_OLD = "wwoldapp00000003"
IN_WECOM = LoginHints(user_agent="Mozilla/5.0 (iPhone) WXWork/4.1.22 MicroMessenger", lang="en")


def corps() -> list[SimCorp]:
    old = SimCorp(
        corp_id=CORP_OLD,
        name="老应用公司",
        agent_id=1000009,
        secret="old-app-secret",
        departments={i: f"部门{i}" for i in range(1, 16)},
        members=[
            SimMember(
                "Old_Timer",
                "老员工",
                list(range(1, 13)),
                "顾问",
                mobile="13700137001",
                email="old@old.example",
                avatar="https://wework.qpic.cn/old/0",
            )
        ],
        user_get_private_fields=True,
    )
    return [*demo_corps(), old]


@pytest.fixture
def simulator() -> WeComSimulator:
    return WeComSimulator(corps())


@pytest.fixture
def client(simulator: WeComSimulator) -> Iterator[WeComClient]:
    with TestClient(simulator.app, base_url=API_BASE) as http:
        yield WeComClient(API_BASE, http, MemoryTokenCache())


def config(corp_id: str = CORP_A, *, trust_mobile: bool = False, **changes: Any) -> WeComConfig:
    corp = next(c for c in corps() if c.corp_id == corp_id)
    values = {
        "corp_id": corp.corp_id,
        "name": corp.name,
        "agent_id": corp.agent_id,
        "secret": corp.secret,
        "trust_mobile": trust_mobile,
        "oauth_url": OAUTH,
        "qr_url": QR,
        **changes,
    }
    return WeComConfig(**values)


def connector(client: WeComClient, corp_id: str = CORP_A, **options: Any) -> WeComConnector:
    return config(corp_id, **options).open(client)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- login URLs ---------------------------------------------------------------------------------


def test_a_plain_browser_goes_to_the_qr_login(client: WeComClient) -> None:
    url = connector(client).login_url(CALLBACK, STATE, LoginHints(user_agent="Mozilla/5.0"))
    assert url.startswith(QR + "?")
    assert query(url) == {
        "login_type": "CorpApp",
        "appid": CORP_A,
        "agentid": "1000002",
        "redirect_uri": CALLBACK,
        "state": STATE,
        "lang": "en",
    }
    chinese = connector(client).login_url(CALLBACK, STATE, LoginHints(lang="zh-CN"))
    assert query(chinese)["lang"] == "zh"


def test_the_wecom_client_goes_to_silent_oauth_by_default(client: WeComClient) -> None:
    url = connector(client, CORP_B, trust_mobile=False).login_url(CALLBACK, STATE, IN_WECOM)
    assert url.startswith(OAUTH + "?") and url.endswith("#wechat_redirect")
    assert query(url.removesuffix("#wechat_redirect")) == {
        "appid": CORP_B,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": STATE,
        "agentid": "1000003",
    }


def test_privateinfo_only_when_asked_in_a_corporation_trusted_for_mobiles(
    client: WeComClient,
) -> None:
    """Its mobile binds a new member without an SMS code: that needs the consented scope, which
    the flows ask for in a second round only (the first is silent, even there)."""
    trusting = connector(client, CORP_B, trust_mobile=True)
    first = trusting.login_url(CALLBACK, STATE, IN_WECOM)
    assert query(first.removesuffix("#wechat_redirect"))["scope"] == "snsapi_base"
    asked = trusting.login_url(CALLBACK, STATE, replace(IN_WECOM, want_private_info=True))
    assert query(asked.removesuffix("#wechat_redirect"))["scope"] == "snsapi_privateinfo"


def _member_of(corp_id: str, phone: str | None = None) -> Identity:
    return Identity(
        "wecom", f"{corp_id}/m", f"{corp_id}/m", phone=phone, metadata={"corpid": corp_id}
    )


@pytest.mark.parametrize(
    ("trust_mobile", "hints", "member", "helps"),
    [
        (True, IN_WECOM, _member_of(CORP_B), True),
        (True, LoginHints("Mozilla/5.0 Chrome/120"), _member_of(CORP_B), False),  # QR: no scope
        (False, IN_WECOM, _member_of(CORP_B), False),  # the mobile would be of no use
        (True, IN_WECOM, _member_of(CORP_B, "+8613800138000"), False),  # already has one
        (True, IN_WECOM, _member_of(CORP_A), False),  # 上下游: no user_ticket for them
    ],
)
def test_a_consented_round_helps_only_where_it_gives_a_usable_mobile(
    client: WeComClient, trust_mobile: bool, hints: LoginHints, member: Identity, helps: bool
) -> None:
    opened = connector(client, CORP_B, trust_mobile=trust_mobile)
    assert opened.private_round_helps(member, hints) is helps


def test_no_privateinfo_for_a_corporation_not_trusted_for_mobiles(client: WeComClient) -> None:
    hints = replace(IN_WECOM, want_private_info=True)
    url = connector(client, CORP_B, trust_mobile=False).login_url(CALLBACK, STATE, hints)
    assert query(url.removesuffix("#wechat_redirect"))["scope"] == "snsapi_base"


def test_a_plain_browser_asking_for_private_info_still_goes_to_the_qr_login(
    client: WeComClient,
) -> None:
    hints = LoginHints(user_agent="Mozilla/5.0", want_private_info=True)
    url = connector(client, trust_mobile=True).login_url(CALLBACK, STATE, hints)
    assert url.startswith(QR + "?") and "scope" not in query(url)


def test_the_simulator_accepts_both_login_urls(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    pages = TestClient(simulator.app)
    for hints in (LoginHints(), IN_WECOM):
        url = connector(client).login_url(CALLBACK, STATE, hints).removesuffix("#wechat_redirect")
        page = pages.get(url)
        assert page.status_code == 200, page.text
        assert "张三 · zhangsan_A" in page.text


@pytest.mark.parametrize("state", ["", "a" * 129, "has-dash", "has space", "a/b"])
def test_a_state_wecom_would_refuse_is_refused(client: WeComClient, state: str) -> None:
    with pytest.raises(ValueError, match="128 letters and digits"):
        connector(client).login_url(CALLBACK, state, LoginHints())
    assert connector(client).login_url(CALLBACK, "a" * 128, LoginHints())


@pytest.mark.parametrize("state", ["状态", "abc²", "١٢٣"])
def test_a_non_ascii_state_is_refused(client: WeComClient, state: str) -> None:
    with pytest.raises(ValueError):
        connector(client).login_url(CALLBACK, state, LoginHints())


# --- callbacks ----------------------------------------------------------------------------------


def test_a_member_by_qr_login(simulator: WeComSimulator, client: WeComClient) -> None:
    code = simulator.issue_code(CORP_A, "ZHANGSAN_A")  # WeCom's pages ignore case
    identity = connector(client).handle_callback(CALLBACK, {"code": code, "state": STATE})
    assert identity.provider == "wecom"
    assert identity.subject == f"{CORP_A}/zhangsan_A"  # as WeCom spells it
    assert identity.subject_key == f"{CORP_A}/zhangsan_a"
    assert identity.display_name == "张三"
    assert (identity.phone, identity.email, identity.phone_trusted) == (None, None, False)
    assert dict(identity.metadata) == {
        "provider": "wecom",
        "corpid": CORP_A,
        "corp_name": "子公司A",
        "userid": "zhangsan_A",
        "name": "张三",
        "department": ["销售部"],
        "department_ids": [2],
        "position": "销售经理",
        "avatar": "",
    }
    assert simulator.calls["getuserdetail"] == 0  # no user_ticket without privateinfo


def test_a_member_inside_wecom_shares_mobile_and_email(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    identity = connector(client, trust_mobile=True).handle_callback(CALLBACK, {"code": code})
    assert identity.phone == "13800138000"
    assert identity.email == "zhangsan@subsidiary-a.example"
    assert identity.phone_trusted is True
    assert simulator.calls["getuserdetail"] == 1


def test_a_member_without_a_mobile(simulator: WeComSimulator, client: WeComClient) -> None:
    code = simulator.issue_code(CORP_A, "wangfang", with_ticket=True)
    identity = connector(client, trust_mobile=True).handle_callback(CALLBACK, {"code": code})
    assert identity.phone is None
    assert identity.metadata["department"] == ["售后服务部"]


def test_no_private_info_is_kept_in_the_link_metadata(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    identity = connector(client, trust_mobile=True).handle_callback(CALLBACK, {"code": code})
    assert identity.phone == "13800138000"
    assert not {"mobile", "email", "status", "gender", "biz_mail", "address"} & set(
        identity.metadata
    )


def test_a_ticket_is_not_redeemed_in_a_corporation_not_trusted_for_mobiles(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    identity = connector(client, trust_mobile=False).handle_callback(CALLBACK, {"code": code})
    assert (identity.phone, identity.email) == (None, None)
    assert simulator.calls["getuserdetail"] == 0


def test_a_getuserdetail_error_means_no_mobile_not_a_failed_login(
    simulator: WeComSimulator, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.fail_next("getuserdetail", 60011, "no privilege to access/modify contact/party/agent")
    code = simulator.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    identity = connector(client, trust_mobile=True).handle_callback(CALLBACK, {"code": code})
    assert identity.subject == f"{CORP_A}/zhangsan_A"
    assert (identity.phone, identity.email) == (None, None)
    assert simulator.calls["getuserdetail"] == 1
    assert "going on without the mobile" in caplog.text
    assert any(
        r.levelname == "WARNING" and "without the mobile" in r.getMessage() for r in caplog.records
    )


def test_an_unreachable_getuserdetail_means_no_mobile_not_a_failed_login(
    simulator: WeComSimulator, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.fail_http("getuserdetail", 502)
    code = simulator.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    identity = connector(client, trust_mobile=True).handle_callback(CALLBACK, {"code": code})
    assert identity.subject == f"{CORP_A}/zhangsan_A"
    assert identity.phone is None
    assert "going on without the mobile" in caplog.text


def test_an_old_app_reads_private_fields_from_user_get(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_OLD, "old_timer")
    identity = connector(client, CORP_OLD).handle_callback(CALLBACK, {"code": code})
    assert identity.subject == f"{CORP_OLD}/Old_Timer"
    assert (identity.phone, identity.email) == ("13700137001", "old@old.example")
    assert identity.metadata["avatar"] == "https://wework.qpic.cn/old/0"


def test_department_names_are_read_for_ten_departments_at_most(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_OLD, "Old_Timer")
    identity = connector(client, CORP_OLD).handle_callback(CALLBACK, {"code": code})
    assert identity.metadata["department_ids"] == list(range(1, MAX_DEPARTMENTS + 1))
    assert identity.metadata["department"] == [f"部门{i}" for i in range(1, MAX_DEPARTMENTS + 1)]
    assert simulator.calls["department_get"] == MAX_DEPARTMENTS


def test_department_names_are_read_once_until_a_department_event_forgets_them(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    for _ in range(3):  # three sign-ins of one member
        code = simulator.issue_code(CORP_OLD, "Old_Timer")
        connector(client, CORP_OLD).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["department_get"] == MAX_DEPARTMENTS
    client.forget_departments(CORP_A)  # another corporation's event forgets nothing here
    code = simulator.issue_code(CORP_OLD, "Old_Timer")
    connector(client, CORP_OLD).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["department_get"] == MAX_DEPARTMENTS
    client.forget_departments(CORP_OLD)
    code = simulator.issue_code(CORP_OLD, "Old_Timer")
    connector(client, CORP_OLD).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["department_get"] == 2 * MAX_DEPARTMENTS


def test_a_member_the_directory_no_longer_has_is_looked_up_as_none(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    assert connector(client).look_up("lisi") is not None
    simulator.remove_member(CORP_A, "lisi")
    assert connector(client).look_up("lisi") is None


@pytest.mark.parametrize("status", [2, 5], ids=["disabled", "left"])
def test_a_disabled_or_departed_member_is_looked_up_as_none(
    simulator: WeComSimulator, client: WeComClient, status: int
) -> None:
    simulator.update_member(CORP_A, "lisi", status=status)
    assert connector(client).look_up("lisi") is None


def test_a_look_up_shows_the_member_as_the_directory_has_them_now(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    simulator.update_member(CORP_A, "lisi", position="区域总监")
    found = connector(client).look_up("LISI")
    assert found is not None and found.metadata["position"] == "区域总监"


def test_other_directory_errors_are_not_a_departure(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    simulator.fail_next("user_get", 45009)
    with pytest.raises(WeComApiError):
        connector(client).look_up("lisi")


@pytest.mark.parametrize("errcode", [60011, 60003])
def test_a_department_the_app_may_not_read_is_named_by_its_id(
    simulator: WeComSimulator, client: WeComClient, errcode: int
) -> None:
    simulator.fail_next("department_get", errcode)
    code = simulator.issue_code(CORP_A, "lisi")
    identity = connector(client).handle_callback(CALLBACK, {"code": code})
    assert identity.metadata["department"] == ["2"]


def test_other_department_errors_fail_the_login(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    simulator.fail_next("department_get", 45009)
    code = simulator.issue_code(CORP_A, "lisi")
    with pytest.raises(WeComApiError) as failed:
        connector(client).handle_callback(CALLBACK, {"code": code})
    assert (failed.value.code, failed.value.reason) == (45009, "wecom.busy")


@pytest.mark.parametrize("params", [{}, {"code": ""}, {"state": STATE}])
def test_no_code_means_the_person_declined(
    simulator: WeComSimulator, client: WeComClient, params: dict[str, str]
) -> None:
    with pytest.raises(CallbackRejectedError) as rejected:
        connector(client).handle_callback(CALLBACK, params)
    assert rejected.value.reason == "wecom.declined"
    assert sum(simulator.calls.values()) == 0


def test_a_code_longer_than_wecom_gives_is_rejected_unasked(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    with pytest.raises(CallbackRejectedError) as rejected:
        connector(client).handle_callback(CALLBACK, {"code": "c" * 513})
    assert rejected.value.reason == "upstream.callback_rejected"
    assert sum(simulator.calls.values()) == 0


def test_a_used_code_is_a_rejected_callback(simulator: WeComSimulator, client: WeComClient) -> None:
    code = simulator.issue_code(CORP_A, "lisi")
    connector(client).handle_callback(CALLBACK, {"code": code})
    with pytest.raises(CallbackRejectedError) as rejected:
        connector(client).handle_callback(CALLBACK, {"code": code})
    assert (rejected.value.reason, rejected.value.code) == ("wecom.invalid_code", 40029)
    assert code not in str(rejected.value)


def test_another_corporations_code_is_invalid_here(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_B, "zs_b")
    with pytest.raises(ConnectorError) as rejected:
        connector(client, CORP_A).handle_callback(CALLBACK, {"code": code})
    assert rejected.value.code == 40029


def test_someone_outside_the_corporation_is_not_a_member(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    code = simulator.issue_code(CORP_A, None)
    with pytest.raises(NotAMemberError):
        connector(client).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["user_get"] == 0


def test_a_member_of_a_downstream_corporation_is_not_a_member(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    simulator.add_member(CORP_A, SimMember("wwdownstream/xiaoming", "小明", [2]))
    code = simulator.issue_code(CORP_A, "wwdownstream/xiaoming")
    with pytest.raises(NotAMemberError):
        connector(client).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["user_get"] == 0


def test_an_answer_with_neither_userid_nor_openid_is_unusable() -> None:
    class Blank:
        def get_user_info(self, app: Any, code: str) -> dict[str, Any]:
            return {"errcode": 0, "errmsg": "ok"}

    blank = WeComConnector(config(), Blank())  # type: ignore[arg-type]
    with pytest.raises(UpstreamUnavailableError):
        blank.handle_callback(CALLBACK, {"code": "abc"})


@pytest.mark.parametrize(
    ("changes", "reason", "errcode"),
    [
        ({"secret": "not-the-secret"}, "wecom.misconfigured", 40001),
        ({"corp_id": "wwnotacorp"}, "wecom.misconfigured", 40013),
    ],
)
def test_a_misconfigured_corporation_fails_at_gettoken(
    simulator: WeComSimulator,
    client: WeComClient,
    changes: dict[str, str],
    reason: str,
    errcode: int,
) -> None:
    broken = WeComConnector(replace(config(), **changes), client)
    with pytest.raises(WeComApiError) as failed:
        broken.handle_callback(CALLBACK, {"code": simulator.issue_code(CORP_A, "lisi")})
    assert (failed.value.reason, failed.value.code) == (reason, errcode)
    assert "not-the-secret" not in str(failed.value)


# --- the access token ---------------------------------------------------------------------------


def test_one_token_per_corporation_and_a_new_one_when_wecom_drops_it(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    for corp_id, userid in [(CORP_A, "lisi"), (CORP_A, "wangfang"), (CORP_B, "chenqi")] * 2:
        code = simulator.issue_code(corp_id, userid)
        assert connector(client, corp_id).handle_callback(CALLBACK, {"code": code})
    assert simulator.calls["gettoken"] == 2
    simulator.expire_tokens()
    code = simulator.issue_code(CORP_A, "lisi")
    identity = connector(client).handle_callback(CALLBACK, {"code": code})
    assert identity.subject == f"{CORP_A}/lisi"
    assert simulator.calls["gettoken"] == 3


def test_a_token_wecom_calls_invalid_credential_is_replaced(
    simulator: WeComSimulator, client: WeComClient
) -> None:
    connector(client).handle_callback(CALLBACK, {"code": simulator.issue_code(CORP_A, "lisi")})
    simulator.fail_next("user_get", 40001, "invalid credential, access_token is invalid")
    code = simulator.issue_code(CORP_A, "wangfang")
    identity = connector(client).handle_callback(CALLBACK, {"code": code})
    assert identity.subject == f"{CORP_A}/wangfang"
    assert simulator.calls["gettoken"] == 2


def test_subject_of_keeps_the_spelling_and_keys_by_lower_case() -> None:
    assert subject_of(CORP_A, "ZhangSan_A") == (f"{CORP_A}/ZhangSan_A", f"{CORP_A}/zhangsan_a")


def test_a_member_of_another_corporation_is_named_not_looked_up(
    client: WeComClient, simulator: WeComSimulator
) -> None:
    """企业互联/上下游: `CorpId/userid` is that corporation's member; the connector says whose,
    and the flows decide (it knows no other corporation)."""
    simulator.add_member(CORP_B, SimMember(f"{CORP_A}/zhangsan_A", "张三", [2]))
    code = simulator.issue_code(CORP_B, f"{CORP_A}/zhangsan_A")
    with pytest.raises(MemberElsewhereError) as elsewhere:
        connector(client, CORP_B).handle_callback(CALLBACK, {"code": code})
    assert (elsewhere.value.connector_id, elsewhere.value.user_id) == (CORP_A, "zhangsan_A")
    assert isinstance(elsewhere.value, NotAMemberError)
    assert simulator.calls["user_get"] == 0
