"""iam/oidc/requests.py: the snapshot Authlib reads, and the posted form it is made from."""

from __future__ import annotations

import asyncio

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from iam.oidc.requests import MAX_FORM_FIELDS, snapshot

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
