#!/usr/bin/env python3
"""Where the server's CPU goes, from py-spy's collapsed stacks (`py-spy record --format raw`).

Prints the share of samples (py-spy skips idle threads, so samples ~ CPU) by request kind
(authorize / token / userinfo ...), by layer (SQL, RSA, logging, ...), the top functions by
own time and the top functions of our own code (iam/) by inclusive time. With the flows/s of
the same run (`--flows-per-s`) and the server's busy cores, shares turn into ms per flow.

Usage: bench/.venv/bin/python bench/profile_summary.py bench/var/profile-sqlite-w1.txt \
           [--flows-per-s 120 --cores 1.0]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

#: (name, pattern on one frame): a stack counts for the first kind whose pattern one frame matches.
KINDS = [
    ("authorize: session lookup (sessions.find)", r"\bfind \(iam/services/sessions\.py"),
    ("authorize: validate + issue code (dispatch.decide)", r"\bdecide \(iam/flows/dispatch\.py"),
    ("token endpoint (Authlib token response)", r"\.create_(limited_)?token_response \("),
    ("userinfo endpoint", r"\.create_endpoint_response \("),
    ("other worker-thread work", r"WorkerThread\.run|Thread\._bootstrap"),
]
#: layers: a stack counts for every layer one of its frames matches (inclusive)
LAYERS = [
    ("SQLAlchemy (all DB work, incl. driver)", r"\(sqlalchemy/"),
    (
        "  DB driver execute/commit (sqlite3/psycopg)",
        r"\.do_(execute|commit|rollback|executemany) \(sqlalchemy/engine/default\.py",
    ),
    ("  ORM flush (INSERTs/UPDATEs)", r"Session\._?flush \(sqlalchemy/orm/session\.py"),
    ("  connection checkout/return (pool)", r"\(sqlalchemy/pool/"),
    ("joserfc (JWT encode/decode, incl. RSA)", r"\(joserfc/"),
    ("  RSA sign", r"\.sign \(joserfc/"),
    ("Authlib", r"\(authlib/"),
    ("logging (audit + access log lines)", r"\(logging/__init__\.py"),
    ("audit.record", r"\brecord \(iam/services/audit\.py"),
    ("telemetry / metrics", r"\(iam/(telemetry|metrics)\.py|\(prometheus_client/"),
    ("rate limits", r"\(iam/services/rate_limits\.py"),
    ("uvicorn + httptools (HTTP parse/write)", r"\(uvicorn/"),
    ("starlette (routing, middleware, responses)", r"\(starlette/"),
    (
        "in worker threads (anyio; everything run_in_threadpool/Runner runs)",
        r"WorkerThread\.run \(",
    ),
    (
        "event loop thread (main: uvicorn, middleware, handlers)",
        r"\(uvicorn/main\.py|\(uvicorn/server\.py",
    ),
    ("KeyRing.current (key reload every 10 s)", r"KeyRing\.current \("),
]

#: exclusive layers: a stack counts for the innermost frame that matches one of these
OWN_LAYERS = [
    ("RSA sign", r"\.sign \(joserfc/"),
    ("JWT other (joserfc)", r"\(joserfc/"),
    (
        "DB driver call (sqlite3/psycopg, incl. I/O)",
        r"\.do_(execute|commit|rollback|ping) \(sqlalchemy/engine/default\.py|\(psycopg/",
    ),
    ("pool checkout/return", r"\(sqlalchemy/pool/"),
    ("SQLAlchemy Python (ORM/Core)", r"\(sqlalchemy/|<sqlalchemy"),
    ("logging", r"\(logging/"),
    ("prometheus_client", r"\(prometheus_client/"),
    ("Authlib", r"\(authlib/"),
    ("iam code", r"\(iam/"),
    ("starlette (+ form parsing)", r"\(starlette/|multipart"),
    ("uvicorn/httptools", r"\(uvicorn/"),
    ("threads: anyio hand-off, locks, queues", r"\(anyio/|threading\.py|queue\.py"),
    ("asyncio/uvloop (native HTTP I/O)", r"\(asyncio/"),
]


def parse(path: str) -> list[tuple[list[str], int]]:
    """Collapsed stacks, one "f1;f2;... COUNT" record each; a frame's name may hold newlines
    (SQLAlchemy's generated code is named after its SQL), so records are joined until COUNT."""
    stacks, buf = [], ""
    for line in open(path, encoding="utf-8", errors="replace"):
        buf += line.rstrip("\n")
        m = re.search(r" (\d+)$", buf)
        if not m:
            buf += " "
            continue
        frames = [f.strip() for f in buf[: m.start()].split(";")]
        stacks.append((frames, int(m.group(1))))
        buf = ""
    return stacks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument(
        "--flows-per-s", type=float, help="operations/s during the profile (to get ms/op)"
    )
    ap.add_argument("--cores", type=float, default=1.0, help="server cores busy during the profile")
    ap.add_argument(
        "--cpu-ms", type=float, help="server CPU ms per operation (instead of --flows-per-s)"
    )
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    stacks = parse(a.path)
    total = sum(n for _, n in stacks) or 1
    ms_per_flow = a.cpu_ms or ((1000.0 * a.cores / a.flows_per_s) if a.flows_per_s else None)

    def show(title: str, counter: Counter, limit: int | None = None) -> None:
        print(f"\n{title}")
        for name, n in counter.most_common(limit):
            extra = f"  ~{ms_per_flow * n / total:.2f} ms/op" if ms_per_flow else ""
            print(f"  {100 * n / total:5.1f}%  {name}{extra}")

    print(f"{a.path}: {total} samples" + (f", {ms_per_flow:.2f} ms CPU/op" if ms_per_flow else ""))
    kinds: Counter = Counter()
    for frames, n in stacks:
        for name, pat in KINDS:
            if any(re.search(pat, f) for f in frames):
                kinds[name] += n
                break
        else:
            kinds["event loop thread (HTTP, routing, middleware)"] += n
    show("by request kind (exclusive):", kinds)
    layers: Counter = Counter()
    for frames, n in stacks:
        for name, pat in LAYERS:
            if any(re.search(pat, f) for f in frames):
                layers[name] += n
    print("\nby layer (inclusive, overlapping):")
    for name, _ in LAYERS:
        n = layers.get(name, 0)
        extra = f"  ~{ms_per_flow * n / total:.2f} ms/op" if ms_per_flow else ""
        print(f"  {100 * n / total:5.1f}%  {name}{extra}")
    excl: Counter = Counter()
    for frames, n in stacks:
        for f in reversed(frames):
            hit = next((name for name, pat in OWN_LAYERS if re.search(pat, f)), None)
            if hit:
                excl[hit] += n
                break
        else:
            excl["other / native"] += n
    show("by layer (exclusive: innermost matching frame):", excl)
    own: Counter = Counter(frames[-1] for frames, n in stacks for _ in range(n))
    show(f"top {a.top} functions by own time:", own, a.top)
    ours: Counter = Counter()
    for frames, n in stacks:
        for f in set(frames):
            if "(iam/" in f:
                ours[f] += n
    show(f"top {a.top} iam/ functions by inclusive time:", ours, a.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
