"""Live servers for tests that need real HTTP on loopback (a browser, a Node RP, a demo app):
each ASGI app under its own uvicorn, in a thread, on a port chosen free."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import uvicorn
from starlette.types import ASGIApp


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all held open while chosen, so none is picked twice)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@contextmanager
def serving(apps: dict[int, ASGIApp]) -> Iterator[None]:
    """Each app under its own uvicorn on its port, started together and stopped together."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        for port, app in apps.items()
    ]
    threads = [threading.Thread(target=server.run, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while not all(server.started for server in servers):
            assert time.monotonic() < deadline, "a server did not start"
            assert all(thread.is_alive() for thread in threads), "a server stopped at start"
            time.sleep(0.02)
        yield
    finally:
        for server in servers:
            server.should_exit = True
        for thread in threads:
            thread.join(timeout=10)
