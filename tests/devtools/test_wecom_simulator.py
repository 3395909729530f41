"""The WeCom simulator speaks WeCom's protocol: every API, its error codes, the sign-in pages,
and the controls tests use to make WeCom misbehave."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from iam.devtools import wecom_simulator
from iam.devtools.wecom_simulator import SimCorp, SimMember, WeComSimulator, demo_corps
from iam.federation.wecom.callbacks import CallbackCrypto, WeComEvent, parse_event
from iam.web import STATIC_DIR

CORP_A = "wwsubsidiarya0001"
CORP_B = "wwsubsidiaryb0002"
SECRET_A = "demo-secret-subsidiary-a"
SECRET_B = "demo-secret-subsidiary-b"
AGENT_A = "1000002"
RP = "https://rp.example/callback/wecom/" + CORP_A


class FakeClock:
    """The simulator's `_now`, moved by tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(wecom_simulator, "_now", fake)
    return fake


@pytest.fixture
def sim() -> WeComSimulator:
    return WeComSimulator(demo_corps())


@pytest.fixture
def http(sim: WeComSimulator) -> Iterator[TestClient]:
    with TestClient(sim.app, base_url="https://qyapi.test", follow_redirects=False) as client:
        yield client


def token(http: TestClient, corp_id: str = CORP_A, secret: str = SECRET_A) -> str:
    answer = http.get("/cgi-bin/gettoken", params={"corpid": corp_id, "corpsecret": secret})
    assert answer.status_code == 200
    return answer.json()["access_token"]


def userinfo(http: TestClient, access_token: str, code: str) -> dict:
    answer = http.get(
        "/cgi-bin/auth/getuserinfo", params={"access_token": access_token, "code": code}
    )
    assert answer.status_code == 200
    return answer.json()


def userdetail(http: TestClient, access_token: str, ticket: str) -> dict:
    answer = http.post(
        "/cgi-bin/auth/getuserdetail",
        params={"access_token": access_token},
        json={"user_ticket": ticket},
    )
    assert answer.status_code == 200
    return answer.json()


def api(http: TestClient, path: str, **params: str) -> dict:
    answer = http.get(path, params=params)
    assert answer.status_code == 200
    return answer.json()


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


# --- gettoken ---


def test_gettoken_issues_a_token_for_the_corp(sim: WeComSimulator, http: TestClient):
    answer = api(http, "/cgi-bin/gettoken", corpid=CORP_A, corpsecret=SECRET_A)

    assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) >= 32
    assert sim.calls["gettoken"] == 1


def test_gettoken_reports_the_ttl_it_was_given():
    with TestClient(WeComSimulator(demo_corps(), token_ttl=60).app) as client:
        answer = api(client, "/cgi-bin/gettoken", corpid=CORP_A, corpsecret=SECRET_A)
    assert answer["expires_in"] == 60


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"corpsecret": SECRET_A}, 41002),
        ({"corpid": CORP_A}, 41004),
        ({"corpid": "wwnosuchcorp", "corpsecret": SECRET_A}, 40013),
        ({"corpid": CORP_A, "corpsecret": "wrong"}, 40001),
        ({"corpid": CORP_A, "corpsecret": SECRET_B}, 40001),
    ],
)
def test_gettoken_errors(http: TestClient, params: dict, errcode: int):
    answer = api(http, "/cgi-bin/gettoken", **params)
    assert answer["errcode"] == errcode
    assert "access_token" not in answer


# --- access tokens on the other APIs ---


def test_a_missing_unknown_or_expired_token_is_refused(
    sim: WeComSimulator, http: TestClient, clock: FakeClock
):
    path = "/cgi-bin/department/get"
    assert api(http, path, id="1")["errcode"] == 41001
    assert api(http, path, access_token="nope", id="1")["errcode"] == 40014

    issued = token(http)
    assert api(http, path, access_token=issued, id="1")["errcode"] == 0
    clock.now += 7199
    assert api(http, path, access_token=issued, id="1")["errcode"] == 0
    clock.now += 1
    assert api(http, path, access_token=issued, id="1")["errcode"] == 42001


def test_expire_tokens_expires_every_token_issued_so_far(sim: WeComSimulator, http: TestClient):
    old_a, old_b = token(http), token(http, CORP_B, SECRET_B)

    sim.expire_tokens()
    new_a = token(http)

    for old in (old_a, old_b):
        assert api(http, "/cgi-bin/user/get", access_token=old, userid="lisi")["errcode"] == 42001
    assert api(http, "/cgi-bin/user/get", access_token=new_a, userid="lisi")["errcode"] == 0


def test_a_token_only_works_for_its_own_corp(sim: WeComSimulator, http: TestClient):
    token_b = token(http, CORP_B, SECRET_B)

    answer = api(http, "/cgi-bin/user/get", access_token=token_b, userid="zhangsan_A")
    assert answer["errcode"] == 60111
    assert userinfo(http, token_b, sim.issue_code(CORP_A, "zhangsan_A"))["errcode"] == 40029


# --- auth/getuserinfo and auth/getuserdetail ---


def test_a_member_code_gives_the_userid_as_stored(sim: WeComSimulator, http: TestClient):
    answer = userinfo(http, token(http), sim.issue_code(CORP_A, "ZHANGSAN_a"))
    assert answer == {"errcode": 0, "errmsg": "ok", "userid": "zhangsan_A"}


