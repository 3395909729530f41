"""bench/seed_scale.py and bench/scale.py at a tiny size on PostgreSQL, so neither rots: the
seed makes what it says (unique phones, two links each, the events, the indexes made again as
they were), and the scale run measures every operation on both databases and writes its table."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from iam.db import migrate
from iam.db.store import create_db_engine

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import scale  # noqa: E402
import seed_scale  # noqa: E402

pytestmark = pytest.mark.postgres


@pytest.fixture
def server(postgres_server_url: str) -> Iterator[str]:
    """The server's URL without a database; the databases a test names are dropped after."""
    url = make_url(postgres_server_url).render_as_string(False)
    yield url.rsplit("/", 1)[0]  # the test URL names a database last, and no query


def _drop(server: str, *names: str) -> None:
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _one(url: str, sql: str) -> Any:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        found = connection.execute(text(sql)).scalar()
    engine.dispose()
    return found


def test_the_seed_makes_people_links_and_events_on_the_real_schema(
    fresh_postgres_database: Any,
) -> None:
    url = fresh_postgres_database()
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    indexes = "SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes"
    before = _one(url, indexes)
    seed_scale.seed(url, 50, 300, batch=20)
    assert _one(url, "SELECT count(*) FROM users") == 50
    assert _one(url, "SELECT count(DISTINCT phone) FROM users") == _one(
        url, "SELECT count(phone) FROM users"
    )
    assert _one(url, "SELECT count(*) FROM identity_links") == 100
    assert _one(url, "SELECT count(DISTINCT user_id) FROM identity_links") == 50
    assert _one(url, "SELECT count(*) FROM audit_events") == 300
    assert _one(url, "SELECT count(*) FROM users WHERE phone !~ '^[+]861[3-9][0-9]{9}$'") == 0
    assert _one(
        url, "SELECT bool_and(provider_user_key = lower(provider_user_id)) FROM identity_links"
    )
    assert _one(url, indexes) == before  # every index made again, as the migrations made it
    with pytest.raises(SystemExit):  # not twice into the same database
        seed_scale.seed(url, 5, 5)
    engine.dispose()


def test_seeded_phones_are_unique_for_millions() -> None:
    phones = {seed_scale.phone_of(index) for index in range(0, 7_000_000, 997)}
    assert len(phones) == len(range(0, 7_000_000, 997))


def test_the_scale_run_measures_both_sizes_and_writes_its_table(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    monkeypatch.setattr(scale, "PG_URL", server)
    results = tmp_path / "scale.jsonl"
    args = ["--runs", "1", "--small", "30", "100", "--big", "60", "200", "--prefix", prefix]
    try:
        scale.main([*args, "--json", str(results)])
        first = capsys.readouterr()
        scale.main([*args, "--json", str(results)])  # the databases are reused
        again = capsys.readouterr()
    finally:
        _drop(server, prefix + scale.SMALL.database, prefix + scale.BIG.database)
    assert "seeding" in first.err
    assert "reused" in again.err
    assert "seeding" not in again.err
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [("meta" in line) for line in lines].count(True) == 2
    rows = [line["scale"] for line in lines if "scale" in line]
    assert {row["operation"] for row in rows} == {op.name for op in scale.OPERATIONS}
    assert all(row["ms_1k"] > 0 and row["ms_1m"] > 0 for row in rows)
    assert "| users: first page + total" in first.out
