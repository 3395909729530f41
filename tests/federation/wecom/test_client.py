"""iam/federation/wecom/client.py against an imitation of WeCom's JSON API (httpx.MockTransport):
tests cannot reach WeCom itself. The answers follow /work/shared/docs/wecom-api.md."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from starlette.testclient import TestClient

from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.federation.connector import UpstreamRefusedError, UpstreamUnavailableError
from iam.federation.wecom import tokens
from iam.federation.wecom.client import (
    BUSY_RETRY_PAUSE,
    DEFAULT_TIMEOUT,
    FREQUENCY_BLOCK,
    REFUSED_TOKEN_TTL,
    RETRY_ON_TOKEN_ERRORS,
    WeComApiError,
    WeComApp,
    WeComBlockedError,
    WeComClient,
    WeComUnavailableError,
    new_http_client,
    token_key,
)
from iam.federation.wecom.tokens import MemoryTokenCache

API_BASE = "https://qyapi.weixin.qq.com"
SECRET = "Secret/with+odd=chars&0123456789abcdefghijklmno"
APP = WeComApp("ww0123456789abcdef", 1000002, SECRET)

Answer = dict[str, Any] | httpx.Response | Callable[[httpx.Request], httpx.Response]


def _raising(error: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return answer


class FakeWeCom:
    """WeCom as wecom-api.md describes it. gettoken issues tok-1, tok-2, ... for a known secret,
    and the data APIs accept only tokens that are still live. `script` queues other answers,
    which are given first."""

    def __init__(self, expires_in: int = 7200) -> None:
        self.expires_in = expires_in
        self.secrets = {SECRET}
        self.live: set[str] = set()
        self.issued = 0
        self.requests: list[httpx.Request] = []
        self._scripted: dict[str, list[Answer]] = {}

    def script(self, api: str, *answers: Answer) -> None:
        self._scripted.setdefault(api, []).extend(answers)

    def calls(self, api: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith(f"/cgi-bin/{api}")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        api = request.url.path.partition("/cgi-bin/")[2]
        if self._scripted.get(api):
            answer = self._scripted[api].pop(0)
            if isinstance(answer, dict):
                return httpx.Response(200, json=answer)
            return answer if isinstance(answer, httpx.Response) else answer(request)
        return httpx.Response(200, json=self._answer(api, request))

    def _answer(self, api: str, request: httpx.Request) -> dict[str, Any]:
        params = request.url.params
        if api == "gettoken":
            if params.get("corpsecret") not in self.secrets:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            self.issued += 1
            token = f"tok-{self.issued}"
            self.live.add(token)
            return {
                "errcode": 0,
                "errmsg": "ok",
                "access_token": token,
                "expires_in": self.expires_in,
            }
        if params.get("access_token") not in self.live:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        if api == "auth/getuserinfo":
            return {"errcode": 0, "errmsg": "ok", "userid": "ZhangSan", "user_ticket": "TICKET"}
        if api == "auth/getuserdetail":
            return {"errcode": 0, "errmsg": "ok", "userid": "lisi", "gender": "1"}
        if api == "user/get":
            return {"errcode": 0, "errmsg": "ok", "userid": params["userid"], "name": "张三"}
        if api == "department/get":
            department = {"id": int(params["id"]), "name": "广州研发中心", "parentid": 1}
            return {"errcode": 0, "errmsg": "ok", "department": department}
        return {"errcode": 48002, "errmsg": "api forbidden"}


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom()


@pytest.fixture
def http(fake: FakeWeCom) -> Iterator[httpx.Client]:
    with new_http_client(httpx.MockTransport(fake)) as client:
        yield client


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    """The pauses the client asked for (it does not really sleep in these tests)."""
    return []


@pytest.fixture
def client(http: httpx.Client, clock: Clock, sleeps: list[float]) -> WeComClient:
    return WeComClient(API_BASE + "/", http, MemoryTokenCache(), clock=clock, sleep=sleeps.append)


# --- the HTTP client ----------------------------------------------------------------------------


def test_http_client_has_the_timeouts_no_redirects_and_a_user_agent(
    fake: FakeWeCom, client: WeComClient, http: httpx.Client
) -> None:
    assert http.timeout == DEFAULT_TIMEOUT
    assert (http.timeout.connect, http.timeout.read) == (3.0, 5.0)
    assert http.follow_redirects is False
    client.get_user(APP, "zhangsan")
    assert {request.headers["user-agent"] for request in fake.requests} == {"iam"}


def test_app_repr_does_not_show_the_secret() -> None:
    assert SECRET not in repr(APP)


# --- access tokens ------------------------------------------------------------------------------


def test_gettoken_sends_corpid_and_secret_url_encoded(fake: FakeWeCom, client: WeComClient) -> None:
    assert client.access_token(APP) == "tok-1"
    [request] = fake.calls("gettoken")
    assert request.method == "GET"
    assert str(request.url).startswith(f"{API_BASE}/cgi-bin/gettoken?")
    assert dict(request.url.params) == {"corpid": APP.corp_id, "corpsecret": SECRET}
    assert b"corpsecret=Secret%2Fwith%2Bodd%3Dchars%260123" in request.url.query


def test_token_is_cached_across_many_calls(fake: FakeWeCom, client: WeComClient) -> None:
    for number in range(10):
        client.get_user(APP, f"user{number}")
        client.get_user_info(APP, f"code{number}")
        client.get_department(APP, number + 1)
    assert len(fake.calls("gettoken")) == 1
    used = {
        r.url.params["access_token"] for r in fake.requests if r.url.path != "/cgi-bin/gettoken"
    }
    assert used == {"tok-1"}


def test_token_is_refetched_five_minutes_before_it_expires(
    fake: FakeWeCom, client: WeComClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [5000.0]
    monkeypatch.setattr(tokens, "monotonic", lambda: now[0])
    client.get_user(APP, "a")
    now[0] += 7200 - 300 - 1
    client.get_user(APP, "a")
    assert len(fake.calls("gettoken")) == 1
    now[0] += 1
    client.get_user(APP, "a")
    assert len(fake.calls("gettoken")) == 2
    assert fake.calls("user/get")[-1].url.params["access_token"] == "tok-2"


def test_a_changed_secret_gets_another_token(fake: FakeWeCom, client: WeComClient) -> None:
    rotated = WeComApp(APP.corp_id, APP.agent_id, "the-new-secret")
    fake.secrets.add(rotated.secret)
    assert client.access_token(APP) == "tok-1"
    assert client.access_token(rotated) == "tok-2"
    assert client.access_token(APP) == "tok-1"
    assert len(fake.calls("gettoken")) == 2


def test_token_key_names_the_app_and_a_hash_of_the_secret() -> None:
    key = token_key(APP)
    assert re.fullmatch(r"ww0123456789abcdef:1000002:[0-9a-f]{16}", key)
    assert SECRET not in key
    assert token_key(WeComApp(APP.corp_id, APP.agent_id, SECRET + "x")) != key


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_a_rejected_token_is_dropped_and_the_call_retried_once(
    fake: FakeWeCom, client: WeComClient, errcode: int
) -> None:
    client.access_token(APP)
    fake.script("user/get", {"errcode": errcode, "errmsg": "invalid access_token"})
    assert client.get_user(APP, "zhangsan")["userid"] == "zhangsan"
    assert [r.url.params["access_token"] for r in fake.calls("user/get")] == ["tok-1", "tok-2"]
    client.get_user(APP, "zhangsan")  # the new token is the cached one now
    assert len(fake.calls("gettoken")) == 2


def test_a_token_wecom_invalidated_early_is_replaced(fake: FakeWeCom, client: WeComClient) -> None:
    client.get_user(APP, "a")
    fake.live.clear()  # WeCom may invalidate a token before expires_in
    assert client.get_user(APP, "a")["userid"] == "a"
    assert len(fake.calls("gettoken")) == 2


def test_a_second_token_error_in_a_row_is_raised_not_looped(
    fake: FakeWeCom, client: WeComClient
) -> None:
    fake.script("user/get", *[{"errcode": 42001, "errmsg": "access_token expired"}] * 5)
    with pytest.raises(WeComApiError) as caught:
        client.get_user(APP, "zhangsan")
    assert (caught.value.code, caught.value.api) == (42001, "user/get")
    assert len(fake.calls("user/get")) == 2
    assert len(fake.calls("gettoken")) == 2


REASONS = [
    (40029, "wecom.invalid_code"),
    *[(c, "wecom.misconfigured") for c in (40013, 40001, 40091, 40056, 41002, 41004)],
    *[(c, "wecom.busy") for c in (45009, 45033, -1)],
    (60020, "wecom.ip_not_trusted"),
    (50001, "wecom.redirect_untrusted"),
    *[(c, "wecom.no_privilege") for c in (60011, 50002, 48002)],
    *[(c, "wecom.unknown_member") for c in (60111, 40003)],
    *[(c, "wecom.error") for c in (60003, 41001, 99999)],
]


@pytest.mark.parametrize(("errcode", "reason"), REASONS)
def test_errcodes_map_to_reasons(
    fake: FakeWeCom, client: WeComClient, errcode: int, reason: str
) -> None:
    # Twice: token errors (40001 among them) are retried once with a fresh token.
    fake.script("auth/getuserinfo", *[{"errcode": errcode, "errmsg": "some message"}] * 2)
    with pytest.raises(WeComApiError) as caught:
        client.get_user_info(APP, "CODE")
    error = caught.value
    assert isinstance(error, UpstreamRefusedError)
    assert (error.reason, error.code, error.api, error.errmsg) == (
        reason,
        errcode,
        "auth/getuserinfo",
        "some message",
    )
    # -1 ("system busy") is asked once more too.
    retried = errcode in RETRY_ON_TOKEN_ERRORS or errcode == -1
    assert len(fake.calls("auth/getuserinfo")) == (2 if retried else 1)


def test_api_error_message_names_the_api_the_errcode_and_the_errmsg(
    fake: FakeWeCom, client: WeComClient
) -> None:
    fake.script("auth/getuserinfo", {"errcode": 40029, "errmsg": "invalid code"})
    with pytest.raises(WeComApiError) as caught:
        client.get_user_info(APP, "CODE")
    assert str(caught.value) == "WeCom auth/getuserinfo answered errcode 40029 (invalid code)"
    assert caught.value.detail == str(caught.value)


def test_api_error_message_keeps_200_characters_of_the_errmsg(
    fake: FakeWeCom, client: WeComClient
) -> None:
    errmsg = "no privilege to access/modify contact/party/agent , hint: [1584585651_79], " * 10
    fake.script("user/get", {"errcode": 60011, "errmsg": errmsg})
    with pytest.raises(WeComApiError) as caught:
        client.get_user(APP, "zhangsan")
    assert caught.value.errmsg == errmsg[:200]
    assert str(caught.value).endswith(f"({errmsg[:200]})")


@pytest.mark.parametrize(
    ("errcode", "reason"),
    [(40013, "wecom.misconfigured"), (40001, "wecom.misconfigured"), (45009, "wecom.busy")],
)
def test_gettoken_errors_are_raised_without_retry_and_not_asked_again_at_once(
    fake: FakeWeCom, client: WeComClient, errcode: int, reason: str
) -> None:
    fake.script("gettoken", {"errcode": errcode, "errmsg": "refused"})
    with pytest.raises(WeComApiError) as caught:
        client.get_user(APP, "zhangsan")
    assert (caught.value.api, caught.value.code, caught.value.reason) == (
        "gettoken",
        errcode,
        reason,
    )
    assert len(fake.calls("gettoken")) == 1
    assert fake.calls("user/get") == []
    # A refused gettoken is remembered; a 45009 blocks the corporation.
    with pytest.raises(WeComApiError) as again:
        client.get_user(APP, "zhangsan")
    assert (again.value.code, again.value.reason) == (errcode, reason)
    assert len(fake.calls("gettoken")) == 1


def test_an_unknown_secret_is_misconfigured(fake: FakeWeCom, client: WeComClient) -> None:
    with pytest.raises(WeComApiError) as caught:
        client.access_token(WeComApp(APP.corp_id, APP.agent_id, "wrong"))
    assert (caught.value.code, caught.value.reason) == (40001, "wecom.misconfigured")


@pytest.mark.parametrize(
    "answer",
    [
        {"errcode": 0, "errmsg": "ok"},
        {"errcode": 0, "errmsg": "ok", "access_token": "", "expires_in": 7200},
        {"errcode": 0, "errmsg": "ok", "access_token": "tok", "expires_in": "7200"},
    ],
)
def test_gettoken_without_a_token_is_unavailable(
    fake: FakeWeCom, client: WeComClient, answer: dict[str, Any]
) -> None:
    fake.script("gettoken", answer)
    with pytest.raises(WeComUnavailableError) as caught:
        client.access_token(APP)
    assert (caught.value.api, caught.value.reason) == ("gettoken", "wecom.unavailable")


# --- transport failures -------------------------------------------------------------------------


TIMEOUTS = [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout]


@pytest.mark.parametrize("timeout", TIMEOUTS)
@pytest.mark.parametrize("api", ["gettoken", "user/get"])
def test_timeouts_are_unavailable_with_reason_timeout(
    fake: FakeWeCom, client: WeComClient, timeout: type[httpx.TimeoutException], api: str
) -> None:
    fake.script(api, _raising(timeout))
    with pytest.raises(WeComUnavailableError) as caught:
        client.get_user(APP, "zhangsan")
    assert isinstance(caught.value, UpstreamUnavailableError)
    assert (caught.value.api, caught.value.reason) == (api, "wecom.timeout")
    assert f"timed out ({timeout.__name__}) after " in str(caught.value)


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.RemoteProtocolError])
def test_connection_errors_are_unavailable(
    fake: FakeWeCom, client: WeComClient, error: type[httpx.TransportError]
) -> None:
    fake.script("user/get", _raising(error))
    with pytest.raises(WeComUnavailableError) as caught:
        client.get_user(APP, "zhangsan")
    assert (caught.value.api, caught.value.reason) == ("user/get", "wecom.unavailable")
    assert isinstance(caught.value.__cause__, error)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(500, json={"errcode": -1, "errmsg": "system busy"}),
        httpx.Response(302, headers={"Location": "https://elsewhere.example/"}),
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.Response(200, content=b"\xff\xfe not utf-8"),
        httpx.Response(200, json=["errcode", 0]),
        httpx.Response(200, json={"errmsg": "ok", "userid": "zhangsan"}),
        httpx.Response(200, json={"errcode": "0", "errmsg": "ok"}),
        httpx.Response(200, json={"errcode": None}),
    ],
    ids=["502", "500-json", "302", "html", "bad-bytes", "array", "no-errcode", "str", "null"],
)
def test_answers_that_are_not_wecom_json_are_unavailable(
    fake: FakeWeCom, client: WeComClient, response: httpx.Response
) -> None:
    fake.script("user/get", response)
    with pytest.raises(WeComUnavailableError) as caught:
        client.get_user(APP, "zhangsan")
    assert (caught.value.api, caught.value.reason) == ("user/get", "wecom.unavailable")
    assert len(fake.calls("user/get")) == 1  # a redirect is not followed


def test_http_status_is_in_the_message(fake: FakeWeCom, client: WeComClient) -> None:
    fake.script("user/get", httpx.Response(502))
    with pytest.raises(WeComUnavailableError, match=r"^WeCom user/get answered HTTP 502 after"):
        client.get_user(APP, "zhangsan")


# --- the APIs -----------------------------------------------------------------------------------


def test_get_user_info_of_a_member(fake: FakeWeCom, client: WeComClient) -> None:
    info = client.get_user_info(APP, "CODE")
    assert info["userid"] == "ZhangSan"
    assert info["user_ticket"] == "TICKET"
    [request] = fake.calls("auth/getuserinfo")
    assert request.method == "GET"
    assert dict(request.url.params) == {"access_token": "tok-1", "code": "CODE"}


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        (
            {"UserId": "ZhangSan", "DeviceId": "dev-1", "user_ticket": "T", "expires_in": 1800},
            {"userid": "ZhangSan", "deviceid": "dev-1", "user_ticket": "T", "expires_in": 1800},
        ),
        ({"OpenId": "oAbC", "DeviceId": ""}, {"openid": "oAbC", "deviceid": ""}),
        ({"openid": "o1", "external_userid": "wm1"}, {"openid": "o1", "external_userid": "wm1"}),
    ],
)
def test_get_user_info_gives_legacy_keys_in_lower_case(
    fake: FakeWeCom, client: WeComClient, legacy: dict[str, Any], expected: dict[str, Any]
) -> None:
    fake.script("auth/getuserinfo", {"errcode": 0, "errmsg": "ok", **legacy})
    info = client.get_user_info(APP, "CODE")
    assert info == {"errcode": 0, "errmsg": "ok", **expected}


def test_get_user_detail_posts_the_ticket_as_json(fake: FakeWeCom, client: WeComClient) -> None:
    detail = client.get_user_detail(APP, "TICKET/+=")
    assert (detail["userid"], detail["gender"]) == ("lisi", "1")
    [request] = fake.calls("auth/getuserdetail")
    assert request.method == "POST"
    assert dict(request.url.params) == {"access_token": "tok-1"}
    assert json.loads(request.content) == {"user_ticket": "TICKET/+="}


def test_get_user(fake: FakeWeCom, client: WeComClient) -> None:
    assert client.get_user(APP, "zhangsan")["name"] == "张三"
    [request] = fake.calls("user/get")
    assert dict(request.url.params) == {"access_token": "tok-1", "userid": "zhangsan"}


#: An agent/get answer as WeCom's doc shows it.
AGENT = {
    "errcode": 0,
    "errmsg": "ok",
    "agentid": 1000002,
    "name": "登录助手",
    "allow_userinfos": {"user": [{"userid": "zhangshan"}]},
    "allow_partys": {"partyid": [1]},
    "allow_tags": {"tagid": []},
    "close": 0,
    "redirect_domain": "iam.example.com",
}


def test_get_agent_asks_agent_get_for_the_apps_agent_id(
    fake: FakeWeCom, client: WeComClient
) -> None:
    fake.script("agent/get", AGENT)
    assert client.get_agent(APP)["redirect_domain"] == "iam.example.com"
    [request] = fake.calls("agent/get")
    assert request.method == "GET"
    assert dict(request.url.params) == {"access_token": "tok-1", "agentid": "1000002"}


def test_get_agent_refused_for_the_callers_address_is_60020(
    fake: FakeWeCom, client: WeComClient
) -> None:
    errmsg = (
        "not allow to access from your ip, hint: [1700000000_12_abc], from ip: 203.0.113.9, "
        "more info at https://open.work.weixin.qq.com/devtool/query?e=60020"
    )
    fake.script("agent/get", {"errcode": 60020, "errmsg": errmsg})
    with pytest.raises(WeComApiError) as caught:
        client.get_agent(APP)
    assert (caught.value.code, caught.value.reason) == (60020, "wecom.ip_not_trusted")
    assert "from ip: 203.0.113.9" in caught.value.errmsg


def test_get_department_gives_the_department_object(fake: FakeWeCom, client: WeComClient) -> None:
    assert client.get_department(APP, 2) == {"id": 2, "name": "广州研发中心", "parentid": 1}
    assert fake.calls("department/get")[0].url.params["id"] == "2"


def test_get_department_without_a_department_is_unavailable(
    fake: FakeWeCom, client: WeComClient
) -> None:
    fake.script("department/get", {"errcode": 0, "errmsg": "ok"})
    with pytest.raises(WeComUnavailableError) as caught:
        client.get_department(APP, 2)
    assert caught.value.api == "department/get"


def test_parameters_are_url_encoded(fake: FakeWeCom, client: WeComClient) -> None:
    client.get_user(APP, "a b&userid=admin#x")
    client.get_user_info(APP, "c0de+/=&access_token=mine")
    user_get, user_info = fake.calls("user/get")[0], fake.calls("auth/getuserinfo")[0]
    assert user_get.url.params.get_list("userid") == ["a b&userid=admin#x"]
    assert b"userid=a+b%26userid%3Dadmin%23x" in user_get.url.query
    assert user_info.url.params.get_list("code") == ["c0de+/=&access_token=mine"]
    assert user_info.url.params.get_list("access_token") == ["tok-1"]


def test_api_base_may_be_a_path_prefix(fake: FakeWeCom, http: httpx.Client) -> None:
    simulator = WeComClient("http://127.0.0.1:8000/_sim/wecom", http, MemoryTokenCache())
    simulator.access_token(APP)
    assert str(fake.requests[0].url).startswith(
        "http://127.0.0.1:8000/_sim/wecom/cgi-bin/gettoken?"
    )


# --- nothing secret in messages or logs ---------------------------------------------------------


def test_failures_are_logged_with_api_errcode_and_elapsed_ms(
    fake: FakeWeCom, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="iam.wecom")
    fake.script(
        "user/get", {"errcode": 60011, "errmsg": "no privilege"}, _raising(httpx.ReadTimeout)
    )
    for _ in range(2):
        with pytest.raises(WeComApiError if not caplog.records else WeComUnavailableError):
            client.get_user(APP, "zhangsan")
    messages = [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert re.fullmatch(
        r"WeCom user/get answered errcode 60011 after \d+ ms \(no privilege\)", messages[0]
    )
    assert re.fullmatch(
        r"WeCom user/get failed after \d+ ms: timed out \(ReadTimeout\)", messages[1]
    )


def test_no_secret_token_code_or_ticket_in_errors_or_logs(
    fake: FakeWeCom, client: WeComClient, caplog: pytest.LogCaptureFixture
) -> None:
    """WeCom is made to echo everything it was sent, in every way a call can fail."""
    caplog.set_level(logging.DEBUG)

    def echo(request: httpx.Request) -> httpx.Response:
        sent = f"{request.url} {request.content.decode()}"
        return httpx.Response(200, json={"errcode": 60011, "errmsg": sent})

    def echo_error(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url} {request.content.decode()}")

    fake.script("gettoken", echo, echo_error)
    code, ticket = "THE-CODE-123", "THE-TICKET-456"
    errors: list[Exception] = []
    for _ in range(2):  # fetch_token: access_token would remember the first refusal
        with pytest.raises(WeComApiError if not errors else WeComUnavailableError) as caught:
            client.fetch_token(APP)
        errors.append(caught.value)
    token = client.access_token(APP)
    fake.script("auth/getuserinfo", echo, *[{"errcode": 42001, "errmsg": "expired"}] * 2)
    fake.script("auth/getuserdetail", echo_error, echo)
    fake.script("user/get", _raising(httpx.ReadTimeout))
    calls: list[Callable[[], object]] = [
        lambda: client.get_user_info(APP, code),
        lambda: client.get_user_info(APP, code),
        lambda: client.get_user_detail(APP, ticket),
        lambda: client.get_user_detail(APP, ticket),
        lambda: client.get_user(APP, "zhangsan"),
    ]
    for call in calls:
        with pytest.raises((WeComApiError, WeComUnavailableError)) as caught:
            call()
        errors.append(caught.value)
    live_token = fake.calls("auth/getuserdetail")[-1].url.params["access_token"]
    texts = [text for error in errors for text in (str(error), repr(error), error.detail)]
    # httpx's own INFO line carries the whole URL; the log configuration must silence it.
    ours = [
        record for record in caplog.records if not record.name.startswith(("httpx", "httpcore"))
    ]
    assert len(ours) >= len(errors)
    texts += [record.getMessage() for record in ours]
    for value in (SECRET, token, live_token, code, ticket):
        for form in (value, quote(value, safe=""), quote_plus(value)):
            assert not [text for text in texts if form in text], form


# --- quota and failure safety, against the simulator (issue 14 section 3) ------------------------

SIM_A, SIM_B = demo_corps()[:2]
SIM_APP_A = WeComApp(SIM_A.corp_id, SIM_A.agent_id, SIM_A.secret)
SIM_APP_B = WeComApp(SIM_B.corp_id, SIM_B.agent_id, SIM_B.secret)
WRONG_SECRET_A = WeComApp(SIM_A.corp_id, SIM_A.agent_id, "not-the-secret")


@pytest.fixture
def simulator() -> WeComSimulator:
    return WeComSimulator(demo_corps())


@pytest.fixture
def sim_client(
    simulator: WeComSimulator, clock: Clock, sleeps: list[float]
) -> Iterator[WeComClient]:
    with TestClient(simulator.app, base_url=API_BASE) as http:
        yield WeComClient(API_BASE, http, MemoryTokenCache(), clock=clock, sleep=sleeps.append)


def test_a_wrong_secret_asks_gettoken_once_per_window(
    simulator: WeComSimulator, sim_client: WeComClient, clock: Clock
) -> None:
    for _ in range(50):  # fifty logins
        with pytest.raises(WeComApiError) as caught:
            sim_client.access_token(WRONG_SECRET_A)
        assert (caught.value.api, caught.value.code) == ("gettoken", 40001)
        assert caught.value.reason == "wecom.misconfigured"
    assert simulator.calls["gettoken"] == 1
    clock.now += REFUSED_TOKEN_TTL - 0.1
    with pytest.raises(WeComApiError):
        sim_client.access_token(WRONG_SECRET_A)
    assert simulator.calls["gettoken"] == 1
    clock.now += 0.1  # the window is over: WeCom is asked again, once
    for _ in range(10):
        with pytest.raises(WeComApiError):
            sim_client.access_token(WRONG_SECRET_A)
    assert simulator.calls["gettoken"] == 2


def test_the_remembered_refusal_repeats_the_errmsg_not_the_secret(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    with pytest.raises(WeComApiError) as first:
        sim_client.access_token(WRONG_SECRET_A)
    with pytest.raises(WeComApiError) as second:
        sim_client.access_token(WRONG_SECRET_A)
    assert second.value is not first.value
    assert (second.value.code, second.value.errmsg, str(second.value)) == (
        first.value.code,
        first.value.errmsg,
        str(first.value),
    )
    assert "not-the-secret" not in str(second.value)


def test_a_changed_secret_is_tried_at_once(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    with pytest.raises(WeComApiError):
        sim_client.access_token(WRONG_SECRET_A)
    assert sim_client.access_token(SIM_APP_A)  # the fixed configuration
    assert simulator.calls["gettoken"] == 2


def test_fetch_token_bypasses_and_clears_the_remembered_refusal(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    simulator.fail_next("gettoken", 40001, "invalid credential")
    with pytest.raises(WeComApiError):
        sim_client.access_token(SIM_APP_A)
    with pytest.raises(WeComApiError):
        sim_client.access_token(SIM_APP_A)
    assert simulator.calls["gettoken"] == 1
    assert sim_client.fetch_token(SIM_APP_A) > 0  # the admin's connection test asks WeCom
    assert simulator.calls["gettoken"] == 2
    assert sim_client.access_token(SIM_APP_A)  # and logins work again at once
    assert simulator.calls["gettoken"] == 3


def test_a_failed_fetch_token_is_remembered_for_logins(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    for _ in range(2):
        with pytest.raises(WeComApiError):
            sim_client.fetch_token(WRONG_SECRET_A)
    assert simulator.calls["gettoken"] == 2  # never answered from the memory
    with pytest.raises(WeComApiError):
        sim_client.access_token(WRONG_SECRET_A)
    assert simulator.calls["gettoken"] == 2


def test_system_busy_is_asked_once_more_after_a_short_pause(
    simulator: WeComSimulator, sim_client: WeComClient, sleeps: list[float]
) -> None:
    sim_client.access_token(SIM_APP_A)
    simulator.fail_next("user_get", -1, "system busy")
    assert sim_client.get_user(SIM_APP_A, "lisi")["userid"] == "lisi"
    assert simulator.calls["user_get"] == 2
    assert sleeps == [BUSY_RETRY_PAUSE] == [0.2]


def test_system_busy_twice_is_raised(
    simulator: WeComSimulator, sim_client: WeComClient, sleeps: list[float]
) -> None:
    sim_client.access_token(SIM_APP_A)
    simulator.fail_next("user_get", -1, "system busy", times=2)
    with pytest.raises(WeComApiError) as caught:
        sim_client.get_user(SIM_APP_A, "lisi")
    assert (caught.value.code, caught.value.reason) == (-1, "wecom.busy")
    assert simulator.calls["user_get"] == 2
    assert sleeps == [BUSY_RETRY_PAUSE]


def test_system_busy_on_gettoken_is_retried_and_not_remembered(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    simulator.fail_next("gettoken", -1, "system busy", times=2)
    with pytest.raises(WeComApiError) as caught:
        sim_client.access_token(SIM_APP_A)
    assert caught.value.code == -1
    assert simulator.calls["gettoken"] == 2
    assert sim_client.access_token(SIM_APP_A)  # busy says nothing about the secret
    assert simulator.calls["gettoken"] == 3


@pytest.mark.parametrize("errcode", [45009, 45033])
def test_a_frequency_limit_blocks_that_corporation_only(
    simulator: WeComSimulator, sim_client: WeComClient, clock: Clock, errcode: int
) -> None:
    sim_client.access_token(SIM_APP_B)
    simulator.fail_next("user_get", errcode, "api freq out of limit")
    with pytest.raises(WeComApiError) as caught:
        sim_client.get_user(SIM_APP_A, "lisi")
    assert not isinstance(caught.value, WeComBlockedError)  # WeCom's own answer
    calls = dict(simulator.calls)
    for call in (
        lambda: sim_client.get_user(SIM_APP_A, "lisi"),
        lambda: sim_client.get_user_info(SIM_APP_A, "CODE"),
    ):
        with pytest.raises(WeComBlockedError) as blocked:
            call()
        # Callers see the same errcode and reason as WeCom's own answer (the directory sync
        # waits it out, a login says "busy").
        assert (blocked.value.code, blocked.value.reason) == (errcode, "wecom.busy")
        assert SIM_A.corp_id in str(blocked.value)
    assert dict(simulator.calls) == calls  # WeCom was not asked
    assert sim_client.get_user(SIM_APP_B, "zs_b")["userid"] == "zs_b"  # another corporation


def test_a_frequency_block_ends_after_a_minute(
    simulator: WeComSimulator, sim_client: WeComClient, clock: Clock
) -> None:
    simulator.fail_next("user_get", 45009, "api freq out of limit")
    with pytest.raises(WeComApiError):
        sim_client.get_user(SIM_APP_A, "lisi")
    clock.now += FREQUENCY_BLOCK - 0.1
    with pytest.raises(WeComBlockedError) as blocked:
        sim_client.get_user(SIM_APP_A, "lisi")
    assert blocked.value.seconds_left == pytest.approx(0.1)
    clock.now += 0.1
    assert sim_client.get_user(SIM_APP_A, "lisi")["userid"] == "lisi"
    assert simulator.calls["user_get"] == 2


def test_a_frequency_limit_on_gettoken_blocks_the_corporation(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    simulator.fail_next("gettoken", 45009, "api freq out of limit")
    with pytest.raises(WeComApiError):
        sim_client.access_token(SIM_APP_A)
    with pytest.raises(WeComBlockedError):
        sim_client.access_token(SIM_APP_A)
    assert simulator.calls["gettoken"] == 1


def test_the_memories_are_shared_safely_between_threads(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    def login() -> str:
        try:
            sim_client.access_token(WRONG_SECRET_A)
        except WeComApiError as error:
            return str(error.code)
        return "token"

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: login(), range(200)))
    assert set(answers) == {"40001"}
    # The token cache lets one fetch run at a time per key; the rest see the memory.
    assert simulator.calls["gettoken"] <= 2


def test_fetch_token_asks_wecom_during_a_frequency_block(
    simulator: WeComSimulator, sim_client: WeComClient
) -> None:
    simulator.fail_next("user_get", 45009, "api freq out of limit")
    with pytest.raises(WeComApiError):
        sim_client.get_user(SIM_APP_A, "lisi")
    assert sim_client.fetch_token(SIM_APP_A) > 0  # the admin sees WeCom's own answer
    assert sim_client.get_user(SIM_APP_A, "lisi")["userid"] == "lisi"  # and the block is over
