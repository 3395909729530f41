"""`iam corps add`, `iam corps list` and `iam corps update`, run in-process on SQLite and
PostgreSQL: JSON shapes, one-line errors, and an app secret and callback settings (Token,
EncodingAESKey) that are never printed and never stored in plain text."""

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
from starlette.testclient import TestClient
from support.constants import CORP_A, ISSUER, TEST_SECRET, WECOM_BASE
from support.units import in_unit
from support.wecom import connect_corp

from iam.cli import corps as cli_corps
from iam.cli import main
from iam.db.store import Store, create_db_engine
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.secretbox import SecretBox
from iam.services import corps, users

CORP_ID = "wwsubsidiarya0001"
SECRET = "Sx7-app-secret_0123456789abcdefghijklmnopq"
ADD = ("corps", "add", "--corp-id", CORP_ID, "--name", "子公司A", "--agent-id", "1000002")
#: What `--json` prints of a corporation: never the secret nor the callback values.
RECORD_FIELDS = {
    *("corp_id", "name", "agent_id", "trust_mobile", "enabled", "callback", "created_at"),
    *("on_login_page", "hidden_by_test", "last_tested_at", "last_test_ok", "last_test_problems"),
}
#: The width of the human form's names (the longest, last_test_problems, and its colon).
NAME_WIDTH = len("last_test_problems:")


def described(name: str, value: object) -> str:
    """One line of a record in the human form."""
    return f"{name + ':':<{NAME_WIDTH}} {value}"


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
    assert set(record) == RECORD_FIELDS
    assert record["corp_id"] == CORP_ID
    assert record["name"] == "子公司A"
    assert record["agent_id"] == 1000002
    assert (record["trust_mobile"], record["enabled"]) == (False, True)
    assert datetime.fromisoformat(record["created_at"]).utcoffset().total_seconds() == 0


def test_corps_add_trusted_for_mobiles_in_the_human_form(db: str, run: Run) -> None:
    ran = run(*ADD, "--secret", SECRET, "--trust-mobile")
    assert (ran.code, ran.err) == (0, "")
    assert described("corp_id", CORP_ID) in ran.out
    assert described("trust_mobile", True) in ran.out
    assert described("agent_id", 1000002) in ran.out


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
    assert all(set(c) == RECORD_FIELDS for c in listed)
    ran = run("corps", "list")
    assert ran.out.splitlines() == [
        f"{CORP_ID}  agent 1000002  trusted mobile  子公司A",
        "wwsubsidiaryb0002  agent 1000003  子公司B",
    ]
    assert "another-secret" not in ran.out


