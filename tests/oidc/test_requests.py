"""iam/oidc/requests.py: the snapshot Authlib reads, the posted form it is made from, and the
hygiene of Basic client credentials (and the 401 the server answers when they cannot be read)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.testclient import TestClient

from iam.oidc.requests import MAX_FORM_FIELDS, readable_basic_credentials, snapshot
from iam.oidc.server import UNREADABLE_CREDENTIALS as UNREADABLE

ISSUER = "https://iam.example"


def posted(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> Request:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/token",
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode())],
    }
    return Request(scope, receive)


def form_of(request: Request) -> dict[str, str]:
    return asyncio.run(snapshot(request, ISSUER)).form


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=x&scope=%E5%BC%A0+%E4%B8%89&empty=",
        "grant_type=x&scope=张 三&empty=".encode(),
        "grant_type=x&scope=张+三&empty=".encode(),
    ],
)
def test_urlencoded_values_are_utf8_escaped_or_not_and_blanks_are_kept(body: bytes) -> None:
    assert form_of(posted(body)) == {"grant_type": "x", "scope": "张 三", "empty": ""}


def test_the_first_of_repeated_fields_is_the_value() -> None:
    assert form_of(posted(b"scope=a&scope=b"))["scope"] == "a"


def test_a_charset_parameter_does_not_change_the_reader() -> None:
    body, kind = b"a=1", "application/x-www-form-urlencoded; charset=utf-8"
    assert form_of(posted(body, kind)) == {"a": "1"}


def test_too_many_fields_is_a_400() -> None:
    body = "&".join(f"f{i}=1" for i in range(MAX_FORM_FIELDS + 1)).encode()
    with pytest.raises(HTTPException) as refused:
        form_of(posted(body))
    assert refused.value.status_code == 400


def test_a_multipart_form_is_read_too() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n'
    assert form_of(posted(body, "multipart/form-data; boundary=b")) == {"a": "1"}


# --- HTTP Basic client credentials ----------------------------------------------------------


def basic(raw: bytes) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer x"},
        {"authorization": "Basic !!!"},  # Authlib reads it as no credentials
        basic(b"client:secret"),
        basic(b"%E5%BC%A0:s%20ecret"),
        basic("张三:secret".encode()),
        basic(b"client-without-colon"),
    ],
)
def test_basic_credentials_that_read_as_text_are_readable(headers: dict[str, str]) -> None:
    assert readable_basic_credentials(Headers(headers=headers))


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Basic /w=="},  # base64 of 0xFF, not UTF-8
        basic(b"\xff:\xfe"),
        basic(b"client\x00:secret"),
        basic(b"client%00:secret"),  # Authlib percent-decodes
        basic(b"client:sec%0Aret"),
        basic(b"client:sec\tret"),
    ],
)
def test_basic_credentials_with_bytes_or_control_characters_are_not(
    headers: dict[str, str],
) -> None:
    assert not readable_basic_credentials(Headers(headers=headers))


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
@pytest.mark.parametrize(
    "authorization", ["Basic /w==", "Basic " + base64.b64encode(b"zq%00zq:s").decode()]
)
def test_unreadable_basic_credentials_are_a_401_with_a_fixed_description(
    client: TestClient, path: str, authorization: str
) -> None:
    """RFC 6749 5.2: a client that tried the Authorization header gets 401 and a Basic
    challenge; the description never repeats what was sent (nor fails to be built)."""
    form = {"grant_type": "client_credentials", "token": "t"}
    answer = client.post(path, data=form, headers={"authorization": authorization})
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": "invalid_client", "error_description": UNREADABLE}
    assert answer.headers["www-authenticate"].startswith('Basic error="invalid_client"')
    assert "zq" not in answer.text
