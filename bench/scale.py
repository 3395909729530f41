"""Scale (issue #17): the same operations with 1,000 and with 1,000,000 people on PostgreSQL.

    .venv/bin/python bench/scale.py [--runs 15] [--json bench/results/scale-postgres.jsonl]

Two databases on the server of PG_URL: `iam_scale_small` (1,000 users, 2,000 links, 10,000
audit events) and `iam_scale` (1,000,000 / 2,000,000 / 10,000,000), each seeded by
`bench/seed_scale.py` unless it already holds those counts (seeding the big one takes minutes);
either is migrated to the newest schema first. Each operation is the service function itself,
in process, timed warm: the median of `--runs` calls, each on another person of a sample (so
one cached row does not flatter the big database), after one pass over the same calls to warm
the caches.

Targets: the sign-in side (SMS sign-in's lookups, the selector's query, the code exchange's
reads) within 1.2x of the small database; the users list's pages under 30 ms; its searches
under 50 ms; the audit trail's pages and filters under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seed_scale  # noqa: E402 - the seeding script next to this one

from iam.clock import utcnow  # noqa: E402
from iam.db import fastpath, migrate  # noqa: E402
from iam.db.models import AuditEvent, AuthorizationCode, Client, OtpChallenge, User  # noqa: E402
from iam.db.store import Store, create_db_engine  # noqa: E402
from iam.db.unit import one_unit  # noqa: E402
from iam.secretbox import digest  # noqa: E402
from iam.services import accounts, audit, clients, otp, users  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
CLIENT_ID = "scale-bench"
BROWSER = "scale-bench-browser"
#: A person's sample: enough that no one row stays hot through a run.
SAMPLE = 40

#: (what a target says, how it is met): "flat" within 1.2x of the small database, or under ms.
FLAT = 1.2


@dataclass(frozen=True)
class Size:
    database: str
    users: int
    events: int


SMALL = Size("iam_scale_small", 1_000, 10_000)
BIG = Size("iam_scale", 1_000_000, 10_000_000)


@dataclass
class Sample:
    """People of the database to look up, and what admins would type to find them."""

    user_ids: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    short_names: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    userids: list[str] = field(default_factory=list)
    code_hashes: list[str] = field(default_factory=list)
    deep: users.Cursor | None = None
    deep_before: int = 1
    last_id: int = 1


# --- the databases --------------------------------------------------------------------------


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM identity_links),"
                " (SELECT count(*) FROM audit_events WHERE actor IS DISTINCT FROM 'scale-bench')"
            )
        ).one()
    return found[0], found[1], found[2]


def ensure(size: Size, *, log: Callable[[str], None], upgrade: bool = True) -> str:
    """The URL of `size`'s database, migrated (unless not `upgrade`: to measure the schema it
    has) and seeded (seeded again when its counts differ)."""
    url = f"{PG_URL}/{size.database}"
    admin = create_engine(f"{PG_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": size.database}
        ).first()
    wanted = (size.users, 2 * size.users, size.events)
    if exists:
        engine = create_db_engine(url)
        if upgrade:  # a big one seeded before a new migration keeps its rows
            migrate.upgrade(engine)
        found = _counts(engine)
        engine.dispose()
        if found == wanted:
            admin.dispose()
            log(f"{size.database}: reused ({found[0]:,} users, {found[2]:,} events)")
            return url
        log(f"{size.database}: has {found}, wants {wanted}: seeding again")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{size.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{size.database}"'))
    admin.dispose()
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    log(f"{size.database}: seeding {size.users:,} users, {size.events:,} events")
    seed_scale.seed(url, size.users, size.events)
    return url


def prepare(store: Store) -> Sample:
    """A client, an authorization code and a live SMS code for sampled people (made once, kept),
    and what the searches will type."""
    sample = Sample()
    with store() as db:
        total = db.scalar(select(func.count()).select_from(User)) or 1
        percent = min(100.0, 100.0 * SAMPLE * 4 / total)
        rows = db.execute(
            text(
                "SELECT u.id, u.name, u.phone, u.email, l.metadata->>'userid'"
                " FROM users u TABLESAMPLE BERNOULLI (CAST(:percent AS real)) REPEATABLE (17)"
                " JOIN identity_links l ON l.user_id = u.id"
                " WHERE u.phone IS NOT NULL ORDER BY u.id LIMIT :n"
            ),
            {"n": SAMPLE * 2, "percent": percent},
        ).all()[::2]
        for user_id, name, phone, email, userid in rows:
            sample.user_ids.append(user_id)
            sample.phones.append(phone)
            (sample.short_names if len(name) <= 2 else sample.names).append(name)
            if email:
                sample.emails.append(email.split("@")[0])
            sample.userids.append(userid)
        deep = db.scalars(select(User).order_by(User.created_at, User.id).offset(9_999).limit(1))
        found = deep.first()
        sample.deep = users.Cursor.of(found) if found is not None else None
        sample.last_id = db.scalar(select(func.max(AuditEvent.id))) or 1
        sample.deep_before = max(1, sample.last_id // 2)
    if one_unit(store, lambda db: db.get(Client, CLIENT_ID)) is None:
        one_unit(
            store,
            lambda db: clients.create_client(
                db,
                "Scale bench",
                ["https://rp.example/cb"],
                client_id=CLIENT_ID,
                actor="scale-bench",
            ),
        )

    def codes(db: Session) -> list[str]:
        hashes = []
        far = utcnow() + timedelta(days=3650)
        for user_id, phone in zip(sample.user_ids, sample.phones, strict=True):
            code_hash = digest(f"scale-code-{user_id}")
            hashes.append(code_hash)
            if db.scalar(
                select(AuthorizationCode.id).where(AuthorizationCode.code_hash == code_hash)
            ):
                continue
            db.add(
                AuthorizationCode(
                    code_hash=code_hash,
                    client_id=CLIENT_ID,
                    user_id=user_id,
                    scope="openid profile",
                    auth_time=utcnow(),
                    amr=["sms"],
                    expires_at=far,
                )
            )
            db.add(
                OtpChallenge(
                    phone=phone,
                    browser_hash=digest(f"{BROWSER}-{user_id}"),
                    purpose="login",
                    code_hash=digest("123456"),
                    expires_at=far,
                )
            )
        return hashes

    sample.code_hashes = one_unit(store, codes)
    return sample


# --- the operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    side: str
    #: None: within FLAT of the small database; a number: under that many ms at 1M.
    under_ms: float | None
    #: run(db, sample, i): the i-th call.
    run: Callable[[Session, Sample, int], object]


def _pick(values: list[Any], i: int) -> Any:
    """The i-th of a sample's values, round; a tiny database may have none of a kind."""
    return values[i % len(values)] if values else "nobody"


