from __future__ import annotations

import json
import logging
import logging.config

import pytest

from iam.logs import request_id_var


def test_json_lines_carry_level_logger_and_message(server_log) -> None:
    stream = server_log("json")
    logging.getLogger("iam").warning("code sent to %s", "+86138****8000")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["level"] == "warning"
    assert entry["logger"] == "iam"
    assert entry["message"] == "code sent to +86138****8000"
    assert entry["time"].endswith("+00:00")


def test_json_lines_keep_exceptions_and_chinese_text(server_log) -> None:
    stream = server_log("json")
    try:
        raise ValueError("坏了")
    except ValueError:
        logging.getLogger("iam").exception("登录失败")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["message"] == "登录失败"
    assert "ValueError: 坏了" in entry["exception"]


def test_uvicorn_access_lines_are_not_logged(server_log) -> None:
    """uvicorn's access line has the query string, and queries carry codes: `iam.access`
    (the telemetry middleware) logs requests instead, without their queries."""
    stream = server_log("json")
    logging.getLogger("uvicorn.access").info('"GET /callback/wecom/X?code=c0de"')
    logging.getLogger("uvicorn.error").info("Started server process")
    assert "c0de" not in stream.getvalue()
    assert "Started server process" in stream.getvalue()


def test_lines_carry_the_request_id_in_both_formats(server_log) -> None:
    stream = server_log("json")
    token = request_id_var.set("req-0123456789")
    try:
        logging.getLogger("iam").info("inside a request")
    finally:
        request_id_var.reset(token)
    logging.getLogger("iam").info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().strip().splitlines()[-2:])
    assert inside["request_id"] == "req-0123456789"
    assert outside["request_id"] == "-"
    stream = server_log("text")
    token = request_id_var.set("req-abcdef0123")
    try:
        logging.getLogger("iam").info("hello")
    finally:
        request_id_var.reset(token)
    assert "[req-abcdef0123]: hello" in stream.getvalue()


def test_text_lines_are_not_json(server_log) -> None:
    stream = server_log("text")
    logging.getLogger("iam").info("hello")
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.endswith("INFO iam [-]: hello")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_httpx_request_lines_are_not_logged(server_log) -> None:
    """httpx logs each URL at INFO, and WeCom's URLs carry the app secret and access tokens."""
    stream = server_log("json")
    logging.getLogger("httpx").info("HTTP Request: GET .../gettoken?corpsecret=s3cret")
    logging.getLogger("httpx").warning("connection pool is full")
    assert "s3cret" not in stream.getvalue()
    assert "connection pool is full" in stream.getvalue()


def test_text_lines_escape_what_could_start_a_line(server_log) -> None:
    """A value from a request (a path, a header) cannot write a line of its own."""
    stream = server_log("text")
    logging.getLogger("iam").info("path %s", "/a\nFAKE ERROR\r\x00\x7f\x85\u2028\\x0a 手机")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(r"path /a\x0aFAKE ERROR\x0d\x00\x7f\x85\u2028\x5cx0a 手机")


def test_text_lines_keep_the_lines_of_a_traceback(server_log) -> None:
    stream = server_log("text")
    try:
        raise ValueError("坏了")
    except ValueError:
        logging.getLogger("iam").exception("failed\non purpose")
    first, *traceback = stream.getvalue().splitlines()
    assert first.endswith(r"failed\x0aon purpose")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: 坏了"


def test_json_lines_escape_unicode_line_breaks(server_log) -> None:
    stream = server_log("json")
    logging.getLogger("iam").info("a\x85b\u2028c\u2029d\ne")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "a\x85b\u2028c\u2029d\ne"