def test_an_unmigrated_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    (tmp_path / "empty.db").touch()  # an empty file is a SQLite database without tables
    monkeypatch.setenv("IAM_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert_error(run(*ADD, "--secret", SECRET), "not migrated")
    assert_error(run("corps", "list"), "not migrated")


# --- the callback settings, and `iam corps update` ------------------------------------------------

TOKEN = "QDG6eK2xTuVw9Nf"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CALLBACK = ("--callback-token", TOKEN, "--encoding-aes-key", AES_KEY)
UPDATE = ("corps", "update", CORP_ID)


def stored_row(store: Store) -> Any:
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT * FROM wecom_corps")).one()


def audit_details(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return [
            str(d) for d in connection.execute(text("SELECT detail FROM audit_events")).scalars()
        ]


def quiet(ran: Ran) -> Ran:
    """The callback values are never printed either."""
    assert TOKEN not in ran.out + ran.err and AES_KEY not in ran.out + ran.err
    return ran


def test_corps_add_with_both_callback_settings(db: str, store: Store, run: Run) -> None:
    record = run_json(run, *ADD, "--secret", SECRET, *CALLBACK)
    assert set(record) == RECORD_FIELDS
    assert record["callback"] is True
    row = stored_row(store)
    box = SecretBox(TEST_SECRET)
    assert box.decrypt(row.callback_token_encrypted) == TOKEN
    assert box.decrypt(row.encoding_aes_key_encrypted) == AES_KEY
    assert all(TOKEN not in str(value) and AES_KEY not in str(value) for value in row)
    assert all(TOKEN not in d and AES_KEY not in d for d in audit_details(store))


def test_corps_add_without_callback_settings_says_so(db: str, run: Run) -> None:
    assert run_json(run, *ADD, "--secret", SECRET)["callback"] is False


def test_corps_add_with_both_in_the_human_form(db: str, run: Run) -> None:
    ran = quiet(run(*ADD, "--secret", SECRET, *CALLBACK))
    assert ran.code == 0
    assert described("callback", True) in ran.out


def test_corps_add_with_only_the_token_is_refused(db: str, run: Run) -> None:
    ran = quiet(run(*ADD, "--secret", SECRET, "--callback-token", TOKEN))
    assert_error(ran, "encoding_aes_key:", "required with the callback Token")
    assert run_json(run, "corps", "list") == {"corps": []}


def test_corps_add_with_only_the_aes_key_is_refused(db: str, run: Run) -> None:
    ran = quiet(run(*ADD, "--secret", SECRET, "--encoding-aes-key", AES_KEY))
    assert_error(ran, "callback_token:", "required with the EncodingAESKey")
    assert run_json(run, "corps", "list") == {"corps": []}


#: (the callback options, the field the one-line error names)
BAD_CALLBACKS = [
    (("--callback-token", "tok-en", "--encoding-aes-key", AES_KEY), "callback_token"),
    (("--callback-token", "t" * 33, "--encoding-aes-key", AES_KEY), "callback_token"),
    (("--callback-token", TOKEN, "--encoding-aes-key", AES_KEY[:-1]), "encoding_aes_key"),
    (("--callback-token", TOKEN, "--encoding-aes-key", AES_KEY[:-1] + "="), "encoding_aes_key"),
]


@pytest.mark.parametrize(
    ("options", "field"),
    BAD_CALLBACKS,
    ids=[f"{field}-{index}" for index, (_, field) in enumerate(BAD_CALLBACKS)],
)
def test_corps_add_with_bad_callback_settings_is_one_line(
    db: str, run: Run, options: tuple[str, ...], field: str
) -> None:
    assert_error(quiet(run(*ADD, "--secret", SECRET, *options)), f"{field}:")
    assert run_json(run, "corps", "list") == {"corps": []}


def test_corps_update_sets_the_token_alone(db: str, store: Store, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    record = run_json(run, *UPDATE, "--callback-token", TOKEN)
    assert set(record) == RECORD_FIELDS
    assert record["callback"] is False  # the EncodingAESKey is still missing
    row = stored_row(store)
    assert SecretBox(TEST_SECRET).decrypt(row.callback_token_encrypted) == TOKEN
    assert row.encoding_aes_key_encrypted is None


def test_corps_update_sets_the_aes_key_alone(db: str, store: Store, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    record = run_json(run, *UPDATE, "--encoding-aes-key", AES_KEY)
    assert record["callback"] is False
    row = stored_row(store)
    assert SecretBox(TEST_SECRET).decrypt(row.encoding_aes_key_encrypted) == AES_KEY
    assert row.callback_token_encrypted is None
    assert run_json(run, *UPDATE, "--callback-token", TOKEN)["callback"] is True
    assert all(TOKEN not in d and AES_KEY not in d for d in audit_details(store))


def test_corps_update_with_both_prints_the_corporation(db: str, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    ran = quiet(run(*UPDATE, *CALLBACK))
    assert (ran.code, ran.err) == (0, "")
    assert described("corp_id", CORP_ID) in ran.out
    assert described("callback", True) in ran.out


def test_corps_update_no_trust_mobile(db: str, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET, "--trust-mobile")
    assert run_json(run, *UPDATE, "--no-trust-mobile")["trust_mobile"] is False


def test_corps_update_trust_mobile(db: str, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    assert run_json(run, *UPDATE, "--trust-mobile")["trust_mobile"] is True


def test_corps_update_keeps_trust_mobile_when_not_named(db: str, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET, "--trust-mobile")
    assert run_json(run, *UPDATE, "--name", "子公司A（华东）")["trust_mobile"] is True


def test_corps_update_name_and_secret(db: str, store: Store, run: Run) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    record = run_json(run, *UPDATE, "--name", "子公司A（华东）", "--secret", "n3w-Secret")
    assert record["name"] == "子公司A（华东）"
    assert "n3w-Secret" not in json.dumps(record)
    assert SecretBox(TEST_SECRET).decrypt(stored_row(store).secret_encrypted) == "n3w-Secret"


def test_corps_update_with_nothing_changes_nothing(db: str, store: Store, run: Run) -> None:
    added = run_json(run, *ADD, "--secret", SECRET)
    assert run_json(run, *UPDATE) == added
    assert len(audit_details(store)) == 1  # corp.added only


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (("--callback-token", "bad token"), "callback_token"),
        (("--encoding-aes-key", "tooshort"), "encoding_aes_key"),
        (("--callback-token", TOKEN, "--encoding-aes-key", AES_KEY + "x"), "encoding_aes_key"),
        (("--name", " "), "name"),
        (("--secret", "with space"), "secret"),
    ],
    ids=["token", "aes_key", "good-token-bad-key", "name", "secret"],
)
def test_corps_update_with_bad_values_is_one_line_and_changes_nothing(
    db: str, store: Store, run: Run, options: tuple[str, ...], field: str
) -> None:
    run_json(run, *ADD, "--secret", SECRET)
    before = stored_row(store)
    assert_error(quiet(run(*UPDATE, *options)), f"{field}:")
    assert stored_row(store) == before


def test_corps_update_of_an_unknown_corporation_is_one_line(db: str, run: Run) -> None:
    assert_error(run("corps", "update", "wwnosuchcorp", "--name", "X"), "wwnosuchcorp")


def test_corps_update_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["corps", "update", "--help"])
    assert exited.value.code == 0
    described = capsys.readouterr().out
    for option in ("--name", "--secret", "--callback-token", "--encoding-aes-key", "--json"):
        assert option in described
    assert "--trust-mobile, --no-trust-mobile" in described


# --- iam corps sync ---------------------------------------------------------------------------

#: What `iam corps sync --json` prints of each corporation.
SYNC_FIELDS = {
    "corp_id",
    "checked",
    "disabled",
    "refreshed",
    "unchanged",
    "failed",
    "failed_userids",
    "events",
    "events_left",
}


@pytest.fixture
def synced_world(
    db: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WeComSimulator]:
    """Subsidiary A connected, with the simulator's secret, and two members linked; the
    command reaches the simulator at IAM_WECOM_API_BASE, in-process."""
    simulator = WeComSimulator(demo_corps())
    monkeypatch.setenv("IAM_WECOM_API_BASE", WECOM_BASE)
    monkeypatch.setattr(cli_corps, "new_http_client", lambda: TestClient(simulator.app))
    connect_corp(store, simulator, CORP_A)
    for userid, phone in (("lisi", "+8613900139000"), ("wangfang", "+8613900139001")):
        user = in_unit(store, users.create_user, userid, phone)
        in_unit(store, users.link_wecom, user.id, CORP_A, userid, {"position": "old"})
    yield simulator


def test_corps_sync_json_is_one_object(synced_world: WeComSimulator, run: Run) -> None:
    synced_world.remove_member(CORP_A, "wangfang")
    record = run_json(run, "corps", "sync")
    assert set(record) == {"corps"}
    (corp,) = record["corps"]
    assert set(corp) == SYNC_FIELDS
    assert corp["corp_id"] == CORP_A
    assert (corp["checked"], corp["disabled"], corp["refreshed"], corp["failed"]) == (2, 1, 1, 0)


def test_corps_sync_of_one_corporation_in_the_human_form(
    synced_world: WeComSimulator, run: Run
) -> None:
    synced_world.fail_http("user_get", 502)
    ran = run("corps", "sync", CORP_A)
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.startswith(
        f"{CORP_A}: 2 checked, 0 disabled, 1 refreshed, 0 unchanged, 1 failed"
    )
    assert "not checked (next sync): lisi" in ran.out


def test_corps_sync_without_corporations_prints_an_empty_list(db: str, run: Run) -> None:
    assert run_json(run, "corps", "sync") == {"corps": []}


def test_corps_sync_of_an_unknown_corporation_is_one_line(db: str, run: Run) -> None:
    assert_error(run("corps", "sync", "wwunknown0000", "--json"), "wwunknown0000")


def test_corps_sync_of_a_disabled_corporation_is_one_line(
    synced_world: WeComSimulator, store: Store, run: Run
) -> None:
    in_unit(store, corps.update_corp, SecretBox(TEST_SECRET), CORP_A, actor="t", enabled=False)
    assert_error(run("corps", "sync", CORP_A), CORP_A, "disabled")
    assert synced_world.calls["user_get"] == 0


# --- iam corps test, and --enable / --disable ----------------------------------------------------

#: What `iam corps test --json` prints: the API's ConnectionTest record and the corp id.
TEST_FIELDS = {
    *("corp_id", "ok", "errcode", "errmsg", "reason", "api", "problems", "seen_ip", "app_name"),
}


@pytest.fixture
def wecom_world(db: str, store: Store, monkeypatch: pytest.MonkeyPatch) -> WeComSimulator:
    """Subsidiary A connected with the simulator's secret, its app trusting the issuer's host;
    the command reaches the simulator at IAM_WECOM_API_BASE, in-process."""
    simulator = WeComSimulator(demo_corps())
    simulator.configure_app(CORP_A, redirect_domain="testserver")
    monkeypatch.setenv("IAM_WECOM_API_BASE", WECOM_BASE)
    monkeypatch.setattr(cli_corps, "new_http_client", lambda: TestClient(simulator.app))
    connect_corp(store, simulator, CORP_A)
    return simulator


def test_corps_test_that_passes_exits_0(wecom_world: WeComSimulator, run: Run) -> None:
    record = run_json(run, "corps", "test", CORP_A)
    assert set(record) == TEST_FIELDS
    assert (record["corp_id"], record["ok"], record["problems"], record["app_name"]) == (
        CORP_A,
        True,
        [],
        "统一登录",
    )
    ran = run("corps", "test", CORP_A)
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.startswith(f"{CORP_A}: the connection test passed. Everything works")
    assert "trusts testserver" in ran.out
    assert wecom_world.calls["agent_get"] == 2
    listed = run_json(run, "corps", "list")["corps"][0]
    assert (listed["last_test_ok"], listed["on_login_page"]) == (True, True)


def test_corps_test_that_fails_says_everything_and_exits_1(
    wecom_world: WeComSimulator, store: Store, run: Run
) -> None:
    wecom_world.configure_app(CORP_A, closed=True, trusted_ips=["198.51.100.7"])
    ran = run("corps", "test", CORP_A, "--json")
    assert (ran.code, ran.err) == (1, "")
    record = json.loads(ran.out)
    assert (record["ok"], record["errcode"], record["seen_ip"]) == (False, 60020, "203.0.113.9")
    assert record["problems"] == [{"reason": corps.IP_NOT_TRUSTED, "params": {"ip": "203.0.113.9"}}]
    ran = run("corps", "test", CORP_A)
    assert (ran.code, ran.err) == (1, "")
    lines = ran.out.splitlines()
    assert lines[0].startswith(f"{CORP_A}: the connection test FAILED.")
    assert f"iam corps update {CORP_A} --enable" in lines[0]
    assert lines[1].startswith(
        "  - WeCom refused calls from this server's address 203.0.113.9 (60020)."
    )
    assert "add 203.0.113.9" in lines[1]
    assert lines[2].startswith("  WeCom answered agent/get: errcode 60020, not allow to access")
    assert "docs/wecom-setup.md" in lines[-1]

    wecom_world.configure_app(CORP_A, trusted_ips=None, visible_departments=[])
    ran = run("corps", "test", CORP_A)
    assert ran.code == 1
    problems = [line for line in ran.out.splitlines() if line.startswith("  - ")]
    assert [line[4:30] for line in problems] == [
        "The app is disabled in WeC",
        "Nobody is in the app's vis",
    ]
    assert run("corps", "list").out == (
        f"{CORP_A}  agent 1000002  子公司A  [hidden from the login page: its last test failed]\n"
    )
    hidden = run_json(run, "corps", "list")["corps"][0]
    assert (hidden["enabled"], hidden["on_login_page"], hidden["last_test_ok"]) == (
        True,
        False,
        False,
    )
    assert [problem["reason"] for problem in hidden["last_test_problems"]] == [
        corps.APP_CLOSED,
        corps.NOBODY_VISIBLE,
    ]


def test_corps_update_enable_shows_a_hidden_corporation(
    wecom_world: WeComSimulator, run: Run
) -> None:
    wecom_world.configure_app(CORP_A, closed=True)
    assert run("corps", "test", CORP_A).code == 1
    record = run_json(run, *UPDATE, "--enable")
    assert (record["enabled"], record["on_login_page"], record["hidden_by_test"]) == (
        True,
        True,
        False,
    )
    record = run_json(run, *UPDATE, "--disable")
    assert (record["enabled"], record["on_login_page"]) == (False, False)
    assert run_json(run, *UPDATE, "--enable")["on_login_page"] is True


def test_corps_update_refuses_enable_with_disable(db: str, run: Run) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*UPDATE, "--enable", "--disable"])
    assert exited.value.code == 2


def test_corps_test_of_an_unknown_corporation_is_one_line(
    wecom_world: WeComSimulator, run: Run
) -> None:
    assert_error(run("corps", "test", "wwnosuchcorp"), "wwnosuchcorp")
    assert wecom_world.calls["gettoken"] == 0


def test_corps_test_help_says_what_it_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["corps", "test", "--help"])
    assert exited.value.code == 0
    described = " ".join(capsys.readouterr().out.split())
    assert "agent/get" in described and "exit 1 when it fails" in described
    assert "hides the corporation from the login page" in described