def _list(db: Session, query: str | None, after: users.Cursor | None = None) -> object:
    """What the console's users page reads: a page (one more row: is there a next?) and the
    total."""
    return users.search_users(db, query, limit=51, after=after), users.count_users(db, query)


def _sign_in(db: Session, s: Sample, i: int) -> object:
    user = users.find_user_by_phone(db, _pick(s.phones, i))
    return user, otp.code_step(db, f"{BROWSER}-{_pick(s.user_ids, i)}", "login")


def _code_exchange(db: Session, s: Sample, i: int) -> object:
    connection = db.connection()
    client = fastpath.client_by_id(connection, CLIENT_ID)
    return client, fastpath.code_and_user(connection, _pick(s.code_hashes, i))


def _audit(**filters: Any) -> Callable[[Session, Sample, int], object]:
    def run(db: Session, s: Sample, i: int) -> object:
        chosen = {k: (v(s, i) if callable(v) else v) for k, v in filters.items()}
        before = chosen.pop("before", None)
        return audit.named_page(db, audit.Filters(**chosen), 50, before)

    return run


def _audit_page(before: Callable[[Sample, int], int] | None) -> Callable[..., object]:
    def run(db: Session, s: Sample, i: int) -> object:
        return audit.named_page(db, audit.Filters(), 50, before(s, i) if before else None)

    return run


