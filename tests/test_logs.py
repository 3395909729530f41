from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from iam.logs import log_config


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch):
    """Apply a log config with stderr swapped for a buffer; restore the root logger after."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def apply(log_format: str) -> io.StringIO:
        monkeypatch.setattr("sys.stderr", stream)
        logging.config.dictConfig(log_config(log_format))
        return stream

    yield apply
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_level_logger_and_message(captured) -> None:
    stream = captured("json")
    logging.getLogger("iam").warning("code sent to %s", "+86138****8000")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["level"] == "warning"
    assert entry["logger"] == "iam"
    assert entry["message"] == "code sent to +86138****8000"
    assert entry["time"].endswith("+00:00")


def test_json_lines_keep_exceptions_and_chinese_text(captured) -> None:
    stream = captured("json")
    try:
        raise ValueError("坏了")
    except ValueError:
        logging.getLogger("iam").exception("登录失败")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["message"] == "登录失败"
    assert "ValueError: 坏了" in entry["exception"]


def test_uvicorn_access_log_goes_through_the_same_format(captured) -> None:
    stream = captured("json")
    logging.getLogger("uvicorn.access").info('%s - "%s %s"', "127.0.0.1", "GET", "/healthz")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["logger"] == "uvicorn.access"
    assert entry["message"] == '127.0.0.1 - "GET /healthz"'


def test_text_lines_are_not_json(captured) -> None:
    stream = captured("text")
    logging.getLogger("iam").info("hello")
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.endswith("INFO iam: hello")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_httpx_request_lines_are_not_logged(captured) -> None:
    """httpx logs each URL at INFO, and WeCom's URLs carry the app secret and access tokens."""
    stream = captured("json")
    logging.getLogger("httpx").info("HTTP Request: GET .../gettoken?corpsecret=s3cret")
    logging.getLogger("httpx").warning("connection pool is full")
    assert "s3cret" not in stream.getvalue()
    assert "connection pool is full" in stream.getvalue()
