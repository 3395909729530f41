#!/usr/bin/env python3
"""CPU seconds (user+system, from /proc) of our server and of its PostgreSQL backends.

flows.py measures the server's own process tree; with PostgreSQL much of a flow's cost is in
the database's backend processes, which it does not see. run.sh samples both around each
flows.py invocation and stores their ratio, so that report.py can show "postgres CPU ms/op"
= server CPU ms/op x (postgres CPU / server CPU).

  cpu.py sample PID DBNAME          -> "SERVER_S PG_S PG_SESSIONS"
  cpu.py ratio BEFORE AFTER LABEL SCENARIO  -> one JSON line {"pg_cpu": {...}}

SERVER_S: PID and its descendants. PG_S: the live backends of DBNAME, plus what the postmaster
has reaped (cutime+cstime: backends that ended, e.g. connections the pool closed; this part
includes other databases' backends). PG_SESSIONS: pg_stat_database.sessions of DBNAME (psql),
i.e. how many connections were opened (and so backends forked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, children: bool = False) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of one process (or of its reaped children), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    i = 13 if children else 11
    return int(fields[1]), (int(fields[i]) + int(fields[i + 1])) / TICK


def pg_sessions(dbname: str) -> int:
    try:
        out = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atc",
                f"select sessions from pg_stat_database where datname = '{dbname}'",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return int(out or 0)
    except (OSError, ValueError, subprocess.SubprocessError):
        return -1


def sample(root: int, dbname: str) -> tuple[float, float]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    stats = {pid: s for pid in pids if (s := _stat(pid)) is not None}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    server = sum(stats[p][1] for p in tree if p in stats)
    pg = 0.0
    for pid, (_, cpu) in stats.items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("postgres: ") and f" {dbname} " in cmd:
            pg += cpu
        elif "postgres" in cmd.split("\0")[0] and " -D" in " " + cmd.replace(
            "\0", " "
        ):  # the postmaster
            reaped = _stat(pid, children=True)
            pg += reaped[1] if reaped else 0.0
    return server, pg


def main(argv: list[str]) -> int:
    if argv[:1] == ["sample"] and len(argv) == 3:
        server, pg = sample(int(argv[1]), argv[2])
        print(f"{server:.2f} {pg:.2f} {pg_sessions(argv[2])}")
        return 0
    if argv[:1] == ["ratio"] and len(argv) == 5:
        s0, p0, n0 = map(float, argv[1].split())
        s1, p1, n1 = map(float, argv[2].split())
        ds, dp = s1 - s0, p1 - p0
        print(
            json.dumps(
                {
                    "pg_cpu": {
                        "label": argv[3],
                        "scenario": argv[4],
                        "server_cpu_s": round(ds, 2),
                        "postgres_cpu_s": round(dp, 2),
                        "connections_opened": int(n1 - n0),
                        "postgres_per_server_cpu": round(dp / ds, 3) if ds else None,
                    }
                }
            )
        )
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