def _days(ago: int, length: int) -> dict[str, Callable[[Sample, int], Any]]:
    """`since` and `until` of `length` days from midnight `ago` days back (UTC)."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    since = midnight - timedelta(days=ago)
    return {"since": lambda s, i: since, "until": lambda s, i: since + timedelta(days=length)}


OPERATIONS = [
    Operation("SMS sign-in: user by phone, code step", "sign-in", None, _sign_in),
    Operation(
        "selector: a user's active links",
        "sign-in",
        None,
        lambda db, s, i: accounts.active_links(db, _pick(s.user_ids, i)),
    ),
    Operation("code exchange: client, code and user", "sign-in", None, _code_exchange),
    Operation("users: first page + total", "console", 30, lambda db, s, i: _list(db, None)),
    Operation(
        "users: 10,000 rows in (keyset) + total",
        "console",
        30,
        lambda db, s, i: _list(db, None, s.deep),
    ),
    Operation(
        "users: offset 9,950 (API offset, old way)",
        "console",
        None,
        lambda db, s, i: users.search_users(db, None, limit=51, offset=9_950),
    ),
    Operation(
        "search: full name (3+ chars)", "console", 50, lambda db, s, i: _list(db, _pick(s.names, i))
    ),
    Operation(
        "search: 2-character name",
        "console",
        50,
        lambda db, s, i: _list(db, _pick(s.short_names or s.names, i)),
    ),
    Operation(
        "search: phone fragment (7 digits)",
        "console",
        50,
        lambda db, s, i: _list(db, _pick(s.phones, i)[5:12]),
    ),
    Operation(
        "search: email (local part)", "console", 50, lambda db, s, i: _list(db, _pick(s.emails, i))
    ),
    Operation(
        "search: WeCom userid", "console", 50, lambda db, s, i: _list(db, _pick(s.userids, i))
    ),
    Operation(
        "search: broad ('wang', 1 in 116)", "console", 50, lambda db, s, i: _list(db, "wang")
    ),
    Operation("search: 2 letters ('li', 1 in 11)", "console", 50, lambda db, s, i: _list(db, "li")),
    Operation(
        "search: 1 character ('王', 1 in 113)", "console", 50, lambda db, s, i: _list(db, "王")
    ),
    Operation("audit: first page", "console", 50, _audit_page(None)),
    Operation(
        "audit: deep page (5M events in)", "console", 50, _audit_page(lambda s, i: s.deep_before)
    ),
    Operation("audit: event (common)", "console", 50, _audit(event="token.issued")),
    Operation("audit: event (rare)", "console", 50, _audit(event="user.disabled")),
    Operation("audit: event prefix otp.", "console", 50, _audit(event="otp.")),
    Operation(
        "audit: person (by id)", "console", 50, _audit(user_id=lambda s, i: _pick(s.user_ids, i))
    ),
    Operation(
        "audit: person (typed name)", "console", 50, _audit(person=lambda s, i: _pick(s.names, i))
    ),
    Operation("audit: app", "console", 50, _audit(client_id="crm")),
    Operation(
        "audit: one day, 90 days ago",
        "console",
        50,
        _audit(**_days(90, 1)),
    ),
    Operation(
        "audit: a month, 6 months ago",
        "console",
        50,
        _audit(**_days(180, 30)),
    ),
    Operation(
        "audit: app + event, deep page",
        "console",
        50,
        _audit(client_id="crm", event="token.issued", before=lambda s, i: s.deep_before),
    ),
]


def measure(store: Store, sample: Sample, runs: int, only: str | None = None) -> dict[str, float]:
    """Median ms of each operation over `runs` calls (the i-th on the i-th person of the sample),
    each in its own session, after one pass over the same calls to warm the caches."""
    found: dict[str, float] = {}
    for operation in OPERATIONS:
        if only and only not in operation.name:
            continue
        times = []
        for i in [*range(runs), *range(runs)]:
            with store() as db:
                db.connection()  # the pool's checkout and BEGIN are not the operation
                started = time.perf_counter()
                operation.run(db, sample, i)
                elapsed = time.perf_counter() - started
                db.rollback()
            times.append(elapsed * 1000)
        found[operation.name] = statistics.median(times[runs:])
    return found


# --- the report -------------------------------------------------------------------------------


def verdict(operation: Operation, small: float, big: float) -> tuple[str, str]:
    if operation.under_ms is None:
        if operation.side != "sign-in":
            return "(for comparison)", "-"
        return f"<= {FLAT}x of 1k", "met" if big <= small * FLAT else "missed"
    return f"< {operation.under_ms:g} ms", "met" if big < operation.under_ms else "missed"


def table(small: dict[str, float], big: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for operation in OPERATIONS:
        if operation.name not in big:
            continue
        ms_small, ms_big = small[operation.name], big[operation.name]
        target, outcome = verdict(operation, ms_small, ms_big)
        rows.append(
            {
                "operation": operation.name,
                "side": operation.side,
                "ms_1k": round(ms_small, 3),
                "ms_1m": round(ms_big, 3),
                "ratio": round(ms_big / ms_small, 2) if ms_small else None,
                "target": target,
                "outcome": outcome,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"| {'operation':44} | {'ms at 1k':>8} | {'ms at 1M':>8} | {'ratio':>6} "
        f"| {'target':16} | met? |"
    )
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 18}|------|")
    for row in rows:
        print(
            f"| {row['operation']:44} | {row['ms_1k']:8.2f} | {row['ms_1m']:8.2f} "
            f"| {row['ratio']:6.2f} | {row['target']:16} | {row['outcome']} |"
        )


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)  # noqa: S603, S607
    return done.stdout


def meta(label: str) -> dict[str, Any]:
    """What was measured, as `meta()` of bench/run.sh says it."""
    dirty = [
        line[3:] for line in _git("status", "--porcelain", "--", "iam", "migrations").splitlines()
    ]
    return {
        "meta": {
            "label": label,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "commit": _git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted_server_files": dirty,
            "database": "postgresql",
        }
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", help="operations whose name contains this")
    parser.add_argument("--json", default=str(ROOT / "bench/results/scale-postgres.jsonl"))
    parser.add_argument("--small", type=int, nargs=2, metavar=("USERS", "EVENTS"))
    parser.add_argument("--big", type=int, nargs=2, metavar=("USERS", "EVENTS"))
    parser.add_argument("--prefix", default="", help="prefix of both databases' names")
    parser.add_argument(
        "--keep-schema", action="store_true", help="do not migrate a database already seeded"
    )
    args = parser.parse_args(argv)
    sizes = []
    for size, given in ((SMALL, args.small), (BIG, args.big)):
        users_, events = given or (size.users, size.events)
        sizes.append(Size(args.prefix + size.database, users_, events))

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = []
    for size in sizes:
        url = ensure(size, log=log, upgrade=not args.keep_schema)
        engine = create_db_engine(url)
        try:
            store = Store(engine)
            sample = prepare(store)
            log(f"{size.database}: measuring ({args.runs} runs each)")
            results.append(measure(store, sample, args.runs, args.only))
        finally:
            engine.dispose()
    rows = table(*results)
    print_table(rows)
    label = f"scale {sizes[0].users}/{sizes[1].users} users, {sizes[1].events} events"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "a", encoding="utf-8") as out:
        out.write(json.dumps(meta(label)) + "\n")
        for row in rows:
            out.write(json.dumps({"scale": row}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