def test_a_code_with_a_ticket_opens_the_private_details(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    answer = userinfo(http, access_token, sim.issue_code(CORP_A, "zhangsan_A", with_ticket=True))
    assert answer["userid"] == "zhangsan_A"

    detail = userdetail(http, access_token, answer["user_ticket"])

    assert detail["errcode"] == 0
    assert detail["userid"] == "zhangsan_A"
    assert detail["mobile"] == "13800138000"
    assert detail["email"] == "zhangsan@subsidiary-a.example"
    assert detail["gender"] == "1"
    assert {"avatar", "qr_code", "biz_mail", "address"} <= detail.keys()
    assert sim.calls["getuserdetail"] == 1


def test_getuserdetail_leaves_out_what_the_member_does_not_have(
    sim: WeComSimulator, http: TestClient
):
    access_token = token(http)
    ticket = userinfo(http, access_token, sim.issue_code(CORP_A, "wangfang", with_ticket=True))

    detail = userdetail(http, access_token, ticket["user_ticket"])

    assert detail["errcode"] == 0 and detail["gender"] == "2"
    assert "mobile" not in detail and "email" not in detail


def test_an_outsider_gets_an_openid_stable_per_corp(sim: WeComSimulator, http: TestClient):
    token_a, token_b = token(http), token(http, CORP_B, SECRET_B)

    first = userinfo(http, token_a, sim.issue_code(CORP_A, None))
    again = userinfo(http, token_a, sim.issue_code(CORP_A, None))
    in_b = userinfo(http, token_b, sim.issue_code(CORP_B, None))

    assert first["errcode"] == 0 and "userid" not in first
    assert first["openid"] == again["openid"] != in_b["openid"]


def test_codes_are_single_use(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    code = sim.issue_code(CORP_A, "lisi")

    assert userinfo(http, access_token, code)["userid"] == "lisi"
    assert userinfo(http, access_token, code) == {"errcode": 40029, "errmsg": "invalid code"}


def test_codes_expire_after_five_minutes(sim: WeComSimulator, http: TestClient, clock: FakeClock):
    access_token = token(http)
    young, old = sim.issue_code(CORP_A, "lisi"), sim.issue_code(CORP_A, "lisi")

    clock.now += 299
    assert userinfo(http, access_token, young)["errcode"] == 0
    clock.now += 1
    assert userinfo(http, access_token, old)["errcode"] == 40029


def test_getuserinfo_errors(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    answer = api(http, "/cgi-bin/auth/getuserinfo", access_token=access_token)
    assert answer["errcode"] == 41008
    assert userinfo(http, access_token, "made-up")["errcode"] == 40029


def test_tickets_are_reusable_for_1800_seconds(
    sim: WeComSimulator, http: TestClient, clock: FakeClock
):
    access_token = token(http)
    code = sim.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    ticket = userinfo(http, access_token, code)["user_ticket"]

    assert userdetail(http, access_token, ticket)["errcode"] == 0
    clock.now += 1799
    assert userdetail(http, access_token, ticket)["errcode"] == 0
    clock.now += 1
    answer = userdetail(http, token(http), ticket)
    assert answer == {"errcode": 40029, "errmsg": "invalid user_ticket"}


def test_getuserdetail_refuses_bad_tickets_and_bodies(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    code = sim.issue_code(CORP_B, "zs_b", with_ticket=True)
    ticket_b = userinfo(http, token(http, CORP_B, SECRET_B), code)["user_ticket"]
    path = "/cgi-bin/auth/getuserdetail"

    assert userdetail(http, access_token, "made-up")["errcode"] == 40029
    assert userdetail(http, access_token, ticket_b)["errcode"] == 40029  # another corp's
    answer = http.post(path, params={"access_token": access_token}, json={"ticket": "x"})
    assert answer.json()["errcode"] == 40029
    answer = http.post(path, params={"access_token": access_token}, content=b"{not json")
    assert answer.json()["errcode"] == 47001
    answer = http.post(path, json={"user_ticket": ticket_b})
    assert answer.json()["errcode"] == 41001


def test_bodies_over_4_kib_are_refused(http: TestClient):
    answer = http.post(
        "/cgi-bin/auth/getuserdetail",
        params={"access_token": token(http)},
        json={"user_ticket": "x" * 5000},
    )
    assert answer.status_code == 413


def test_issue_code_refuses_what_cannot_happen(sim: WeComSimulator):
    with pytest.raises(KeyError):
        sim.issue_code("wwnosuchcorp", "lisi")
    with pytest.raises(KeyError):
        sim.issue_code(CORP_A, "zs_b")
    with pytest.raises(ValueError, match="user_ticket"):
        sim.issue_code(CORP_A, None, with_ticket=True)


def test_a_code_used_with_another_corps_token_stays_usable(sim: WeComSimulator, http: TestClient):
    code = sim.issue_code(CORP_A, "lisi")
    assert userinfo(http, token(http, CORP_B, SECRET_B), code)["errcode"] == 40029
    assert userinfo(http, token(http), code)["userid"] == "lisi"


# --- user/get ---


def test_user_get_is_case_insensitive_and_answers_the_stored_spelling(http: TestClient):
    answer = api(http, "/cgi-bin/user/get", access_token=token(http), userid="ZhangSan_a")

    assert answer["errcode"] == 0
    assert answer["userid"] == "zhangsan_A"
    assert answer["name"] == "张三"
    assert answer["department"] == [2] and answer["main_department"] == 2
    assert answer["position"] == "销售经理"
    assert answer["status"] == 1
    assert not {"mobile", "email", "avatar", "gender"} & answer.keys()  # a post-2022 app


def test_user_get_gives_private_fields_to_apps_made_before_2022():
    corp = SimCorp(
        corp_id="wwold",
        name="Old corp",
        agent_id=1,
        secret="s",
        departments={1: "Old corp"},
        members=[SimMember("Ada", "Ada", [1], mobile="13800000000", gender="2", avatar="a.png")],
        user_get_private_fields=True,
    )
    with TestClient(WeComSimulator([corp]).app) as client:
        answer = api(
            client,
            "/cgi-bin/user/get",
            access_token=token(client, "wwold", "s"),
            userid="ada",
        )
    assert (answer["userid"], answer["mobile"], answer["gender"]) == ("Ada", "13800000000", "2")
    assert answer["avatar"] == "a.png" and "email" not in answer


def test_user_get_errors(http: TestClient):
    access_token = token(http)
    assert api(http, "/cgi-bin/user/get", access_token=access_token, userid="nobody") == {
        "errcode": 60111,
        "errmsg": "userid not found",
    }
    assert api(http, "/cgi-bin/user/get", access_token=access_token)["errcode"] == 41009


def test_user_get_reports_disabled_members(http: TestClient):
    answer = api(http, "/cgi-bin/user/get", access_token=token(http), userid="zhaoliu")
    assert answer["status"] == 2


def test_add_member(sim: WeComSimulator, http: TestClient):
    sim.add_member(CORP_A, SimMember("NewBie", "新人", [3], "实习生"))

    answer = api(http, "/cgi-bin/user/get", access_token=token(http), userid="newbie")
    assert (answer["userid"], answer["department"]) == ("NewBie", [3])
    with pytest.raises(ValueError, match="taken"):
        sim.add_member(CORP_A, SimMember("NEWBIE", "重名", [3]))
    with pytest.raises(ValueError, match="departments"):
        sim.add_member(CORP_A, SimMember("ghost", "鬼", [99]))
    with pytest.raises(KeyError):
        sim.add_member("wwnosuchcorp", SimMember("x", "x", [1]))


def test_the_simulator_keeps_its_own_copy_of_the_corps():
    corps = demo_corps()
    sim = WeComSimulator(corps)
    sim.add_member(CORP_A, SimMember("extra", "额外", [1]))
    assert "extra" not in [member.userid for member in corps[0].members]


# --- departments ---


def test_department_get(http: TestClient):
    access_token = token(http)
    root = api(http, "/cgi-bin/department/get", access_token=access_token, id="1")
    sales = api(http, "/cgi-bin/department/get", access_token=access_token, id="2")

    assert root["errcode"] == 0
    assert (root["department"]["name"], root["department"]["parentid"]) == ("子公司A", 0)
    assert sales["department"]["id"] == 2
    assert (sales["department"]["name"], sales["department"]["parentid"]) == ("销售部", 1)
    assert isinstance(sales["department"]["order"], int)


@pytest.mark.parametrize(("department_id", "errcode"), [("99", 60003), ("two", 40058)])
def test_department_get_errors(http: TestClient, department_id: str, errcode: int):
    answer = api(http, "/cgi-bin/department/get", access_token=token(http), id=department_id)
    assert answer["errcode"] == errcode


def test_department_list(http: TestClient):
    access_token = token(http, CORP_B, SECRET_B)
    everything = api(http, "/cgi-bin/department/list", access_token=access_token)
    from_root = api(http, "/cgi-bin/department/list", access_token=access_token, id="1")
    one = api(http, "/cgi-bin/department/list", access_token=access_token, id="3")

    assert everything["errcode"] == 0
    assert [d["name"] for d in everything["department"]] == ["子公司B", "售后服务部", "市场部"]
    assert from_root["department"] == everything["department"]
    assert [(d["id"], d["parentid"]) for d in one["department"]] == [(3, 1)]
    for bad_id, errcode in (("99", 60003), ("x", 40058)):
        answer = api(http, "/cgi-bin/department/list", access_token=access_token, id=bad_id)
        assert answer["errcode"] == errcode


# --- the sign-in pages ---


def oauth_params(**overrides: str) -> dict[str, str]:
    params = {
        "appid": CORP_A,
        "redirect_uri": RP,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "abc-123_XYZ",
        "agentid": AGENT_A,
    }
    return {key: value for key, value in {**params, **overrides}.items() if value is not None}


def qr_params(**overrides: str) -> dict[str, str]:
    params = {
        "login_type": "CorpApp",
        "appid": CORP_A,
        "agentid": AGENT_A,
        "redirect_uri": RP,
        "state": "s1",
        "lang": "zh",
    }
    return {key: value for key, value in {**params, **overrides}.items() if value is not None}


OAUTH = "/connect/oauth2/authorize"
QR = "/wwlogin/sso/login"


def test_the_oauth_page_lists_the_active_members(http: TestClient):
    page = http.get(OAUTH, params=oauth_params())

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html; charset=utf-8")
    assert "WeCom simulator — 子公司A" in page.text
    assert "张三 · zhangsan_A · 销售经理" in page.text
    assert re.findall(r'name="pick" value="([^"]+)"', page.text) == [
        "zhangsan_A",
        "lisi",
        "wangfang",
        "__outsider__",
        "__decline__",
    ]  # not zhaoliu, who is disabled
    assert "someone outside the corporation" in page.text and "decline" in page.text
    assert re.search(r"<form method=\"post\">", page.text)
    assert "<script" not in page.text and "style=" not in page.text and "<style" not in page.text


def test_a_long_return_address_wraps_on_a_phone(http: TestClient):
    """The address is one long word: it may break anywhere (no sideways scroll at 390 px)."""
    long_uri = RP + "?" + "x" * 300
    page = http.get(OAUTH, params=oauth_params(redirect_uri=long_uri))
    assert f'<span class="url">{long_uri}</span>' in page.text
    stylesheet = (STATIC_DIR / "iam.css").read_text()
    assert ".url { overflow-wrap: anywhere; }" in stylesheet


def test_picking_a_member_redirects_with_a_code_and_the_state(
    sim: WeComSimulator, http: TestClient
):
    answer = http.post(OAUTH, params=oauth_params(), data={"pick": "zhangsan_A"})

    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(RP + "?")
    query = query_of(location)
    assert query["state"] == ["abc-123_XYZ"]
    assert userinfo(http, token(http), query["code"][0]) == {
        "errcode": 0,
        "errmsg": "ok",
        "userid": "zhangsan_A",
    }  # snsapi_base: no ticket


def test_privateinfo_codes_carry_a_ticket(http: TestClient):
    params = oauth_params(scope="snsapi_privateinfo")
    page = http.get(OAUTH, params=params)
    assert "snsapi_privateinfo" in page.text

    answer = http.post(OAUTH, params=params, data={"pick": "lisi"})
    access_token = token(http)
    info = userinfo(http, access_token, query_of(answer.headers["location"])["code"][0])

    assert userdetail(http, access_token, info["user_ticket"])["mobile"] == "13900139000"


def test_the_outsider_button_gives_an_openid(http: TestClient):
    answer = http.post(QR, params=qr_params(), data={"pick": "__outsider__"})

    info = userinfo(http, token(http), query_of(answer.headers["location"])["code"][0])
    assert info["errcode"] == 0 and info["openid"] and "userid" not in info


@pytest.mark.parametrize(("path", "params"), [(OAUTH, oauth_params()), (QR, qr_params())])
def test_declining_redirects_with_the_state_and_no_code(http: TestClient, path: str, params):
    answer = http.post(path, params=params, data={"pick": "__decline__"})

    assert answer.status_code == 302
    assert query_of(answer.headers["location"]) == {"state": [params["state"]]}


def test_qr_codes_never_carry_a_ticket(http: TestClient):
    page = http.get(QR, params=qr_params())
    assert page.status_code == 200 and "QR-code login" in page.text

    answer = http.post(QR, params=qr_params(), data={"pick": "zhangsan_A"})

    assert query_of(answer.headers["location"])["state"] == ["s1"]
    info = userinfo(http, token(http), query_of(answer.headers["location"])["code"][0])
    assert info == {"errcode": 0, "errmsg": "ok", "userid": "zhangsan_A"}


def test_the_redirect_keeps_an_existing_query_and_an_empty_state(http: TestClient):
    redirect_uri = "http://127.0.0.1:8000/cb?next=%2Fhome&x="
    params = oauth_params(redirect_uri=redirect_uri, state=None)

    answer = http.post(OAUTH, params=params, data={"pick": "lisi"})

    location = answer.headers["location"]
    assert location.startswith(redirect_uri + "&code=")
    assert location.endswith("&state=")
    query = query_of(location)
    assert (query["next"], query["x"], query["state"]) == (["/home"], [""], [""])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (OAUTH, oauth_params(appid="wwnosuchcorp")),
        (OAUTH, oauth_params(response_type="token")),
        (OAUTH, oauth_params(scope="snsapi_userinfo")),
        (OAUTH, oauth_params(agentid="1000003")),
        (OAUTH, oauth_params(scope="snsapi_privateinfo", agentid=None)),
        (OAUTH, oauth_params(redirect_uri="/relative")),
        (OAUTH, oauth_params(redirect_uri="ftp://rp.example/cb")),
        (OAUTH, oauth_params(redirect_uri="https://rp.example/cb#frag")),
        (OAUTH, oauth_params(state="has space")),
        (OAUTH, oauth_params(state="x" * 129)),
        (QR, qr_params(appid="wwnosuchcorp")),
        (QR, qr_params(agentid=None)),
        (QR, qr_params(agentid="1000003")),
        (QR, qr_params(login_type="ServiceApp")),
        (QR, qr_params(redirect_uri="javascript:alert(1)")),
        (QR, qr_params(state="a.b")),
    ],
)
def test_bad_sign_in_requests_get_an_error_page(http: TestClient, path: str, params):
    page = http.get(path, params=params)
    posted = http.post(path, params=params, data={"pick": "lisi"})

    assert page.status_code == posted.status_code == 400
    assert 'class="error"' in page.text
    assert 'name="pick"' not in page.text


def test_the_longest_allowed_state_and_a_base_scope_without_agentid_pass(http: TestClient):
    params = oauth_params(state="s" * 128, agentid=None)
    assert http.get(OAUTH, params=params).status_code == 200


@pytest.mark.parametrize("pick", ["zhaoliu", "nobody", "zs_b", ""])
def test_only_a_listed_person_can_be_picked(http: TestClient, pick: str):
    answer = http.post(OAUTH, params=oauth_params(), data={"pick": pick})
    assert answer.status_code == 400
    assert "Pick one of the listed people." in answer.text


def test_page_forms_over_4_kib_are_refused(http: TestClient):
    answer = http.post(OAUTH, params=oauth_params(), data={"pick": "x" * 5000})
    assert answer.status_code == 413


def test_chunked_bodies_over_4_kib_are_refused(http: TestClient):
    def chunks() -> Iterator[bytes]:
        yield b"pick="
        for _ in range(5):
            yield b"x" * 1024

    answer = http.post(
        OAUTH,
        params=oauth_params(),
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


def test_the_flow_works_below_a_mount_point(sim: WeComSimulator):
    """`iam demo` mounts the simulator at /_sim/wecom: the form posts back to the page's URL."""
    outer = Starlette(routes=[Mount("/_sim/wecom", app=sim.app)])
    with TestClient(outer, follow_redirects=False) as client:
        page_url = "/_sim/wecom" + OAUTH
        assert client.get(page_url, params=oauth_params()).status_code == 200
        answer = client.post(page_url, params=oauth_params(), data={"pick": "lisi"})
        code = query_of(answer.headers["location"])["code"][0]
        access_token = api(
            client, "/_sim/wecom/cgi-bin/gettoken", corpid=CORP_A, corpsecret=SECRET_A
        )["access_token"]
        answer = api(
            client, "/_sim/wecom/cgi-bin/auth/getuserinfo", access_token=access_token, code=code
        )
    assert answer["userid"] == "lisi"


def test_pages_are_not_counted_as_api_calls(sim: WeComSimulator, http: TestClient):
    http.get(OAUTH, params=oauth_params())
    http.post(OAUTH, params=oauth_params(), data={"pick": "lisi"})
    assert sum(sim.calls.values()) == 0


# --- test controls ---


def test_fail_next_answers_the_injected_error_then_recovers(sim: WeComSimulator, http: TestClient):
    sim.fail_next("gettoken", -1, "system busy", times=2)
    params = {"corpid": CORP_A, "corpsecret": SECRET_A}

    first = http.get("/cgi-bin/gettoken", params=params)
    second = http.get("/cgi-bin/gettoken", params=params)
    third = http.get("/cgi-bin/gettoken", params=params)

    assert first.status_code == 200
    assert first.json() == second.json() == {"errcode": -1, "errmsg": "system busy"}
    assert third.json()["errcode"] == 0
    assert sim.calls["gettoken"] == 3


def test_an_injected_failure_leaves_the_code_usable(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    code = sim.issue_code(CORP_A, "lisi")
    sim.fail_next("getuserinfo", 45009)

    assert userinfo(http, access_token, code) == {"errcode": 45009, "errmsg": "injected"}
    assert userinfo(http, access_token, code)["userid"] == "lisi"


def test_fail_http_answers_a_non_json_status(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    sim.fail_http("user_get", 502)

    broken = http.get("/cgi-bin/user/get", params={"access_token": access_token, "userid": "lisi"})
    healed = http.get("/cgi-bin/user/get", params={"access_token": access_token, "userid": "lisi"})

    assert broken.status_code == 502
    assert not broken.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        broken.json()
    assert healed.json()["errcode"] == 0
    assert sim.calls["user_get"] == 2


def test_failures_and_delays_are_per_api(sim: WeComSimulator, http: TestClient):
    sim.fail_next("department_list", 60011)
    sim.fail_http("department_get", 500)
    sim.delay("getuserdetail", 5)
    started = time.monotonic()
    access_token = token(http)
    assert time.monotonic() - started < 1

    assert api(http, "/cgi-bin/department/list", access_token=access_token)["errcode"] == 60011
    assert http.get("/cgi-bin/department/get", params={"access_token": access_token}).is_error


def test_delay_waits_before_answering_and_zero_removes_it(sim: WeComSimulator, http: TestClient):
    sim.delay("gettoken", 0.2)
    started = time.monotonic()
    token(http)
    assert time.monotonic() - started >= 0.2

    sim.delay("gettoken", 0)
    started = time.monotonic()
    token(http)
    assert time.monotonic() - started < 0.2


def test_controls_refuse_unknown_apis_and_negative_delays(sim: WeComSimulator):
    with pytest.raises(ValueError, match="unknown API"):
        sim.fail_next("get_token", 40001)
    with pytest.raises(ValueError, match="unknown API"):
        sim.fail_http("user/get", 500)
    with pytest.raises(ValueError, match="unknown API"):
        sim.delay("authorize", 1)
    with pytest.raises(ValueError, match="negative"):
        sim.delay("gettoken", -1)


def test_calls_are_counted_per_api(sim: WeComSimulator, http: TestClient):
    access_token = token(http)
    api(http, "/cgi-bin/user/get", access_token=access_token, userid="lisi")
    api(http, "/cgi-bin/user/get", access_token=access_token, userid="nobody")
    api(http, "/cgi-bin/department/get", access_token=access_token, id="1")
    api(http, "/cgi-bin/department/list", access_token=access_token)
    userinfo(http, access_token, "made-up")
    userdetail(http, access_token, "made-up")

    assert sim.calls == {
        "gettoken": 1,
        "user_get": 2,
        "department_get": 1,
        "department_list": 1,
        "getuserinfo": 1,
        "getuserdetail": 1,
    }


def test_reset_forgets_tokens_codes_failures_delays_and_counts(
    sim: WeComSimulator, http: TestClient
):
    access_token = token(http)
    code = sim.issue_code(CORP_A, "lisi")
    sim.fail_next("gettoken", -1)
    sim.fail_http("user_get", 500)
    sim.delay("getuserinfo", 5)

    sim.reset()

    assert sum(sim.calls.values()) == 0
    assert userinfo(http, token(http), code)["errcode"] == 40029  # fast: no delay any more
    assert api(http, "/cgi-bin/user/get", access_token=access_token, userid="x")["errcode"] == 40014
    assert sim.calls == {"gettoken": 1, "getuserinfo": 1, "user_get": 1}


def test_reset_keeps_added_members(sim: WeComSimulator, http: TestClient):
    sim.add_member(CORP_B, SimMember("late", "迟到", [2]))
    sim.reset()
    access_token = token(http, CORP_B, SECRET_B)
    answer = api(http, "/cgi-bin/user/get", access_token=access_token, userid="late")
    assert answer["errcode"] == 0


def test_concurrent_gettoken_calls_all_succeed_and_are_counted(sim: WeComSimulator):
    answers: list[dict] = []
    failures: list[BaseException] = []

    def call() -> None:
        try:
            with TestClient(sim.app) as client:
                answers.append(api(client, "/cgi-bin/gettoken", corpid=CORP_A, corpsecret=SECRET_A))
        except BaseException as error:  # reported below, from the main thread
            failures.append(error)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert [answer["errcode"] for answer in answers] == [0] * 20
    assert len({answer["access_token"] for answer in answers}) == 20
    assert sim.calls["gettoken"] == 20


def test_concurrent_code_redemption_succeeds_exactly_once(sim: WeComSimulator):
    with TestClient(sim.app) as client:
        access_token = token(client)
    code = sim.issue_code(CORP_A, "lisi")
    errcodes: list[int] = []

    def redeem() -> None:
        with TestClient(sim.app) as client:
            errcodes.append(userinfo(client, access_token, code)["errcode"])

    threads = [threading.Thread(target=redeem) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(errcodes) == [0] + [40029] * 9


# --- change events: the directory changes, and WeCom tells the server ---

CALLBACK_URL = "https://iam.test/events/wecom/" + CORP_A
CALLBACK_TOKEN = "SimToken42"
CALLBACK_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


class Answer:
    def __init__(self, status_code: int, text: str) -> None:
        self.status_code = status_code
        self.text = text


class RecordingSender:
    """A sender that keeps what it is asked to POST and answers `status` (or raises `error`)."""

    def __init__(self, status: int = 200, text: str = "", error: Exception | None = None):
        self.posts: list[dict] = []
        self.answer = Answer(status, text)
        self.error = error

    def post(self, url: str, *, content: bytes, params: dict, headers: dict) -> Answer:
        self.posts.append({"url": url, "content": content, "params": params, "headers": headers})
        if self.error is not None:
            raise self.error
        return self.answer

    def opened(self, index: int = -1) -> tuple[str, WeComEvent]:
        """The plaintext of a POSTed event (verified and decrypted as our receiver does)."""
        sent = self.posts[index]
        params = sent["params"]
        plaintext = CallbackCrypto(CALLBACK_TOKEN, CALLBACK_KEY, CORP_A).open_message(
            params["msg_signature"], params["timestamp"], params["nonce"], sent["content"]
        )
        return plaintext, parse_event(plaintext)


@pytest.fixture
def sender(sim: WeComSimulator) -> RecordingSender:
    recording = RecordingSender()
    sim.configure_callback(CORP_A, CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY, sender=recording)
    return recording


def test_a_leaver_is_removed_and_delete_user_is_sealed_and_posted(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender
):
    delivery = sim.member_leaves(CORP_A, "ZHANGSAN_A")

    assert (delivery.url, delivery.status_code, delivery.accepted) == (CALLBACK_URL, 200, True)
    (sent,) = sender.posts
    assert sent["url"] == CALLBACK_URL
    assert sent["headers"] == {"content-type": "text/xml"}
    assert set(sent["params"]) == {"msg_signature", "timestamp", "nonce"}
    assert abs(int(sent["params"]["timestamp"]) - time.time()) < 60
    assert sent["params"]["nonce"].isdigit()
    plaintext, event = sender.opened()
    assert (event.msg_type, event.event, event.change_type) == (
        "event",
        "change_contact",
        "delete_user",
    )
    assert event.user_id == "zhangsan_A"  # as WeCom spells it, whatever the caller's case
    assert event.create_time == int(sent["params"]["timestamp"])
    assert plaintext.startswith(
        f"<xml><ToUserName><![CDATA[{CORP_A}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>"
    )
    assert (
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>" in plaintext
    )
    assert (
        "<ChangeType>delete_user</ChangeType><UserID><![CDATA[zhangsan_A]]></UserID></xml>"
        in plaintext
    )
    access_token = token(http)
    answer = api(http, "/cgi-bin/user/get", access_token=access_token, userid="zhangsan_A")
    assert answer["errcode"] == 60111


def test_a_rename_sends_update_user_with_the_new_userid(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender
):
    delivery = sim.member_renamed(CORP_A, "zhangsan_a", "zhang.san")

    assert (delivery.change_type, delivery.userid) == ("update_user", "zhangsan_A")
    _, event = sender.opened()
    assert (event.change_type, event.user_id, event.new_user_id) == (
        "update_user",
        "zhangsan_A",
        "zhang.san",
    )
    access_token = token(http)
    answer = api(http, "/cgi-bin/user/get", access_token=access_token, userid="zhang.san")
    assert (answer["errcode"], answer["position"]) == (0, "销售经理")


def test_a_change_sends_update_user_with_the_changed_fields(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender
):
    sim.member_changed(CORP_A, "lisi", position="销售主管", department=[3, 2], status=5)

    plaintext, event = sender.opened()
    assert (event.change_type, event.user_id) == ("update_user", "lisi")
    assert event.fields["Position"] == "销售主管"
    assert (event.fields["Department"], event.fields["MainDepartment"]) == ("3,2", "3")
    assert event.fields["Status"] == "5"
    assert "NewUserID" not in event.fields and "Name" not in event.fields  # only what changed
    assert "<Position><![CDATA[销售主管]]></Position>" in plaintext
    assert "<Status>5</Status>" in plaintext and "<MainDepartment>3</MainDepartment>" in plaintext
    answer = api(http, "/cgi-bin/user/get", access_token=token(http), userid="lisi")
    assert (answer["position"], answer["department"], answer["status"]) == ("销售主管", [3, 2], 5)


def test_member_changed_refuses_a_userid_and_unknown_fields(sim: WeComSimulator):
    with pytest.raises(ValueError, match="member_renamed"):
        sim.member_changed(CORP_A, "lisi", userid="li.si")
    with pytest.raises(ValueError, match="unknown member fields"):
        sim.member_changed(CORP_A, "lisi", nickname="小李")


def test_a_rename_onto_a_taken_userid_is_refused(sim: WeComSimulator, sender: RecordingSender):
    with pytest.raises(ValueError, match="taken"):
        sim.member_renamed(CORP_A, "zhangsan_A", "LISI")
    assert sender.posts == []
    assert sim.issue_code(CORP_A, "zhangsan_A") and sim.issue_code(CORP_A, "lisi")


def test_without_callback_settings_a_leaver_still_leaves(sim: WeComSimulator, http: TestClient):
    delivery = sim.member_leaves(CORP_B, "zs_b")

    assert (delivery.sent, delivery.url, delivery.status_code) == (False, None, None)
    assert "no callback settings" in delivery.summary()
    access_token = token(http, CORP_B, SECRET_B)
    answer = api(http, "/cgi-bin/user/get", access_token=access_token, userid="zs_b")
    assert answer["errcode"] == 60111


def test_the_servers_refusal_is_reported(sim: WeComSimulator):
    refusing = RecordingSender(status=400, text="refused")
    sim.configure_callback(CORP_A, CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY, sender=refusing)

    delivery = sim.member_leaves(CORP_A, "lisi")

    assert (delivery.status_code, delivery.answer, delivery.accepted) == (400, "refused", False)
    assert delivery.summary().endswith("the server answered 400: refused")


def test_an_unreachable_server_is_reported(sim: WeComSimulator):
    failing = RecordingSender(error=httpx.ConnectError("connection refused"))
    sim.configure_callback(CORP_A, CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY, sender=failing)

    delivery = sim.member_leaves(CORP_A, "lisi")

    assert (delivery.sent, delivery.status_code, delivery.error) == (
        True,
        None,
        "connection refused",
    )
    assert "no answer (connection refused)" in delivery.summary()
    assert sim.issue_code(CORP_A, "zhangsan_A")
    with pytest.raises(KeyError):  # lisi left all the same
        sim.issue_code(CORP_A, "lisi")


def test_the_default_sender_posts_over_http(sim: WeComSimulator, monkeypatch: pytest.MonkeyPatch):
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    real_client = httpx.Client
    monkeypatch.setattr(
        httpx,
        "Client",
        lambda **options: real_client(transport=httpx.MockTransport(server), **options),
    )
    sim.configure_callback(CORP_A, CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY)

    assert sim.member_leaves(CORP_A, "lisi").accepted

    (request,) = seen
    assert (request.method, str(request.url).split("?")[0]) == ("POST", CALLBACK_URL)
    assert set(request.url.params) == {"msg_signature", "timestamp", "nonce"}
    assert request.content.startswith(b"<xml><ToUserName><![CDATA[" + CORP_A.encode())


@pytest.mark.parametrize(
    "args",
    [
        ("NOPE", CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY),
        (CORP_A, CALLBACK_URL, "not a token!", CALLBACK_KEY),
        (CORP_A, CALLBACK_URL, CALLBACK_TOKEN, CALLBACK_KEY[:-1]),
        (CORP_A, "/events/wecom/x", CALLBACK_TOKEN, CALLBACK_KEY),
    ],
    ids=["unknown corp", "bad token", "short key", "relative url"],
)
def test_configure_callback_refuses_what_wecom_would_not_save(sim: WeComSimulator, args):
    with pytest.raises((KeyError, ValueError)):
        sim.configure_callback(*args)
    assert sim.callback(CORP_A) is None


def test_configuring_again_replaces_the_settings(sim: WeComSimulator, sender: RecordingSender):
    sim.configure_callback(CORP_A, CALLBACK_URL + "?v=2", "Other1", CALLBACK_KEY)
    configured = sim.callback(CORP_A)
    assert configured is not None
    assert (configured.url, configured.token, configured.sender) == (
        CALLBACK_URL + "?v=2",
        "Other1",
        None,
    )
    assert CALLBACK_TOKEN not in repr(configured) and "Other1" not in repr(configured)


def test_a_ticket_of_a_member_who_left_is_answered_60111(sim: WeComSimulator, http: TestClient):
    code = sim.issue_code(CORP_A, "zhangsan_A", with_ticket=True)
    access_token = token(http)
    ticket = userinfo(http, access_token, code)["user_ticket"]
    sim.member_leaves(CORP_A, "zhangsan_A")
    assert userdetail(http, access_token, ticket)["errcode"] == 60111


# --- the directory page and its button ---


def form_token(page: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


def test_the_directory_lists_every_member_with_a_leave_button(
    http: TestClient, sender: RecordingSender
):
    page = http.get("/directory")

    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    for corp in demo_corps():
        assert corp.corp_id in page.text
        for member in corp.members:
            assert f'name="userid" value="{member.userid}"' in page.text
    assert page.text.count("leaves the corporation</button>") == 8
    assert f'Events go to <span class="url">{CALLBACK_URL}</span>' in page.text  # A's settings
    assert "No callback settings" in page.text  # B has none


def test_the_leave_button_sends_delete_user_and_shows_the_answer(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender
):
    page = http.get("/directory")
    answer = http.post(
        "/directory",
        data={"form_token": form_token(page.text), "corp_id": CORP_A, "userid": "lisi"},
    )

    assert answer.status_code == 200
    assert 'class="notice"' in answer.text
    assert f"delete_user for lisi of {CORP_A}: sent to {CALLBACK_URL}" in answer.text
    assert 'name="userid" value="lisi"' not in answer.text  # gone from the list
    _, event = sender.opened()
    assert (event.change_type, event.user_id) == ("delete_user", "lisi")
    with pytest.raises(KeyError):
        sim.issue_code(CORP_A, "lisi")


def test_the_leave_button_without_callback_settings_says_nothing_was_sent(
    sim: WeComSimulator, http: TestClient
):
    page = http.get("/directory")
    answer = http.post(
        "/directory",
        data={"form_token": form_token(page.text), "corp_id": CORP_B, "userid": "zs_b"},
    )

    assert answer.status_code == 200
    assert 'class="error"' in answer.text and "no callback settings" in answer.text
    with pytest.raises(KeyError):
        sim.issue_code(CORP_B, "zs_b")


@pytest.mark.parametrize("token_value", [None, "", "forged"], ids=["missing", "empty", "forged"])
def test_the_leave_button_needs_the_pages_form_token(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender, token_value: str | None
):
    data = {"corp_id": CORP_A, "userid": "lisi"}
    if token_value is not None:
        data["form_token"] = token_value

    answer = http.post("/directory", data=data)

    assert answer.status_code == 403
    assert sender.posts == []
    assert sim.issue_code(CORP_A, "lisi")  # still a member


def test_each_simulator_has_its_own_form_token(http: TestClient):
    other = WeComSimulator(demo_corps())
    with TestClient(other.app) as other_http:
        assert form_token(http.get("/directory").text) != form_token(
            other_http.get("/directory").text
        )


@pytest.mark.parametrize(
    ("corp_id", "userid"),
    [(CORP_A, "nobody"), ("NOPE", "lisi"), (CORP_B, "lisi")],
    ids=["unknown member", "unknown corp", "member of another corp"],
)
def test_the_leave_button_refuses_unknown_members(
    sim: WeComSimulator, http: TestClient, sender: RecordingSender, corp_id: str, userid: str
):
    page = http.get("/directory")
    answer = http.post(
        "/directory",
        data={"form_token": form_token(page.text), "corp_id": corp_id, "userid": userid},
    )

    assert answer.status_code == 400
    assert sender.posts == []
    assert sim.issue_code(CORP_A, "lisi")


# --- the demo world ---


def test_demo_corps_describe_the_two_subsidiaries():
    subsidiary_a, subsidiary_b = demo_corps()

    assert (subsidiary_a.corp_id, subsidiary_a.name, subsidiary_a.agent_id) == (
        CORP_A,
        "子公司A",
        1000002,
    )
    assert (subsidiary_b.corp_id, subsidiary_b.name, subsidiary_b.agent_id) == (
        CORP_B,
        "子公司B",
        1000003,
    )
    assert (subsidiary_a.secret, subsidiary_b.secret) == (SECRET_A, SECRET_B)
    zhangsan_a = next(m for m in subsidiary_a.members if m.userid == "zhangsan_A")
    zhangsan_b = next(m for m in subsidiary_b.members if m.userid == "zs_b")
    assert zhangsan_a.name == zhangsan_b.name == "张三"
    assert zhangsan_a.mobile == zhangsan_b.mobile == "13800138000"
    assert (zhangsan_a.position, zhangsan_b.position) == ("销售经理", "售后顾问")
    a_only = [m for m in subsidiary_a.members if m.mobile == "13900139000"]
    assert len(a_only) == 1
    assert not [m for m in subsidiary_b.members if m.mobile == "13900139000"]
    for corp in (subsidiary_a, subsidiary_b):
        assert corp.departments[1] == corp.name
        assert any(m.status == 2 for m in corp.members)
        assert any(m.mobile is None for m in corp.members)
        assert all(set(m.department) <= set(corp.departments) for m in corp.members)


# --- agent/get, and the app's trusted IPs ---


def test_agent_get_reports_the_apps_settings(sim: WeComSimulator, http: TestClient):
    answer = api(http, "/cgi-bin/agent/get", access_token=token(http), agentid=AGENT_A)
    assert answer["errcode"] == 0
    assert (answer["agentid"], answer["close"]) == (int(AGENT_A), 0)
    assert answer["name"] == "统一登录"
    assert answer["allow_partys"] == {"partyid": [1]}  # the whole corporation
    assert answer["allow_userinfos"] == {"user": []}
    assert answer["allow_tags"] == {"tagid": []}
    # no trusted domain of its own: the host it was asked at (the demo's server)
    assert answer["redirect_domain"] == "qyapi.test"
    assert sim.calls["agent_get"] == 1


def test_agent_get_follows_what_the_admin_changed(sim: WeComSimulator, http: TestClient):
    sim.configure_app(
        CORP_A,
        closed=True,
        visible_departments=[],
        visible_users=["lisi"],
        visible_tags=[7],
        redirect_domain="iam.example.com",
        app_name="登录",
    )
    answer = api(http, "/cgi-bin/agent/get", access_token=token(http), agentid=AGENT_A)
    assert (answer["close"], answer["name"], answer["redirect_domain"]) == (
        1,
        "登录",
        "iam.example.com",
    )
    assert answer["allow_userinfos"] == {"user": [{"userid": "lisi"}]}
    assert (answer["allow_partys"], answer["allow_tags"]) == ({"partyid": []}, {"tagid": [7]})


def test_agent_get_of_another_agent_is_40056(http: TestClient):
    answer = api(http, "/cgi-bin/agent/get", access_token=token(http), agentid="1000099")
    assert answer["errcode"] == 40056


def test_configure_app_refuses_unknown_fields(sim: WeComSimulator):
    with pytest.raises(ValueError, match="unknown app fields"):
        sim.configure_app(CORP_A, secret="x")


def test_an_untrusted_caller_gets_60020_with_its_address_except_from_gettoken(
    sim: WeComSimulator, http: TestClient
):
    sim.configure_app(CORP_A, trusted_ips=["198.51.100.7"])
    access_token = token(http)  # gettoken is not checked
    for path, params in [
        ("/cgi-bin/agent/get", {"agentid": AGENT_A}),
        ("/cgi-bin/user/get", {"userid": "lisi"}),
    ]:
        answer = api(http, path, access_token=access_token, **params)
        assert answer["errcode"] == 60020
        assert answer["errmsg"].startswith("not allow to access from your ip, hint: [")
        assert "from ip: 203.0.113.9, more info at " in answer["errmsg"]
    # subsidiary B has no list: not checked
    token_b = token(http, CORP_B, SECRET_B)
    assert api(http, "/cgi-bin/user/get", access_token=token_b, userid="zs_b")["errcode"] == 0
    sim.configure_app(CORP_A, trusted_ips=["198.51.100.7", wecom_simulator.SIM_CALLER_IP])
    answer = api(http, "/cgi-bin/agent/get", access_token=access_token, agentid=AGENT_A)
    assert answer["errcode"] == 0
