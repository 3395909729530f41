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


def _held(port: int) -> socket.socket | None:
    """A socket bound to `port` (free now), or None when it is taken."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def free_base_port(tries: int = 20) -> int:
    """A free port whose next two are free as well (the demo apps go on port+1 and port+2)."""
    for _ in range(tries):
        with ExitStack() as stack:
            base = stack.enter_context(socket.socket())
            base.bind(("127.0.0.1", 0))
            port = int(base.getsockname()[1])
            if port + 2 > 65535:
                continue
            held = [_held(port + 1), _held(port + 2)]
            for sock in held:
                if sock is not None:
                    stack.enter_context(sock)
            if all(held):
                return port
    raise RuntimeError("no three consecutive free ports on 127.0.0.1")


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
