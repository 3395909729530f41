#!/usr/bin/env python3
"""Server CPU per request, endpoint by endpoint, with no concurrency (one request at a time).

Against a running server (seeded by bench/seed.py), sends N requests of one kind after another
and reads the server's CPU time (its process tree, /proc) around each batch:
  authorize (silent SSO, 302 with a code) -> token (those codes) -> userinfo -> client_credentials.
At concurrency 1 there is no lock or pool contention and no GIL convoy, so this is the floor
of each endpoint's CPU cost; the load runs (flows.py -c 16) show what contention adds.

Usage: bench/.venv/bin/python bench/endpoint_cost.py --base http://127.0.0.1:8100 --pid PID \
           --client-id ID --client-secret SECRET --cookie SESSION_COOKIE [-n 300] [--json FILE --label L]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authorization import authorization_query  # noqa: E402
from cpu import sample  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument(
        "--pid", type=int, required=True, help="server process (its children count too)"
    )
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--cookie", required=True)
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--json")
    ap.add_argument("--label", default="")
    ap.add_argument(
        "--profile-dir",
        help="py-spy each measured batch into DIR/<endpoint>.txt (collapsed stacks)",
    )
    ap.add_argument("--py-spy", default=str(Path(sys.executable).with_name("py-spy")))
    a = ap.parse_args()
    u = urlsplit(a.base)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    basic = "Basic " + base64.b64encode(f"{a.client_id}:{a.client_secret}".encode()).decode()

    def call(method: str, path: str, body: str | None = None, headers: dict | None = None):
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, r.headers, data

    results: dict[str, dict] = {}

    def batch(name: str, fn, n: int) -> list:
        out = []
        for _ in range(min(20, n)):  # warm this path up, unmeasured
            fn()
        spy = None
        if a.profile_dir:
            Path(a.profile_dir).mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    a.py_spy,
                    "record",
                    "--pid",
                    str(a.pid),
                    "--rate",
                    "500",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--duration",
                    "120",
                    "-o",
                    str(Path(a.profile_dir) / (re.sub(r"[^a-z]+", "-", name).strip("-") + ".txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached
        s0, p0 = sample(a.pid, "iam_bench")
        t0 = time.perf_counter()
        for _ in range(n):
            out.append(fn())
        wall = time.perf_counter() - t0
        s1, p1 = sample(a.pid, "iam_bench")
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        results[name] = {
            "n": n,
            "server_cpu_ms": round(1000 * (s1 - s0) / n, 3),
            "postgres_cpu_ms": round(1000 * (p1 - p0) / n, 3),
            "wall_ms": round(1000 * wall / n, 3),
        }
        print(
            f"  {name:22s} server CPU {results[name]['server_cpu_ms']:6.2f} ms/req"
            f"  postgres {results[name]['postgres_cpu_ms']:5.2f}  wall {results[name]['wall_ms']:6.2f} ms/req"
        )
        return out

    def authorize():
        q, verifier = authorization_query(a.client_id)
        status, headers, body = call(
            "GET", f"/authorize?{q}", headers={"Cookie": f"iam_session={a.cookie}"}
        )
        if status != 302:
            raise SystemExit(f"authorize: HTTP {status} {body[:200]!r}")
        return parse_qs(urlsplit(headers["Location"]).query)["code"][0], verifier

    print(f"endpoint_cost: {a.base}, n={a.n} each, one request at a time")
    codes = batch("authorize", authorize, a.n)
    pending = list(codes)
    tokens = []

    def token():
        code, verifier = pending.pop()
        status, _, body = call(
            "POST",
            "/token",
            urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "http://127.0.0.1:9/cb",
                    "code_verifier": verifier,
                }
            ),
            {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise SystemExit(f"token: HTTP {status} {body[:200]!r}")
        tokens.append(json.loads(body)["access_token"])

    # the warm-up of `token` needs codes of its own
    pending.extend(authorize() for _ in range(min(20, a.n)))
    batch("token (code)", token, a.n)
    at = tokens[-1]

    def userinfo():
        status, _, body = call("GET", "/userinfo", headers={"Authorization": f"Bearer {at}"})
        if status != 200:
            raise SystemExit(f"userinfo: HTTP {status} {body[:200]!r}")

    batch("userinfo", userinfo, a.n)

    def client_credentials():
        status, _, body = call(
            "POST",
            "/token",
            "grant_type=client_credentials",
            {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise SystemExit(f"client_credentials: HTTP {status} {body[:200]!r}")

    batch("token (client_cred.)", client_credentials, a.n)

    def discovery():
        call("GET", "/.well-known/openid-configuration")

    batch("discovery (floor)", discovery, a.n)
    flow = sum(results[k]["server_cpu_ms"] for k in ("authorize", "token (code)", "userinfo"))
    print(f"  => one flow (authorize + token + userinfo): {flow:.2f} ms server CPU")
    if a.json:
        with open(a.json, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "endpoint_cost": {
                            "label": a.label,
                            "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "per_request": results,
                            "flow_ms": round(flow, 3),
                        }
                    }
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
