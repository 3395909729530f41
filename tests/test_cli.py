"""The `iam` command, run in-process on SQLite and PostgreSQL: JSON shapes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from support.constants import ISSUER, TEST_SECRET
from support.databases import BACKENDS
from support.units import in_unit

from iam.cli import main, serve
from iam.clock import utcnow
from iam.db.store import Store, create_db_engine
from iam.logs import log_config
from iam.metrics import MULTIPROC_DIR_VARIABLE
from iam.services import clients, sessions, users

NOT_MIGRATED = "iam: error: the database is not migrated; run 'iam db upgrade'\n"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Run = Callable[..., Ran]
RunJson = Callable[..., dict[str, Any]]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A throwaway copy of os.environ without the caller's IAM_* (`iam demo` writes to it),
    and an empty working directory (no .env, no ./var)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IAM_")}
    monkeypatch.setattr(os, "environ", environ)
    monkeypatch.setenv("IAM_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("IAM_ISSUER", ISSUER)
    monkeypatch.setenv("IAM_SMS_BACKEND", "webhook:https://sms.example.com/send")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated, empty database, named in IAM_DATABASE_URL."""
    monkeypatch.setenv("IAM_DATABASE_URL", database_url)
    return database_url


@pytest.fixture(params=BACKENDS)
def empty_db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A database without any table, named in IAM_DATABASE_URL."""
    if request.param == "sqlite":
        (tmp_path / "empty.db").touch()  # an empty file is a SQLite database without tables
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_database")()
    monkeypatch.setenv("IAM_DATABASE_URL", url)
    return url


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
        return Ran(code, out, err)

    return run_


@pytest.fixture
def run_json(run: Run) -> RunJson:
    """Run with --json; the output must be exactly one JSON object on one line."""

    def run_json_(*argv: str) -> dict[str, Any]:
        ran = run(*argv, "--json")
        assert (ran.code, ran.err) == (0, "")
        assert ran.out.endswith("\n") and ran.out.count("\n") == 1
        record = json.loads(ran.out)
        assert isinstance(record, dict)
        return record

    return run_json_


def assert_error(ran: Ran, *fragments: str) -> None:
    """Exit 1, nothing on stdout, one `iam: error:` line naming every fragment."""
    assert ran.code == 1
    assert ran.out == ""
    assert ran.err.startswith("iam: error: ") and ran.err.count("\n") == 1
    assert "Traceback" not in ran.err
    for fragment in fragments:
        assert fragment in ran.err


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Records uvicorn.run calls instead of serving."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(serve, "_serve_in_background", lambda apps: None)  # the demo's apps
    return calls


# --- db, serve, settings ----------------------------------------------------------------------


def test_db_upgrade_then_current_prints_the_head(empty_db: str, run: Run, run_json: RunJson):
    assert run("db", "current") == Ran(0, "none\n", "")
    assert run_json("db", "upgrade") == {"revision": "0018"}
    assert run("db", "current") == Ran(0, "0018\n", "")
    assert run_json("db", "current") == {"revision": "0018"}


@pytest.mark.parametrize(
    "argv",
    [
        ["clients", "list"],
        ["users", "list"],
        ["db", "current"],
        ["db", "prune"],
        ["keys", "rotate"],
        ["serve"],
    ],
)
def test_a_command_run_elsewhere_makes_no_second_database(
    tmp_path: Path, run: Run, argv: list[str], uvicorn_calls: list[Any], monkeypatch
) -> None:
    """The default database, ./var/iam.db, is relative: from another directory there is none.
    Every command but `db upgrade` says where it looked, and creates nothing."""
    monkeypatch.delenv("IAM_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    ran = run(*argv)
    assert ran.code == 1, ran
    assert f"no database at {tmp_path / 'var' / 'iam.db'}" in ran.err
    assert f"relative to the working directory {tmp_path}" in ran.err
    assert "IAM_DATABASE_URL" in ran.err
    assert not (tmp_path / "var" / "iam.db").exists()
    assert uvicorn_calls == []


def test_db_upgrade_says_when_it_made_a_new_database(tmp_path: Path, run: Run, monkeypatch):
    path = tmp_path / "new.db"
    monkeypatch.setenv("IAM_DATABASE_URL", f"sqlite:///{path}")
    first = run("db", "upgrade")
    assert first.code == 0 and f"a new database, created at {path}" in first.out
    again = run("db", "upgrade")
    assert again.code == 0 and "new database" not in again.out


@pytest.mark.parametrize(
    "argv",
    [["clients", "list"], ["users", "show", "x"], ["keys", "rotate"], ["db", "prune"], ["serve"]],
)
def test_an_unmigrated_database_is_refused(
    empty_db: str, run: Run, argv: list[str], uvicorn_calls: list[Any]
):
    ran = run(*argv)
    assert (ran.code, ran.out, ran.err) == (1, "", NOT_MIGRATED)
    assert uvicorn_calls == []


def test_db_prune_deletes_what_expired_and_says_how_much(
    db: str, store: Store, run: Run, run_json: RunJson
):
    user = in_unit(store, users.create_user, "张三", "13800138000", None)
    with store() as session:
        for expires_at in (utcnow() - timedelta(minutes=1), utcnow() + timedelta(hours=1)):
            sessions.start(session, user, ["sms"]).session.expires_at = expires_at
        session.commit()
    deleted = run_json("db", "prune")["deleted"]
    assert deleted["sso_sessions"] == 1
    assert set(deleted) >= {"authorization_codes", "access_tokens", "refresh_tokens"}
    assert all(isinstance(count, int) for count in deleted.values())
    again = run("db", "prune")
    assert again.code == 0 and "sso_sessions: 0 deleted" in again.out


def test_serve_runs_the_app_factory_on_a_migrated_database(
    db: str, run: Run, uvicorn_calls: list[Any]
):
    assert run("serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "3").code == 0
    assert uvicorn_calls == [
        (
            ("iam.app:create_app_from_environment",),
            {
                "factory": True,
                "host": "0.0.0.0",
                "port": 9000,
                "workers": 3,
                "proxy_headers": True,
                "access_log": False,
                "log_config": log_config("text"),
            },
        )
    ]


def test_serve_with_workers_shares_one_metrics_directory_while_it_runs(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run
):
    """Workers count into one directory so that /metrics on any of them tells the instance."""
    seen: list[str | None] = []
    monkeypatch.delenv(MULTIPROC_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(
        serve.uvicorn, "run", lambda *a, **k: seen.append(os.environ.get(MULTIPROC_DIR_VARIABLE))
    )
    assert run("serve", "--workers", "2").code == 0
    assert run("serve", "--workers", "1").code == 0
    assert seen[0] is not None and seen[1] is None
    assert not os.path.exists(seen[0])  # removed when the server stopped
    assert MULTIPROC_DIR_VARIABLE not in os.environ


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_serve_refuses_fewer_than_one_worker(
    db: str, run: Run, uvicorn_calls: list[Any], workers: str
):
    assert_error(run("serve", "--workers", workers), "--workers", "at least 1")
    assert uvicorn_calls == []


@pytest.mark.parametrize("value", ["token=0/60", "token=ten/60", "nosuch=5/60", "token"])
def test_serve_refuses_a_bad_rate_limit_setting(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any], value: str
):
    monkeypatch.setenv("IAM_RATE_LIMITS", value)
    assert_error(run("serve"), "IAM_RATE_LIMITS")
    assert uvicorn_calls == []


def test_serve_refuses_the_console_sms_backend_outside_dev_mode(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any]
):
    """`console` writes codes and full numbers to the log: a production log is no outbox."""
    monkeypatch.delenv("IAM_SMS_BACKEND")
    assert_error(run("serve"), "IAM_SMS_BACKEND", "IAM_DEV_MODE")
    assert uvicorn_calls == []


def test_serve_logs_in_the_configured_format(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any]
):
    monkeypatch.setenv("IAM_LOG_FORMAT", "json")
    assert run("serve").code == 0
    assert uvicorn_calls[0][1]["log_config"] == log_config("json")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "id.example.com", ""])
def test_serve_refuses_dev_mode_on_a_non_loopback_host(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any], host: str
):
    """Dev mode shows SMS codes to whoever reaches the server: a loopback issuer is not enough
    when the socket listens on every interface."""
    monkeypatch.setenv("IAM_ISSUER", "http://127.0.0.1:8000")
    monkeypatch.setenv("IAM_DEV_MODE", "true")
    assert_error(run("serve", "--host", host), "IAM_DEV_MODE", "--host", repr(host))
    assert uvicorn_calls == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_serve_runs_dev_mode_on_a_loopback_host(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any], host: str
):
    monkeypatch.setenv("IAM_ISSUER", "http://127.0.0.1:8000")
    monkeypatch.setenv("IAM_DEV_MODE", "true")
    assert run("serve", "--host", host).code == 0
    assert uvicorn_calls[0][1]["host"] == host


@pytest.mark.parametrize("argv", [["clients", "list"], ["serve"], ["db", "upgrade"], ["demo"]])
def test_a_bad_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, run: Run, argv: list[str], uvicorn_calls: list[Any]
):
    monkeypatch.setenv("IAM_ISSUER", "ftp://x")
    assert_error(run(*argv), "IAM_ISSUER", "ftp://x")
    assert uvicorn_calls == []


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch, run: Run):
    monkeypatch.setenv("IAM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert_error(run("clients", "list"), "the database cannot be used")


def test_usage_errors_keep_argparse_exit_code(run: Run):
    for argv in ([], ["clients"], ["clients", "create", "--name", "x"], ["nonsense"]):
        with pytest.raises(SystemExit) as exited:
            run(*argv)
        assert exited.value.code == 2


# --- clients ----------------------------------------------------------------------------------


def test_clients_create_confidential(db: str, run_json: RunJson):
    record = run_json(
        "clients", "create", "--name", "Payroll",
        "--redirect-uri", "https://payroll.example.com/cb",
        "--redirect-uri", "http://127.0.0.1:5000/cb",
        "--context-policy", "required", "--context-claim", "org_context",
        "--post-logout-redirect-uri", "https://payroll.example.com/bye",
    )  # fmt: skip
    assert record["client_id"].startswith("c_")
    assert isinstance(record["client_secret"], str) and len(record["client_secret"]) >= 40
    assert record | {"client_id": "-", "client_secret": "-", "created_at": "-"} == {
        "client_id": "-",
        "client_secret": "-",
        "name": "Payroll",
        "public": False,
        "admin": False,
        "redirect_uris": ["https://payroll.example.com/cb", "http://127.0.0.1:5000/cb"],
        "post_logout_redirect_uris": ["https://payroll.example.com/bye"],
        "context_policy": "required",
        "context_claim": "org_context",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes": ["openid", "profile", "email", "phone", "offline_access"],
        "access_token_ttl": 600,
        "id_token_ttl": 3600,
        "refresh_token_ttl": 2592000,
        "has_previous_secret": False,
        "initiate_login_uri": None,
        "backchannel_logout_uri": None,
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": None,
        "jwks_uri": None,
        "allowed_origins": [],
        "access_token_signing_alg": "RS256",
        "created_at": "-",
        "secret_rotated_at": None,
    }
    assert record["created_at"].endswith("Z")  # the admin API's record: RFC 3339 UTC


def test_clients_create_public_has_no_secret(db: str, run_json: RunJson):
    record = run_json(
        "clients", "create", "--name", "SPA", "--redirect-uri", "https://spa.example/cb", "--public"
    )
    assert record["client_secret"] is None
    assert record["public"] is True
    assert record["context_policy"] == "none"
    assert "client_credentials" not in record["grant_types"]


def test_clients_create_human_form(db: str, run: Run):
    ran = run("clients", "create", "--name", "HR", "--redirect-uri", "https://hr.example/cb")
    assert ran.code == 0
    assert "client_id:" in ran.out and "client_secret:" in ran.out
    assert "shown only now" in ran.out


def test_clients_list_show_rotate_delete(db: str, store: Store, run: Run, run_json: RunJson):
    created = run_json("clients", "create", "--name", "A", "--redirect-uri", "https://a.example/cb")
    client_id, first_secret = created["client_id"], created["client_secret"]

    listed = run_json("clients", "list")
    assert [client["client_id"] for client in listed["clients"]] == [client_id]
    assert "client_secret" not in listed["clients"][0]
    shown = run_json("clients", "show", client_id)
    assert shown == listed["clients"][0]

    rotated = run_json("clients", "rotate-secret", client_id)
    assert rotated["client_id"] == client_id
    assert rotated["client_secret"] not in (None, first_secret)
    assert rotated["secret_rotated_at"] is not None
    client = in_unit(store, clients.get_client, client_id)
    assert client.check_client_secret(rotated["client_secret"])
    assert client.check_client_secret(first_secret)  # the previous one stays valid

    plain = run("clients", "rotate-secret", client_id)
    assert plain.code == 0 and len(plain.out.strip().split()) == 1  # just the secret

    assert run_json("clients", "delete", client_id) == {"client_id": client_id, "deleted": True}
    assert run_json("clients", "list") == {"clients": []}
    assert_error(run("clients", "show", client_id), client_id)


@pytest.mark.parametrize("command", ["show", "rotate-secret", "delete"])
def test_unknown_client(db: str, run: Run, command: str):
    assert_error(run("clients", command, "c_nobody"), "c_nobody")


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb#frag",
        "http://app.example/cb",
        "https://*.app.example/cb",
        "/relative/cb",
    ],
)
def test_bad_redirect_uri(db: str, run: Run, uri: str):
    ran = run("clients", "create", "--name", "X", "--redirect-uri", uri)
    assert_error(ran, "redirect_uri", uri)


def test_bad_post_logout_redirect_uri(db: str, run: Run):
    ran = run(
        "clients", "create", "--name", "X", "--redirect-uri", "https://a.example/cb",
        "--post-logout-redirect-uri", "http://evil.example/",
    )  # fmt: skip
    assert_error(ran, "post_logout_redirect_uri")


def test_bad_context_policy(db: str, run: Run):
    ran = run(
        "clients", "create", "--name", "X", "--redirect-uri", "https://a.example/cb",
        "--context-policy", "sometimes",
    )  # fmt: skip
    assert_error(ran, "context_policy", "none, optional, required")


START = "https://crm.example/start"


def test_clients_initiate_login_uri_is_set_shown_changed_and_removed(
    db: str, store: Store, run: Run, run_json: RunJson
):
    created = run_json(
        "clients", "create", "--name", "CRM", "--redirect-uri", "https://crm.example/cb",
        "--initiate-login-uri", START,
    )  # fmt: skip
    client_id = created["client_id"]
    assert created["initiate_login_uri"] == START
    assert run_json("clients", "show", client_id)["initiate_login_uri"] == START
    assert run_json("clients", "list")["clients"][0]["initiate_login_uri"] == START
    shown = run("clients", "show", client_id).out
    assert re.search(rf"^initiate_login_uri: +{re.escape(START)}$", shown, re.M), shown
    assert run("clients", "list").out.rstrip("\n").endswith(f"CRM  {START}")

    moved = "http://127.0.0.1:8002/initiate"
    updated = run_json("clients", "update", client_id, "--initiate-login-uri", moved)
    assert (updated["client_id"], updated["initiate_login_uri"]) == (client_id, moved)
    assert "client_secret" not in updated
    assert in_unit(store, clients.get_client, client_id).initiate_login_uri == moved
    removed = run_json("clients", "update", client_id, "--initiate-login-uri", "")
    assert removed["initiate_login_uri"] is None
    assert in_unit(store, clients.get_client, client_id).initiate_login_uri is None
    assert run("clients", "list").out.rstrip("\n").endswith("CRM")  # none: nothing after
    plain = run("clients", "update", client_id, "--initiate-login-uri", START).out
    assert re.search(rf"^initiate_login_uri: +{re.escape(START)}$", plain, re.M), plain


@pytest.mark.parametrize(
    "uri",
    [
        "http://crm.example/start",
        "https://crm.example/start#top",
        "crm.example/start",
        "https://*.crm.example/start",
    ],
)
def test_a_bad_initiate_login_uri_is_refused_and_nothing_changes(
    db: str, store: Store, run: Run, run_json: RunJson, uri: str
):
    refused = run(
        "clients", "create", "--name", "X", "--redirect-uri", "https://a.example/cb",
        "--initiate-login-uri", uri,
    )  # fmt: skip
    assert_error(refused, "initiate_login_uri", uri)
    assert run_json("clients", "list") == {"clients": []}

    created = run_json(
        "clients", "create", "--name", "X", "--redirect-uri", "https://a.example/cb",
        "--initiate-login-uri", START,
    )  # fmt: skip
    before = in_unit(store, clients.get_client, created["client_id"])
    assert_error(
        run("clients", "update", created["client_id"], "--initiate-login-uri", uri),
        "initiate_login_uri",
        uri,
    )
    after = in_unit(store, clients.get_client, created["client_id"])
    assert (after.initiate_login_uri, after.updated_at) == (START, before.updated_at)


def test_clients_access_token_alg_is_set_shown_and_changed(
    db: str, store: Store, run: Run, run_json: RunJson
):
    created = run_json(
        "clients", "create", "--name", "M2M", "--redirect-uri", "https://m2m.example/cb",
        "--access-token-alg", "ES256",
    )  # fmt: skip
    client_id = created["client_id"]
    assert created["access_token_signing_alg"] == "ES256"
    assert in_unit(store, clients.get_client, client_id).access_token_signing_alg == "ES256"
    shown = run("clients", "show", client_id).out
    assert re.search(r"^access_token_signing_alg: +ES256$", shown, re.M), shown
    updated = run_json("clients", "update", client_id, "--access-token-alg", "RS256")
    assert updated["access_token_signing_alg"] == "RS256"
    assert_error(
        run("clients", "update", client_id, "--access-token-alg", "HS256"),
        "access_token_signing_alg",
    )
    refused = run(
        "clients", "create", "--name", "X", "--redirect-uri", "https://x.example/cb",
        "--access-token-alg", "none",
    )  # fmt: skip
    assert_error(refused, "access_token_signing_alg", "RS256, ES256")
    assert [c["client_id"] for c in run_json("clients", "list")["clients"]] == [client_id]


def test_clients_update_needs_a_change_and_a_known_client(db: str, run: Run, run_json: RunJson):
    assert_error(run("clients", "update", "c_nobody", "--initiate-login-uri", START), "c_nobody")
    created = run_json("clients", "create", "--name", "A", "--redirect-uri", "https://a.example/cb")
    assert_error(run("clients", "update", created["client_id"]), "--initiate-login-uri")


def test_public_client_has_no_secret_to_rotate(db: str, run: Run, run_json: RunJson):
    created = run_json(
        "clients", "create", "--name", "SPA", "--redirect-uri", "https://s.example/cb", "--public"
    )
    assert_error(run("clients", "rotate-secret", created["client_id"]), "public")


# --- users ------------------------------------------------------------------------------------


def test_users_create_list_show(db: str, run: Run, run_json: RunJson):
    user = run_json(
        "users", "create", "--name", "张三", "--phone", "13800138000", "--email", "z@example.com"
    )
    assert user | {"user_id": "-", "id": "-", "created_at": "-", "updated_at": "-"} == {
        "user_id": "-",
        "id": "-",  # the admin API's record: `id` is the contract's `user_id`
        "name": "张三",
        "phone": "+8613800138000",
        "email": "z@example.com",
        "status": "active",
        "phone_verified_at": None,
        "created_at": "-",
        "updated_at": "-",
        "link_count": 0,
    }
    assert user["id"] == user["user_id"]
    assert user["created_at"].endswith("Z")  # RFC 3339 UTC, as the admin API shows it
    assert run_json("users", "list") == {"users": [user]}
    assert run_json("users", "list", "--query", "8000") == {"users": [user]}
    assert run_json("users", "list", "--query", "nobody") == {"users": []}
    assert run_json("users", "show", user["user_id"]) == user | {"links": [], "sessions": []}
    assert "张三" in run("users", "show", user["user_id"]).out


def test_users_link_and_show(db: str, run: Run, run_json: RunJson):
    user = run_json("users", "create", "--name", "Zhang San", "--phone", "+8613800138000")
    link = run_json(
        "users", "link", user["user_id"], "--corp-id", "CORP_A", "--userid", "ZhangSan",
        "--metadata", '{"department": ["Sales"], "position": "Manager"}',
    )  # fmt: skip
    assert link | {"link_id": "-", "id": "-", "created_at": "-", "updated_at": "-"} == {
        "link_id": "-",
        "id": "-",  # the admin API's record: `id` is the contract's `link_id`
        "provider": "wecom",
        "provider_user_id": "CORP_A/ZhangSan",
        "user_id": user["user_id"],
        "metadata": {"department": ["Sales"], "position": "Manager"},
        "status": "active",
        "created_at": "-",
        "updated_at": "-",
        "last_login_at": None,
        "disabled_at": None,
        "disabled_reason": None,
    }
    assert link["id"] == link["link_id"]
    other = run_json(
        "users", "link", user["user_id"], "--corp-id", "CORP_B", "--userid", "zhangsan_b"
    )
    assert other["metadata"] == {}
    shown = run_json("users", "show", user["user_id"])
    assert [item["link_id"] for item in shown["links"]] == [link["link_id"], other["link_id"]]
    assert "CORP_A/ZhangSan" in run("users", "show", user["user_id"]).out


def test_users_link_refuses_a_member_linked_already(db: str, run: Run, run_json: RunJson):
    first = run_json("users", "create", "--name", "A", "--phone", "13800138000")
    second = run_json("users", "create", "--name", "B", "--phone", "13900139000")
    run_json("users", "link", first["user_id"], "--corp-id", "CORP_A", "--userid", "ZhangSan")
    for user_id, userid in ((first["user_id"], "ZhangSan"), (second["user_id"], "zhangsan")):
        ran = run("users", "link", user_id, "--corp-id", "CORP_A", "--userid", userid)
        assert_error(ran, "CORP_A/ZhangSan", "already linked")


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('"text"', "JSON object")],
)
def test_users_link_bad_metadata(db: str, run: Run, run_json: RunJson, metadata: str, reason: str):
    user = run_json("users", "create", "--name", "A", "--phone", "13800138000")
    ran = run(
        "users", "link", user["user_id"], "--corp-id", "C", "--userid", "u", "--metadata", metadata
    )
    assert_error(ran, "metadata", reason)
    assert run_json("users", "show", user["user_id"])["links"] == []


def test_unknown_user(db: str, run: Run):
    assert_error(run("users", "show", "nobody"), "nobody")
    assert_error(run("users", "link", "nobody", "--corp-id", "C", "--userid", "u"), "nobody")


def test_duplicate_phone(db: str, run: Run, run_json: RunJson):
    run_json("users", "create", "--name", "A", "--phone", "+8613800138000")
    assert_error(
        run("users", "create", "--name", "B", "--phone", "138 0013 8000"), "+8613800138000"
    )


@pytest.mark.parametrize("phone", ["12345", "23800138000", "+0123456789", "phone"])
def test_bad_phone(db: str, run: Run, phone: str):
    assert_error(run("users", "create", "--name", "A", "--phone", phone), "phone")


def test_bad_email(db: str, run: Run):
    ran = run("users", "create", "--name", "A", "--phone", "13800138000", "--email", "nope")
    assert_error(ran, "email")


# --- keys and admins --------------------------------------------------------------------------


def test_keys_rotate_and_list(db: str, run: Run, run_json: RunJson):
    """A rotation makes a new key of each algorithm (RS256, ES256); the list shows both, which
    one signs for each, and the retired ones."""
    assert run_json("keys", "list") == {"keys": []}
    first = run_json("keys", "rotate")
    assert set(first) == {"keys"}
    for key in first["keys"]:
        assert set(key) == {  # the admin API's record
            *("kid", "alg", "created_at", "retired_at", "publish_until"),
            *("signing", "published", "public_jwk"),
        }
        assert "d" not in key["public_jwk"]  # never the private key
    assert [(k["alg"], k["public_jwk"]["kty"], k["signing"]) for k in first["keys"]] == [
        ("RS256", "RSA", True),
        ("ES256", "EC", True),
    ]
    lines = run("keys", "rotate").out.strip().splitlines()
    second = [line.split()[0] for line in lines]
    assert [line.split()[1] for line in lines] == ["RS256", "ES256"]
    listed = run_json("keys", "list")["keys"]
    assert {key["kid"] for key in listed[:2]} == set(second)
    assert {key["kid"] for key in listed[2:]} == {key["kid"] for key in first["keys"]}
    assert [(key["signing"], key["retired_at"] is None) for key in listed] == [
        (True, True),
        (True, True),
        (False, False),
        (False, False),
    ]
    assert all(key["publish_until"] is not None for key in listed[2:])
    assert sorted(key["alg"] for key in listed) == ["ES256", "ES256", "RS256", "RS256"]
    text = run("keys", "list").out
    assert text.count("signing") == 2 and text.count("retired") == 2
    assert all(set(key) == set(first["keys"][0]) for key in listed)  # no private material


def test_admin_create(db: str, run: Run, run_json: RunJson):
    password = "correct horse battery"
    admin = run_json("admin", "create", "--username", "root", "--password", password)
    assert set(admin) == {"admin_id", "username"} and admin["username"] == "root"
    ran = run("admin", "create", "--username", "root", "--password", password)
    assert_error(ran, "root", "already exists")
    assert password not in ran.err


def test_admin_weak_password(db: str, run: Run):
    ran = run("admin", "create", "--username", "root", "--password", "short")
    assert_error(ran, "password", "12 characters")
    assert "short" not in ran.err


# --- the installed command --------------------------------------------------------------------


def test_the_console_script_is_main():
    (script,) = entry_points(group="console_scripts", name="iam")
    assert script.load() is main


def test_clients_create_in_a_real_process(db: str, tmp_path: Path):
    environ = {**os.environ, "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, "-m", "iam", "clients", "create", "--name", "Sub",
         "--redirect-uri", "https://sub.example/cb", "--json"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    record = json.loads(result.stdout)
    assert record["client_id"].startswith("c_") and record["client_secret"]


# --- demo -------------------------------------------------------------------------------------


def demo_url(out: str) -> str:
    (url,) = [line.strip() for line in out.splitlines() if "/authorize?" in line]
    return url


def test_demo_migrates_seeds_prints_and_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Run, uvicorn_calls: list[Any]
):
    monkeypatch.delenv("IAM_ISSUER")
    first = run("demo", "--port", "8123")
    issuer = "http://127.0.0.1:8123"
    assert (first.code, first.err) == (0, "")
    assert (tmp_path / "var" / "iam.db").is_file()
    for expected in (
        f"{issuer}/login",
        f"{issuer}/dev/outbox",
        "client_id:      demo-app",
        f"redirect_uri:   {issuer}/dev/callback",
        "+8613800138000",
        "code_verifier (PKCE S256): ",
        f"{issuer}/token",
        "Workbench links",
        f"{issuer}/launch/learning-platform/wecom/wwsubsidiarya0001",
        f"{issuer}/launch/crm/wecom/wwsubsidiaryb0002",
    ):
        assert expected in first.out
    assert demo_url(first.out).startswith(f"{issuer}/authorize?")
    assert (os.environ["IAM_DEV_MODE"], os.environ["IAM_ISSUER"]) == ("true", issuer)
    [(args, kwargs)] = uvicorn_calls
    assert kwargs == {
        "host": "127.0.0.1",
        "port": 8123,
        "workers": 1,
        "proxy_headers": True,
        "access_log": False,
        "log_config": log_config("text"),
    }
    settings = args[0].state.settings
    assert (settings.dev_mode, settings.issuer) == (True, issuer)
    assert settings.database_url == "sqlite:///./var/iam.db"

    again = run("demo", "--port", "8123")
    secret = [line for line in first.out.splitlines() if "client_secret:" in line]
    assert again.code == 0 and secret[0] not in again.out  # a new secret every start


def test_demo_without_pyjwt_says_to_install_the_demo_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run: Run, uvicorn_calls: list[Any]
):
    """PyJWT and httpx2 (the demo's relying parties) are in the `demo` extra, not dependencies of
    the server: without them `iam demo` is one line saying how to get them, before touching
    anything (and before Authlib's httpx client, which warns without httpx2, is imported)."""
    monkeypatch.delenv("IAM_ISSUER")
    for missing in ("jwt", "httpx2"):
        monkeypatch.setitem(sys.modules, missing, None)  # `import jwt` raises ImportError
    for module in [name for name in sys.modules if name.startswith("authlib.integrations.")]:
        monkeypatch.delitem(sys.modules, module)
    for module in ("iam.devtools.demo", "iam.devtools.demo_apps"):
        monkeypatch.delitem(sys.modules, module, raising=False)
        monkeypatch.delattr(sys.modules["iam.devtools"], module.rsplit(".")[-1], raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Authlib's warning would escape as an exception
        ran = run("demo", "--port", "8123")
    assert_error(ran, "demo extra", "'.[demo]'", "make demo")
    assert uvicorn_calls == []
    assert not (tmp_path / "var").exists()


def test_demo_refuses_a_non_loopback_issuer(db: str, run: Run, uvicorn_calls: list[Any]):
    """IAM_ISSUER is set (https://testserver): dev mode would show SMS codes to anyone."""
    assert_error(run("demo"), "IAM_DEV_MODE", "loopback")
    assert uvicorn_calls == []


def test_demo_on_a_configured_database_and_issuer(
    db: str, monkeypatch: pytest.MonkeyPatch, run: Run, uvicorn_calls: list[Any]
):
    monkeypatch.setenv("IAM_ISSUER", "http://localhost:9999")
    assert run("demo").code == 0
    settings = uvicorn_calls[0][0][0].state.settings
    assert (settings.issuer, settings.database_url) == ("http://localhost:9999", db)


def test_an_admin_client_can_get_an_admin_api_token(db: str, run_json: RunJson):
    made = run_json(
        "clients",
        "create",
        "--name",
        "Ops",
        "--redirect-uri",
        "https://ops.example/cb",
        "--admin",
        "--json",
    )
    assert made["admin"] is True  # scopes list what an admin may grant; iam:admin is `admin`
    assert "iam:admin" not in made["scopes"]
    plain = run_json(
        "clients", "create", "--name", "CRM", "--redirect-uri", "https://crm.example/cb", "--json"
    )
    assert plain["admin"] is False
    assert "iam:admin" not in plain["scopes"]


def test_an_admin_client_cannot_be_public(db: str, run: Run):
    ran = run(
        "clients",
        "create",
        "--name",
        "Ops",
        "--redirect-uri",
        "https://ops.example/cb",
        "--admin",
        "--public",
    )
    assert ran.code == 1 and "admin" in ran.err
