"""Back-channel logout (OIDC Back-Channel Logout 1.0), through HTTP, with a real receiving HTTP
server on a loopback port: every way a session ends tells the apps it gave tokens to, with a
logout token signed by a key of /jwks.json; delivery retries, gives up, survives a restart, is
done once by two instances, and never holds up the person's logout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import AdminWorld
from support.browser import Front
from support.clocks import Clock
from support.constants import ISSUER, RP_REDIRECT, TEST_SECRET
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.cli import main
from iam.db.models import AuditEvent, BackchannelLogout
from iam.db.store import Store
from iam.services import backchannel, clients, retention
from iam.settings import Settings

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Receiver:
    """An app's back-channel logout endpoint: a real HTTP server on a free loopback port that
    records each POST (on arrival), then waits `delay` seconds and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                receiver.posts.append(
                    {"path": self.path, "type": self.headers.get("content-type"), "body": body}
                )
                receiver.arrived.set()
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/backchannel-logout"

    def tokens(self) -> list[str]:
        return [parse_qs(post["body"])["logout_token"][0] for post in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def dead_uri() -> str:
    """A loopback address where nothing listens (an app that is down)."""
    server = Receiver()
    uri = server.uri
    server.close()
    return uri


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """The app with its worker's loop off: each test sends the queue itself (`send_due`)."""
    app.state.backchannel.interval = None
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        yield test_client


def told(store: Store, world: World, uri: str) -> None:
    """The confidential RP asks to be told of logouts at `uri`."""
    in_unit(
        store,
        clients.update_client,
        world.rp.client.client_id,
        actor="test",
        backchannel_logout_uri=uri,
    )


def send_due(client: TestClient) -> int:
    """One round of the app's worker, in the app's event loop."""
    worker = client.app.state.backchannel  # type: ignore[attr-defined]
    return client.portal.call(worker.run_once)  # type: ignore[union-attr]


def unverified_claims(token: str) -> dict[str, Any]:
    return json.loads(extract_compact(token.encode()).payload)


def assert_logout_token(client: TestClient, token: str, *, aud: str, sid: str, sub: str) -> None:
    """Signed (RS256) by a key /jwks.json publishes, `typ` logout+jwt, every claim of Back-Channel
    Logout 1.0 2.4, and no nonce."""
    jwks = KeySet.import_key_set(client.get("/jwks.json").json())
    decoded = jwt.decode(token, jwks, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt"
    assert decoded.header["kid"] in {key.kid for key in jwks.keys}
    claims = decoded.claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] == aud
    assert claims["sid"] == sid
    assert claims["sub"] == sub
    assert claims["events"] == {EVENT: {}}
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    now = time.time()
    assert now - 60 <= claims["iat"] <= now + 5
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert "nonce" not in claims


def audit_events(store: Store, prefix: str = "logout.backchannel") -> list[AuditEvent]:
    with store() as db:
        return list(
            db.scalars(
                select(AuditEvent)
                .where(AuditEvent.event.startswith(prefix))
                .order_by(AuditEvent.id)
            )
        )


def rows(store: Store) -> list[BackchannelLogout]:
    with store() as db:
        return list(db.scalars(select(BackchannelLogout)))


def log_out(front: Front) -> None:
    """RP-initiated logout, confirmed."""
    done = front.client.post("/logout", data={"csrf_token": front.csrf("/logout")})
    assert done.status_code == 200, done.text


def test_discovery_announces_back_channel_logout(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    assert document["backchannel_logout_supported"] is True
    assert document["backchannel_logout_session_supported"] is True


def test_rp_initiated_logout_posts_a_signed_logout_token(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    told(store, world, receiver.uri)
    tokens = front.tokens(world)
    sid = unverified_claims(tokens["id_token"])["sid"]
    front.tokens(world, public=True)  # the public app has tokens too, but no uri
    log_out(front)
    assert receiver.posts == [], "nothing is sent before the worker's round"

    assert send_due(front.client) == 1
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["path"] == "/backchannel-logout"
    assert post["type"] == "application/x-www-form-urlencoded"
    (token,) = receiver.tokens()
    assert_logout_token(
        front.client, token, aud=world.rp.client.client_id, sid=sid, sub=world.user.id
    )
    sent = audit_events(store)
    assert [event.event for event in sent] == ["logout.backchannel_sent"]
    assert sent[0].client_id == world.rp.client.client_id
    assert sent[0].detail["sid"] == sid
    assert send_due(front.client) == 0
    assert len(receiver.posts) == 1, "sent once"


def test_an_app_without_tokens_from_the_session_is_not_told(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    other = in_unit(
        store, clients.create_client, "HR", [RP_REDIRECT], backchannel_logout_uri=receiver.uri
    )
    told(store, world, receiver.uri)
    front.tokens(world)
    log_out(front)
    send_due(front.client)
    assert [unverified_claims(t)["aud"] for t in receiver.tokens()] == [world.rp.client.client_id]
    assert other.client.client_id not in {row.client_id for row in rows(store)}


def test_an_app_without_a_uri_is_not_told(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    front.tokens(world)
    front.tokens(world, public=True)
    log_out(front)
    assert send_due(front.client) == 0
    assert receiver.posts == [] and rows(store) == []


def test_an_admin_ending_sessions_tells_the_apps(
    front: Front, world: World, store: Store, receiver: Receiver, admin_world: AdminWorld
) -> None:
    told(store, world, receiver.uri)
    sid = unverified_claims(front.tokens(world)["id_token"])["sid"]
    answer = admin_world.console.delete(
        f"/admin/api/users/{world.user.id}/sessions", headers=admin_world.bearer
    )
    assert answer.status_code == 200, answer.text
    assert send_due(front.client) == 1
    (token,) = receiver.tokens()
    assert_logout_token(
        front.client, token, aud=world.rp.client.client_id, sid=sid, sub=world.user.id
    )


def test_disabling_a_person_tells_the_apps(
    front: Front, world: World, store: Store, receiver: Receiver, admin_world: AdminWorld
) -> None:
    told(store, world, receiver.uri)
    sid = unverified_claims(front.tokens(world)["id_token"])["sid"]
    answer = admin_world.console.patch(
        f"/admin/api/users/{world.user.id}", json={"status": "disabled"}, headers=admin_world.bearer
    )
    assert answer.status_code == 200, answer.text
    assert send_due(front.client) == 1
    (token,) = receiver.tokens()
    assert_logout_token(
        front.client, token, aud=world.rp.client.client_id, sid=sid, sub=world.user.id
    )
    assert rows(store)[0].reason == "user disabled"


def test_an_expired_session_is_told_when_prune_sweeps_it(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    told(store, world, receiver.uri)
    sid = unverified_claims(front.tokens(world)["id_token"])["sid"]
    later = backchannel.utcnow() + timedelta(days=60)  # the session and every token expired
    for table in retention.TABLES:  # as `iam db prune` does: one unit per table
        in_unit(store, retention.prune, later, tables=[table])
    assert [row.reason for row in rows(store)] == ["expired"]
    assert send_due(front.client) == 1
    (token,) = receiver.tokens()
    assert_logout_token(
        front.client, token, aud=world.rp.client.client_id, sid=sid, sub=world.user.id
    )


def test_a_live_session_is_not_told_by_prune(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    told(store, world, receiver.uri)
    front.tokens(world)
    for table in retention.TABLES:
        in_unit(store, retention.prune, tables=[table])
    assert rows(store) == []


def test_an_app_that_is_down_is_tried_again_later_then_given_up(
    front: Front,
    world: World,
    store: Store,
    dead_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock().install(monkeypatch, backchannel)
    told(store, world, dead_uri)
    front.tokens(world)
    log_out(front)
    assert send_due(front.client) == 1
    (failed,) = audit_events(store)
    assert (failed.event, failed.outcome, failed.detail["attempt"]) == (
        "logout.backchannel_failed",
        "failure",
        1,
    )
    assert send_due(front.client) == 0, "not again before its delay"
    for delay in backchannel.RETRY_DELAYS:
        clock.advance(seconds=delay.total_seconds() - 1)
        assert send_due(front.client) == 0
        clock.advance(seconds=1)
        assert send_due(front.client) == 1
    events = [(event.event, event.detail["attempt"]) for event in audit_events(store)]
    tries = backchannel.MAX_ATTEMPTS
    assert events == [("logout.backchannel_failed", n) for n in range(1, tries + 1)] + [
        ("logout.backchannel_given_up", tries)
    ]
    assert [row.status for row in rows(store)] == ["given_up"]
    gave_up_at = clock.now
    clock.advance(days=1)
    assert send_due(front.client) == 0, "given up is given up"

    # `iam db prune` forgets it once it has been kept a while.
    kept = gave_up_at + backchannel.KEPT_FOR
    in_unit(store, retention.prune, kept - timedelta(minutes=1), tables=["backchannel_logouts"])
    assert len(rows(store)) == 1
    assert in_unit(store, retention.prune, kept, tables=["backchannel_logouts"]) == {
        "backchannel_logouts": 1
    }
    assert rows(store) == []


def test_an_app_answering_an_error_is_tried_again(
    front: Front, world: World, store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, backchannel)
    told(store, world, receiver.uri)
    front.tokens(world)
    log_out(front)
    receiver.status = 500
    send_due(front.client)
    assert audit_events(store)[-1].detail["error"] == "HTTP 500"
    receiver.status = 200
    clock.advance(seconds=backchannel.RETRY_DELAYS[0].total_seconds())
    assert send_due(front.client) == 1
    assert [e.event for e in audit_events(store)] == [
        "logout.backchannel_failed",
        "logout.backchannel_sent",
    ]
    assert len(receiver.posts) == 2
    first, second = (unverified_claims(token) for token in receiver.tokens())
    assert first["jti"] != second["jti"], "each try is a fresh token"


def test_a_restarted_server_delivers_what_was_pending(
    front: Front, world: World, store: Store, receiver: Receiver, settings: Settings, sms
) -> None:
    told(store, world, receiver.uri)
    front.tokens(world)
    log_out(front)  # this instance's worker never runs: it "stops" here
    assert [row.status for row in rows(store)] == ["pending"]

    restarted = create_app(settings, store=store, sms=sms)
    restarted.state.backchannel.interval = 0.05
    with TestClient(restarted, base_url=ISSUER):
        assert receiver.arrived.wait(10), "the new instance's worker sends it by itself"
        deadline = time.monotonic() + 10
        while rows(store)[0].status != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(receiver.posts) == 1
    assert [row.status for row in rows(store)] == ["sent"]


def test_two_instances_deliver_once(
    front: Front, world: World, store: Store, receiver: Receiver, settings: Settings, sms
) -> None:
    told(store, world, receiver.uri)
    front.tokens(world)
    log_out(front)
    receiver.delay = 0.5  # both rounds run while the first send is still under way
    other = create_app(settings, store=store, sms=sms)
    other.state.backchannel.interval = None
    with TestClient(other, base_url=ISSUER) as second:
        claimed: list[int] = []
        rounds = [
            threading.Thread(target=lambda c=c: claimed.append(send_due(c)))
            for c in (front.client, second)
        ]
        for each in rounds:
            each.start()
        for each in rounds:
            each.join(20)
    assert sorted(claimed) == [0, 1]
    assert len(receiver.posts) == 1
    assert [event.event for event in audit_events(store)] == ["logout.backchannel_sent"]


def test_the_logout_does_not_wait_for_the_app(
    world: World, store: Store, receiver: Receiver, settings: Settings, sms
) -> None:
    told(store, world, receiver.uri)
    receiver.delay = 5.0
    app = create_app(settings, store=store, sms=sms)
    app.state.backchannel.interval = 0.05  # the worker runs by itself, as in production
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as test_client:
        front = Front(test_client, sms)
        front.tokens(world)
        started = time.monotonic()
        log_out(front)
        assert time.monotonic() - started < 2.0
        assert receiver.arrived.wait(5), "the worker sent it after the logout committed"
        # The app is still answering others while the receiver holds the send.
        started = time.monotonic()
        assert test_client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 2.0


# --- registering the uri: the CLI, the admin API, the console's form ------------------------

BACKCHANNEL = "https://crm.example.com/backchannel-logout"


def test_the_cli_sets_changes_and_removes_the_uri(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "IAM_DATABASE_URL": database_url,
        "IAM_SECRET_KEY": TEST_SECRET,
        "IAM_ISSUER": ISSUER,
        "IAM_SMS_BACKEND": "webhook:https://sms.example.com/send",
    }.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> dict[str, Any]:
        assert main([*argv, "--json"]) == 0
        record: dict[str, Any] = json.loads(capsys.readouterr().out)
        return record

    created = run(
        "clients", "create", "--name", "CRM", "--redirect-uri", RP_REDIRECT,
        "--backchannel-logout-uri", BACKCHANNEL,
    )  # fmt: skip
    client_id = created["client_id"]
    assert created["backchannel_logout_uri"] == BACKCHANNEL
    assert run("clients", "show", client_id)["backchannel_logout_uri"] == BACKCHANNEL
    moved = "http://127.0.0.1:8002/backchannel-logout"
    updated = run("clients", "update", client_id, "--backchannel-logout-uri", moved)
    assert updated["backchannel_logout_uri"] == moved
    removed = run("clients", "update", client_id, "--backchannel-logout-uri", "")
    assert removed["backchannel_logout_uri"] is None
    assert main(["clients", "update", client_id, "--backchannel-logout-uri", "http://x.example/"])
    assert "backchannel_logout_uri" in capsys.readouterr().err


def test_the_api_sets_changes_and_removes_the_uri(admin_world: AdminWorld, store: Store) -> None:
    api, apps = admin_world.console, "/admin/api/apps"
    bearer = admin_world.bearer
    body = {"name": "CRM", "redirect_uris": [RP_REDIRECT]}
    plain = api.post(apps, json=body, headers=bearer)
    assert plain.json()["backchannel_logout_uri"] is None
    created = api.post(apps, json={**body, "backchannel_logout_uri": BACKCHANNEL}, headers=bearer)
    assert created.status_code == 201, created.text
    client_id = created.json()["client_id"]
    assert (
        api.get(f"{apps}/{client_id}", headers=bearer).json()["backchannel_logout_uri"]
        == BACKCHANNEL
    )
    moved = "http://127.0.0.1:8765/backchannel-logout"
    changed = api.patch(
        f"{apps}/{client_id}", json={"backchannel_logout_uri": moved}, headers=bearer
    )
    assert (changed.status_code, changed.json()["backchannel_logout_uri"]) == (200, moved)
    kept = api.patch(f"{apps}/{client_id}", json={"name": "CRM 2"}, headers=bearer)
    assert kept.json()["backchannel_logout_uri"] == moved
    refused = api.patch(
        f"{apps}/{client_id}", json={"backchannel_logout_uri": "http://x.example/"}, headers=bearer
    )
    assert (refused.status_code, refused.json()["field"]) == (422, "backchannel_logout_uri")
    removed = api.patch(f"{apps}/{client_id}", json={"backchannel_logout_uri": ""}, headers=bearer)
    assert (removed.status_code, removed.json()["backchannel_logout_uri"]) == (200, None)
    assert in_unit(store, clients.get_client, client_id).backchannel_logout_uri is None


def test_the_form_sets_and_removes_the_uri(admin_world: AdminWorld, store: Store) -> None:
    form = {
        "name": "CRM",
        "redirect_uris": RP_REDIRECT,
        "post_logout_redirect_uris": "",
        "scopes": ["openid", "profile"],
        "context_policy": "none",
        "context_claim": "",
        "access_token_ttl": "600",
        "id_token_ttl": "3600",
        "refresh_token_ttl": "86400",
    }
    page = admin_world.console.get("/admin/apps").text
    assert 'id="backchannel_logout_uri"' in page
    assert 'aria-describedby="backchannel_logout_uri-hint"' in page
    chinese = admin_world.console.get("/admin/apps", headers={"accept-language": "zh-CN"}).text
    assert "后端通道退出" in chinese
    created = admin_world.console.post(
        "/admin/apps",
        data={"csrf_token": admin_world.csrf(), **form, "backchannel_logout_uri": BACKCHANNEL},
    )
    assert created.status_code == 303, created.text
    (client,) = [c for c in in_unit(store, clients.list_clients) if c.name == "CRM"]
    assert client.backchannel_logout_uri == BACKCHANNEL
    edit = f"/admin/apps/{client.client_id}"
    assert (
        f'name="backchannel_logout_uri" value="{BACKCHANNEL}"' in admin_world.console.get(edit).text
    )
    bad = admin_world.console.post(
        edit,
        data={"csrf_token": admin_world.csrf(edit), **form, "backchannel_logout_uri": "ftp://x/"},
    )
    assert bad.status_code == 422 and 'id="backchannel_logout_uri-error"' in bad.text
    removed = admin_world.console.post(
        edit, data={"csrf_token": admin_world.csrf(edit), **form, "backchannel_logout_uri": ""}
    )
    assert removed.status_code == 303, removed.text
    assert in_unit(store, clients.get_client, client.client_id).backchannel_logout_uri is None


def test_the_logout_page_says_which_apps_are_signed_out(front: Front, world: World) -> None:
    front.tokens(world)
    asking = front.client.get("/logout").text
    assert "group sign-in" in asking and "apps that support it" in asking
    chinese = front.client.get("/logout", headers={"accept-language": "zh-CN"}).text
    assert "统一登录" in chinese and "支持统一退出的应用" in chinese
    done = front.client.post("/logout", data={"csrf_token": front.csrf("/logout")}).text
    assert "signed out of group sign-in" in done and "apps that support it" in done


def test_an_app_with_access_tokens_only_is_told_when_its_session_expires(
    front: Front, world: World, store: Store, receiver: Receiver
) -> None:
    """Expired access tokens of a live session are what says the app has to be told: `iam db
    prune` keeps them, for such an app, until the session ends."""
    told(store, world, receiver.uri)
    in_unit(store, clients.update_client, world.rp.client.client_id, actor="t", refresh_token_ttl=0)
    tokens = front.tokens(world)
    assert "refresh_token" not in tokens
    sid = unverified_claims(tokens["id_token"])["sid"]
    now = backchannel.utcnow()
    for moment in (now + timedelta(hours=2), now + timedelta(days=2)):  # token gone, then session
        for table in retention.TABLES:
            in_unit(store, retention.prune, moment, tables=[table])
    assert [row.reason for row in rows(store)] == ["expired"]
    assert send_due(front.client) == 1
    (token,) = receiver.tokens()
    assert_logout_token(
        front.client, token, aud=world.rp.client.client_id, sid=sid, sub=world.user.id
    )
