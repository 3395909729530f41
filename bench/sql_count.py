#!/usr/bin/env python3
"""SQL statements per request of one silent-SSO flow, counted in-process.

Builds the app from IAM_* (a migrated database, seeded by bench/seed.py), drives one flow
(authorize -> token -> userinfo) and one client_credentials grant through httpx's ASGI
transport, and prints, per request, the statements SQLAlchemy sent (an event listener on every
Engine) and those the hot path ran on the driver's cursor (`iam.db.prepared`, which engine events
do not see: its `_run` is wrapped here; nothing under iam/ changes). Tracing is off while the app starts and the keys load.

Usage: IAM_DATABASE_URL=sqlite:///bench/var/sql.db .venv/bin/python bench/sql_count.py [-v]
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import event
from sqlalchemy.engine import Engine

from iam import settings as iam_settings
from iam.app import create_app
from iam.db import prepared

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authorization import authorization_query  # noqa: E402

TRACE: list[str] = []
ON = False


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
    if ON:
        TRACE.append(re.sub(r"\s+", " ", statement)[:110])


_run_on_cursor = prepared._run


def _count_prepared(connection, compiled, parameters):  # noqa: ANN001, ANN202
    _count(connection, None, compiled.sql, parameters, None, False)
    return _run_on_cursor(connection, compiled, parameters)


prepared._run = _count_prepared


async def main(verbose: bool) -> int:
    global ON
    seeded = json.loads(
        subprocess.check_output([sys.executable, str(Path(__file__).with_name("seed.py"))])
    )
    settings = iam_settings.load()
    app = create_app(settings)
    cid, secret, cookie = seeded["client_id"], seeded["client_secret"], seeded["session_cookie"]
    basic = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            await http.get("/jwks.json")  # loads the key ring (cached 10 s)

            async def step(name: str, coro):  # noqa: ANN001
                global ON
                TRACE.clear()
                ON = True
                response = await coro
                ON = False
                print(f"{name}: HTTP {response.status_code}, {len(TRACE)} SQL statements")
                if verbose:
                    for s in TRACE:
                        print("    ", s)
                return response

            for round_ in (1, 2):  # the second round shows the steady state
                print(f"-- round {round_}")
                query, verifier = authorization_query(cid)
                r = await step(
                    "GET /authorize",
                    http.get(f"/authorize?{query}", cookies={"iam_session": cookie}),
                )
                code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
                r = await step(
                    "POST /token (authorization_code)",
                    http.post(
                        "/token",
                        data={
                            "grant_type": "authorization_code",
                            "code": code,
                            "redirect_uri": "http://127.0.0.1:9/cb",
                            "code_verifier": verifier,
                        },
                        headers={"Authorization": basic},
                    ),
                )
                at = r.json()["access_token"]
                await step(
                    "GET /userinfo",
                    http.get("/userinfo", headers={"Authorization": f"Bearer {at}"}),
                )
                await step(
                    "POST /token (client_credentials)",
                    http.post(
                        "/token",
                        data={"grant_type": "client_credentials"},
                        headers={"Authorization": basic},
                    ),
                )
    ON = False
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main("-v" in sys.argv)))
