#!/usr/bin/env python3
"""Markdown tables from flows.py --json result lines: first a compact summary (one row per
target and scenario, requests/s included), then the shared bench-peer report.py's full tables.

Usage: bench/.venv/bin/python bench/report.py bench/results/*.jsonl
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = Path(
    os.environ.get("BENCH_PEER_DIR") or REPO_ROOT / ".." / "shared" / "bench-peer"
).resolve()
sys.path.insert(0, str(PEER_DIR))

import report as peer_report  # noqa: E402  (the bench-peer's report.py)


def _cell_range(r: dict) -> str:
    return f"{r['median']:.0f} [{r['min']:.0f}–{r['max']:.0f}]"


def summary(paths: list[str]) -> list[str]:
    """One row per target and scenario; `req/s` = ops/s x HTTP requests per op; `postgres CPU
    ms/op` from run.sh's samples of the iam_bench backends (bench/cpu.py)."""
    out = [
        "| file | target | scenario | ops/s median [min–max] | req/s | p50 / p95 / p99 ms "
        "| server CPU ms/op | postgres CPU ms/op | req/op | errors | others (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for path in paths:
        lines = [json.loads(raw) for raw in Path(path).read_text().splitlines() if raw.strip()]
        pg = {ln["pg_cpu"]["scenario"]: ln["pg_cpu"] for ln in lines if "pg_cpu" in ln}
        for ln in lines:
            if "meta" in ln:
                m = ln["meta"]
                notes.append(
                    f"- {Path(path).stem}: {m['ts']}, commit {m['commit']}, {m['database']}"
                    + (
                        f", uncommitted server files: {len(m['uncommitted_server_files'])}"
                        if m["uncommitted_server_files"]
                        else ""
                    )
                )
            a = ln.get("aggregate")
            if a is None:
                continue
            per_op = a.get("http_requests_per_op", 1) or 1
            lat = a["latency_ms"]["total"]
            cpu = a.get("server_cpu_ms_per_op")
            oth = a.get("other_cores_busy")
            ratio = pg.get(a["scenario"], {}).get("postgres_per_server_cpu")
            ours = ln.get("flavour") == "our-iam"
            pg_cell = (
                f"{cpu['median'] * ratio:.2f}" if (cpu and ratio is not None and ours) else "–"
            )
            out.append(
                f"| {Path(path).stem} | {ln.get('label', '')} | {a['scenario']} | {_cell_range(a['rate_per_s'])} "
                f"| {a['rate_per_s']['median'] * per_op:.0f} "
                f"| {lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} "
                f"| {cpu['median']:.2f} | {pg_cell} | {per_op} | {a['errors_total']} "
                f"| {oth['median']:.2f} |"
                if cpu and oth
                else f"| {Path(path).stem} | {ln.get('label', '')} | {a['scenario']} | {_cell_range(a['rate_per_s'])} "
                f"| {a['rate_per_s']['median'] * per_op:.0f} "
                f"| {lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} | – | – | {per_op} "
                f"| {a['errors_total']} | – |"
            )
    return out + ([""] + notes if notes else [])


def endpoint_costs(paths: list[str]) -> list[str]:
    """bench/endpoint_cost.py lines: server CPU per request at concurrency 1."""
    rows = []
    for path in paths:
        for raw in Path(path).read_text().splitlines():
            if '"endpoint_cost"' not in raw:
                continue
            e = json.loads(raw)["endpoint_cost"]
            pr = e["per_request"]
            cell = lambda k: (
                f"{pr[k]['server_cpu_ms']:.2f}"  # noqa: E731
                + (f" (+pg {pr[k]['postgres_cpu_ms']:.2f})" if pr[k].get("postgres_cpu_ms") else "")
            )
            rows.append(
                f"| {e['label']} | " + " | ".join(cell(k) for k in pr) + f" | {e['flow_ms']:.2f} |"
            )
            head = list(pr)
    if not rows:
        return []
    return [
        "Server CPU ms per request, one request at a time (bench/endpoint_cost.py):",
        "",
        "| server | " + " | ".join(head) + " | flow (authorize+token+userinfo) |",
        "|---" * (len(head) + 2) + "|",
        *rows,
        "",
    ]


def memory(paths: list[str]) -> list[str]:
    """run.sh's `rss` lines: one server process's resident memory at rest, at its peak under the
    load (VmHWM) and after it."""
    rows = []
    for path in paths:
        for raw in Path(path).read_text().splitlines():
            if '"rss"' in raw:
                m = json.loads(raw)["rss"]
                rows.append(
                    f"| {m['label']} | {m['server']} | {m['at_rest_mb']} | {m['peak_mb']} "
                    f"| {m['after_mb']} |"
                )
    if not rows:
        return []
    return [
        "Resident memory of one server process, MB:",
        "",
        "| run | server | at rest | peak under load | after |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    print("\n".join(summary(paths)))
    print()
    print("\n".join(endpoint_costs(paths)))
    print("\n".join(memory(paths)))
    return peer_report.main(paths)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
