"""iam/edge.py: unreadable input (NUL, control characters, percent-escapes that are not UTF-8)
is refused before any handler, in JSON at the protocol endpoints and with the error page on
pages, without repeating it; readable input goes on unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from support.constants import ISSUER
from support.world import World

from iam.edge import DESCRIPTION
from iam.web import MAX_BODY_BYTES

FORM = {"content-type": "application/x-www-form-urlencoded"}
REFUSED = {"error": "invalid_request", "error_description": DESCRIPTION}


@pytest.fixture
def browser(app) -> Iterator[TestClient]:
    with TestClient(
        app, base_url=ISSUER, follow_redirects=False, raise_server_exceptions=False
    ) as test_client:
        yield test_client


def _refused_page(answer, lang_text: str = "not allowed") -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert lang_text in answer.text
    assert "zq" not in answer.text  # neither the value nor the query it came in


@pytest.mark.parametrize("value", ["zq%00zq", "zq%FFzq", "zq%C3%28zq", "zq%E4%B8zq", "zq%7Fzq"])
def test_a_protocol_endpoint_refuses_unreadable_query_values_in_json(
    browser: TestClient, value: str
) -> None:
    answer = browser.get(f"/userinfo?access_token={value}")
    assert answer.status_code == 400
    assert answer.json() == REFUSED
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("value", ["zq%00zq", "zq%09zq", "zq%0D%0Azq", "zq%FFzq"])
def test_a_protocol_form_body_with_unreadable_values_is_refused(
    browser: TestClient, value: str
) -> None:
    body = f"grant_type=client_credentials&scope={value}".encode()
    answer = browser.post("/token", content=body, headers=FORM)
    assert (answer.status_code, answer.json()) == (400, REFUSED)


def test_a_raw_byte_that_is_not_utf8_in_a_body_is_refused(browser: TestClient) -> None:
    answer = browser.post("/token", content=b"grant_type=zq\xffzq", headers=FORM)
    assert (answer.status_code, answer.json()) == (400, REFUSED)


def test_a_multipart_body_with_a_nul_is_refused(browser: TestClient) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="client_id"\r\n\r\nzq\x00zq\r\n--b--\r\n'
    headers = {"content-type": "multipart/form-data; boundary=b"}
    answer = browser.post("/token", content=body, headers=headers)
    assert (answer.status_code, answer.json()) == (400, REFUSED)


def test_a_page_refuses_with_the_error_page_in_the_language_asked(browser: TestClient) -> None:
    _refused_page(browser.get("/login?flow=zq%00zq", headers={"accept-language": "en"}))
    _refused_page(browser.get("/login?flow=zq%00zq&lang=zh-CN"), "请求中含有不允许的字符")


@pytest.mark.parametrize("path", ["/flow/zq%00zq", "/login/wecom/zq%0Azq", "/callback/wecom/zq%FF"])
def test_control_characters_and_bad_escapes_in_a_path_are_refused(
    browser: TestClient, path: str
) -> None:
    _refused_page(browser.get(path))


def test_a_page_form_has_no_use_for_lines(browser: TestClient) -> None:
    body = b"csrf_token=x&phone=zq%0D%0Azq"
    _refused_page(browser.post("/login/otp", content=body, headers=FORM))


def test_a_nul_in_a_header_is_refused(browser: TestClient) -> None:
    answer = browser.get("/userinfo", headers={"authorization": "Bearer zq\x00zq"})
    assert (answer.status_code, answer.json()) == (400, REFUSED)


@pytest.mark.usefixtures("reused_signing_key")
def test_readable_input_goes_on_unchanged_even_in_pieces(browser: TestClient, world: World) -> None:
    """A body sent in several chunks is read here and handed on whole."""
    client = world.rp.client
    chunks = [
        b"grant_type=client_",
        f"credentials&client_id={client.client_id}&client_secret=".encode(),
        f"{world.rp.client_secret}".encode(),
    ]
    answer = browser.post("/token", content=iter(chunks), headers=FORM)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "Bearer"


def test_a_body_past_the_limit_is_still_too_large(browser: TestClient) -> None:
    """Chunked, so no Content-Length announces it: the body limit stops it while it is read."""
    chunks = [b"grant_type=", b"a" * (MAX_BODY_BYTES + 1)]
    answer = browser.post("/token", content=iter(chunks), headers=FORM)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "invalid_request"
