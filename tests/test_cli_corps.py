"""`iam corps add` and `iam corps list`, run in-process on SQLite and PostgreSQL: JSON shapes,
one-line errors, and an app secret that is never printed and never stored in plain text."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.constants import ISSUER, TEST_SECRET
from support.units import in_unit

from iam.cli import main
from iam.db.store import Store, create_db_engine
from iam.secretbox import SecretBox
from iam.services import corps

CORP_ID = "wwsubsidiarya0001"
SECRET = "Sx7-app-secret_0123456789abcdefghijklmnopq"
ADD = ("corps", "add", "--corp-id", CORP_ID, "--name", "子公司A", "--agent-id", "1000002")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Run = Callable[..., Ran]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A throwaway os.environ without the caller's IAM_*, and an empty working directory."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IAM_")}
    monkeypatch.setattr(os, "environ", environ)
    monkeypatch.setenv("IAM_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("IAM_ISSUER", ISSUER)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated, empty database, named in IAM_DATABASE_URL."""
    monkeypatch.setenv("IAM_DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    engine = create_db_engine(db)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run_(*argv: str) -> Ran:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert SECRET not in out + err
        return Ran(code, out, err)

    return run_


def run_json(run: Run, *argv: str) -> dict[str, Any]:
    """Run with --json; the output must be exactly one JSON object on one line."""
    ran = run(*argv, "--json")
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.endswith("\n") and ran.out.count("\n") == 1
    record = json.loads(ran.out)
    assert isinstance(record, dict)
    return record


def assert_error(ran: Ran, *fragments: str) -> None:
    """Exit 1, nothing on stdout, one `iam: error:` line naming every fragment."""
    assert ran.code == 1, ran
    assert ran.out == ""
    assert ran.err.startswith("iam: error: ") and ran.err.count("\n") == 1, ran.err
    assert "Traceback" not in ran.err
    for fragment in fragments:
        assert fragment in ran.err


def test_corps_add_prints_the_corporation_without_its_secret(db: str, run: Run) -> None:
    record = run_json(run, *ADD, "--secret", SECRET)
    assert set(record) == {"corp_id", "name", "agent_id", "trust_mobile", "enabled", "created_at"}
    assert record["corp_id"] == CORP_ID
    assert record["name"] == "子公司A"
    assert record["agent_id"] == 1000002
    assert (record["trust_mobile"], record["enabled"]) == (False, True)
    assert datetime.fromisoformat(record["created_at"]).utcoffset().total_seconds() == 0


def test_corps_add_trusted_for_mobiles_in_the_human_form(db: str, run: Run) -> None:
    ran = run(*ADD, "--secret", SECRET, "--trust-mobile")
    assert (ran.code, ran.err) == (0, "")
    assert f"corp_id:      {CORP_ID}" in ran.out
    assert "trust_mobile: True" in ran.out
    assert "agent_id:     1000002" in ran.out


def test_corps_add_help_says_a_trusted_mobile_does_not_bind_people_known_elsewhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["corps", "add", "--help"])
    assert exited.value.code == 0
    described = " ".join(capsys.readouterr().out.split())
    assert "without an SMS code" in described
    assert "active identity in another corporation" in described
    assert "still proves it by SMS code" in described


def test_the_secret_is_stored_encrypted(db: str, store: Store, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    with store.engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM wecom_corps")).one()
        trail = connection.execute(text("SELECT * FROM audit_events")).all()
    assert all(SECRET not in str(value) for value in row)
    assert all(SECRET not in str(value) for event in trail for value in event)
    assert SecretBox(TEST_SECRET).decrypt(row.secret_encrypted) == SECRET
    box = SecretBox(TEST_SECRET)
    config = in_unit(store, corps.wecom_config, box, CORP_ID, oauth_url="o", qr_url="q")
    assert config.secret == SECRET


def test_a_corporation_is_added_once(db: str, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    assert_error(run(*ADD, "--secret", SECRET + "2"), CORP_ID, "already connected")
    assert [c["corp_id"] for c in run_json(run, "corps", "list")["corps"]] == [CORP_ID]


#: (corp id, name, agent id, secret, the field the one-line error names)
BAD_VALUES = [
    ("ww bad/id", "X", "1", SECRET, "corp_id"),
    ("", "X", "1", SECRET, "corp_id"),
    ("x" * 65, "X", "1", SECRET, "corp_id"),
    (CORP_ID, " ", "1", SECRET, "name"),
    (CORP_ID, "X", "0", SECRET, "agent_id"),
    (CORP_ID, "X", "-5", SECRET, "agent_id"),
    (CORP_ID, "X", "1", "", "secret"),
    (CORP_ID, "X", "1", f" {SECRET} ", "secret"),
]


@pytest.mark.parametrize(
    ("corp_id", "name", "agent_id", "secret", "field"),
    BAD_VALUES,
    ids=[f"{case[-1]}-{index}" for index, case in enumerate(BAD_VALUES)],
)
def test_bad_values_are_one_line_and_store_nothing(
    db: str, run: Run, corp_id: str, name: str, agent_id: str, secret: str, field: str
) -> None:
    ran = run(
        *("corps", "add", "--corp-id", corp_id, "--name", name),
        *("--agent-id", agent_id, "--secret", secret),
    )
    assert_error(ran, f"{field}:")
    assert run_json(run, "corps", "list") == {"corps": []}


def test_a_non_numeric_agent_id_is_a_usage_error(db: str, run: Run) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["corps", "add", "--corp-id", CORP_ID, "--name", "X", "--agent-id", "abc",
              "--secret", SECRET])  # fmt: skip
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["corps", "add", "--corp-id", CORP_ID, "--name", "X", "--agent-id", "1"])
    assert exited.value.code == 2


def test_corps_list_in_both_forms(db: str, run: Run) -> None:
    assert run("corps", "list").out == "no corporations\n"
    assert run_json(run, "corps", "list") == {"corps": []}
    run_json(run, *ADD, "--secret", SECRET, "--trust-mobile")
    run_json(
        run,
        *("corps", "add", "--corp-id", "wwsubsidiaryb0002", "--name", "子公司B"),
        *("--agent-id", "1000003", "--secret", "another-secret"),
    )
    listed = run_json(run, "corps", "list")["corps"]
    assert [(c["corp_id"], c["name"], c["agent_id"], c["trust_mobile"]) for c in listed] == [
        (CORP_ID, "子公司A", 1000002, True),
        ("wwsubsidiaryb0002", "子公司B", 1000003, False),
    ]
    assert all(set(c) == {"corp_id", "name", "agent_id", "trust_mobile", "enabled", "created_at"}
               for c in listed)  # fmt: skip
    ran = run("corps", "list")
    assert ran.out.splitlines() == [
        f"{CORP_ID}  agent 1000002  trusted mobile  子公司A",
        "wwsubsidiaryb0002  agent 1000003  子公司B",
    ]
    assert "another-secret" not in ran.out


def test_an_unmigrated_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    monkeypatch.setenv("IAM_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert_error(run(*ADD, "--secret", SECRET), "not migrated")
    assert_error(run("corps", "list"), "not migrated")
