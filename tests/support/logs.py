"""The server's log output, captured in a buffer."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Callable, Iterator

import pytest

from iam.logs import log_config


@pytest.fixture
def server_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], io.StringIO]]:
    """The server's own log configuration (`iam.logs.log_config`) in a format, writing to a
    buffer instead of stderr; the root logger is restored after the test."""
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
