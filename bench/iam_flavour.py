#!/usr/bin/env python3
"""flows.py (the shared bench-peer load driver) with one more flavour: "our-iam".

Our server, given an SSO session that already exists, answers `GET /authorize` with one 302
straight to the client's redirect_uri carrying the code (silent SSO, no login page). The
flavour puts the session cookie into the flow's Browser jar before the first request; the
cookie value travels in the driver's `--password` option (`--username` is unused).

Usage: python bench/iam_flavour.py <the same arguments as flows.py>, e.g.
    bench/.venv/bin/python bench/iam_flavour.py check --base http://127.0.0.1:8100 \
        --flavour our-iam --client-id ID --client-secret SECRET --password SESSION_COOKIE

The bench-peer directory is `$BENCH_PEER_DIR`, by default `../shared/bench-peer` next to the
repository root. It is imported, never copied.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = Path(
    os.environ.get("BENCH_PEER_DIR") or REPO_ROOT / ".." / "shared" / "bench-peer"
).resolve()
if not (PEER_DIR / "flows.py").is_file():
    raise SystemExit(f"flows.py not found in {PEER_DIR} (set BENCH_PEER_DIR)")
sys.path.insert(0, str(PEER_DIR))

import flows  # noqa: E402  (after the sys.path change above)

SESSION_COOKIE = "iam_session"


@flows.flavour("our-iam")
async def code_for_our_iam(b: flows.Browser, authorize_url: str, fc: flows.FlowCtx) -> str:
    """Silent SSO: the session cookie goes in first; /authorize then redirects to ?code=."""
    b.jar.c[SESSION_COOKIE] = (fc.password, "/")
    return await b.follow(*(await b.get(authorize_url)), fc)


if __name__ == "__main__":
    sys.exit(flows.main())
