"""CORS for single-page apps (issue #15 item 11): `/token`, `/userinfo`, `/revoke`, JWKS and
discovery answer a browser's cross-origin requests, preflights included, from the origins of a
client's redirect URIs and its `allowed_origins`, and from no other origin."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from support.admin import AdminWorld
from support.browser import Front
from support.constants import PUBLIC_REDIRECT, RP_REDIRECT
from support.units import in_unit
from support.world import World

from iam.cli import main
from iam.db.models import Client
from iam.db.store import Store
from iam.errors import ValidationError
from iam.oidc import cors
from iam.services import clients

pytestmark = pytest.mark.usefixtures("reused_signing_key")

SPA_REDIRECT = "https://spa.example/callback"
SPA_ORIGIN = "https://spa.example"
ALLOWED = "https://app.spa.example:8443"
RP_ORIGIN = "https://rp.example"  # RP_REDIRECT's origin (the world's confidential app)
LOOPBACK_ORIGIN = "http://127.0.0.1:8765"  # PUBLIC_REDIRECT's origin (the world's public app)
#: Near misses of the registered origins: a browser would send each of them as it is.
LOOKALIKES = [
    "https://rp.example.evil.com",
    "https://evil.rp.example",
    "https://rp.example:8443",
    "http://rp.example",
    "https://spa.example.",
    "http://127.0.0.1:8766",
    "https://app.spa.example",
    "null",
]
CORS_ENDPOINTS = {"/token": "POST", "/userinfo": "GET", "/revoke": "POST"}
SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "content-security-policy")


@pytest.fixture
def spa(store: Store, world: World) -> clients.RegisteredClient:
    """A public single-page app with one more allowed origin than its redirect URI's."""
    return in_unit(
        store, clients.create_client, "SPA", [SPA_REDIRECT], public=True, allowed_origins=[ALLOWED]
    )


def preflight(client: TestClient, path: str, origin: str, method: str = "POST", headers=""):
    request_headers = {"origin": origin, "access-control-request-method": method}
    if headers:
        request_headers["access-control-request-headers"] = headers
    return client.options(path, headers=request_headers)


def assert_no_cors(answer) -> None:
    assert not [name for name in answer.headers if name.startswith("access-control-")], dict(
        answer.headers
    )


def vary(answer) -> set[str]:
    return {part.strip().lower() for part in answer.headers.get("vary", "").split(",")}


def assert_allowed(answer, origin: str) -> None:
    assert answer.headers.get("access-control-allow-origin") == origin, dict(answer.headers)
    assert "access-control-allow-credentials" not in answer.headers
    assert "origin" in vary(answer)


# --- preflights ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORS_ENDPOINTS)
def test_a_preflight_from_a_registered_origin_is_allowed(
    client: TestClient, spa, path: str
) -> None:
    for origin in (RP_ORIGIN, LOOPBACK_ORIGIN, SPA_ORIGIN, ALLOWED):
        assert_preflight_allowed(client, path, origin)


def assert_preflight_allowed(client: TestClient, path: str, origin: str) -> None:
    method = CORS_ENDPOINTS[path]
    answer = preflight(client, path, origin, method, "authorization, content-type")
    assert answer.status_code == 204, answer.text
    assert_allowed(answer, origin)
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert method in methods and "DELETE" not in methods
    allowed_headers = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert 60 <= int(answer.headers["access-control-max-age"]) <= 7200
    assert answer.content == b""
    for name in SECURITY_HEADERS:  # the security headers stay on CORS answers
        assert name in answer.headers


def test_the_userinfo_preflight_allows_both_of_its_methods(client: TestClient, spa) -> None:
    answer = preflight(client, "/userinfo", SPA_ORIGIN, "POST", "authorization")
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST"} <= methods
    token = preflight(client, "/token", SPA_ORIGIN, "POST").headers["access-control-allow-methods"]
    assert "GET" not in token


@pytest.mark.parametrize("path", CORS_ENDPOINTS)
def test_a_preflight_from_any_other_origin_is_refused(client: TestClient, spa, path: str) -> None:
    for origin in ("https://stranger.example", *LOOKALIKES):
        answer = preflight(client, path, origin, CORS_ENDPOINTS[path], "authorization")
        assert answer.status_code == 403, (origin, answer.text)
        assert_no_cors(answer)
        assert "origin" in vary(answer)
        for name in SECURITY_HEADERS:
            assert name in answer.headers


def test_an_options_request_that_is_no_preflight_is_handled_as_before(
    client: TestClient, spa
) -> None:
    """Without Access-Control-Request-Method it is a plain OPTIONS: /token takes only POST."""
    answer = client.options("/token", headers={"origin": SPA_ORIGIN})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert_allowed(answer, SPA_ORIGIN)  # an answer to an allowed origin, readable by it


def test_other_paths_answer_no_cors(client: TestClient, spa) -> None:
    for path in ("/authorize", "/login", "/introspect", "/admin/api/apps", "/healthz"):
        answer = client.get(path, headers={"origin": SPA_ORIGIN})
        assert_no_cors(answer)
    assert preflight(client, "/introspect", SPA_ORIGIN).status_code == 405


# --- actual requests --------------------------------------------------------------------------


def test_a_public_spa_exchanges_its_code_with_pkce_from_its_origin(
    front: Front, spa: clients.RegisteredClient
) -> None:
    client_id = spa.client.client_id
    code, verifier, _ = front.get_code(client_id, SPA_REDIRECT)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": SPA_REDIRECT,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    answer = front.client.post("/token", data=data, headers={"origin": SPA_ORIGIN})
    assert answer.status_code == 200, answer.text
    assert_allowed(answer, SPA_ORIGIN)
    assert answer.headers["cache-control"] == "no-store"
    tokens = answer.json()

    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    info = front.client.get("/userinfo", headers={**bearer, "origin": ALLOWED})
    assert info.status_code == 200, info.text
    assert_allowed(info, ALLOWED)
    assert "www-authenticate" in info.headers["access-control-expose-headers"].lower()
    assert info.json()["sub"]

    refreshed = front.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
        headers={"origin": SPA_ORIGIN},
    )
    assert refreshed.status_code == 200, refreshed.text
    assert_allowed(refreshed, SPA_ORIGIN)

    revoked = front.client.post(
        "/revoke",
        data={"token": tokens["access_token"], "client_id": client_id},
        headers={"origin": SPA_ORIGIN},
    )
    assert revoked.status_code == 200, revoked.text
    assert_allowed(revoked, SPA_ORIGIN)
    gone = front.client.get("/userinfo", headers={**bearer, "origin": SPA_ORIGIN})
    assert gone.status_code == 401
    assert_allowed(gone, SPA_ORIGIN)  # the app can read why: WWW-Authenticate is exposed
    assert "www-authenticate" in gone.headers


def test_a_request_from_another_origin_gets_no_cors_and_is_otherwise_the_same(
    front: Front, world: World, spa
) -> None:
    tokens = front.tokens(world, public=True)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    plain = front.client.get("/userinfo", headers=bearer)
    for origin in ("https://stranger.example", *LOOKALIKES):
        info = front.client.get("/userinfo", headers={**bearer, "origin": origin})
        assert info.status_code == 200
        assert_no_cors(info)
        assert "origin" in vary(info)
        assert info.json() == plain.json()

        refused = front.client.post(
            "/token", data={"grant_type": "password"}, headers={"origin": origin}
        )
        assert refused.status_code in (400, 401)
        assert_no_cors(refused)
    revoked = front.client.post(
        "/revoke",
        data={"token": tokens["access_token"], "client_id": world.public_rp.client.client_id},
        headers={"origin": "https://rp.example.evil.com"},
    )
    assert revoked.status_code == 200
    assert_no_cors(revoked)
    assert front.client.get("/userinfo", headers=bearer).status_code == 401  # revoked all the same


@pytest.mark.parametrize("path", CORS_ENDPOINTS)
def test_an_error_answer_to_a_registered_origin_is_readable(
    client: TestClient, spa, path: str
) -> None:
    """The app must be able to read the error (invalid_client, invalid_token, ...)."""
    if path == "/userinfo":
        answer = client.get(path, headers={"origin": RP_ORIGIN, "authorization": "Bearer x"})
        assert answer.status_code == 401
    else:
        answer = client.post(path, data={"token": "x"}, headers={"origin": RP_ORIGIN})
        assert 400 <= answer.status_code < 500
    assert_allowed(answer, RP_ORIGIN)


def test_a_request_without_origin_gets_no_cors(client: TestClient, spa) -> None:
    answer = client.post("/token", data={"grant_type": "authorization_code"})
    assert_no_cors(answer)


# --- discovery and JWKS -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks.json"])
def test_discovery_and_jwks_answer_registered_origins_and_no_others(
    client: TestClient, spa, path: str
) -> None:
    """The contract ("Additions fixed on 2026-12-06"): these answer CORS for the registered
    origins and for no other origin, like the three above."""
    for origin in (SPA_ORIGIN, ALLOWED, RP_ORIGIN):
        answer = client.get(path, headers={"origin": origin})
        assert answer.status_code == 200
        assert_allowed(answer, origin)
        allowed = preflight(client, path, origin, "GET")
        assert allowed.status_code == 204
        assert_allowed(allowed, origin)
    for origin in ("https://stranger.example", *LOOKALIKES):
        answer = client.get(path, headers={"origin": origin})
        assert answer.status_code == 200
        assert_no_cors(answer)
        assert preflight(client, path, origin, "GET").status_code == 403


# --- the set of origins follows the clients ---------------------------------------------------


def test_the_origins_follow_clients_created_updated_and_deleted_here(
    client: TestClient, store: Store, world: World
) -> None:
    new = "https://new.example"
    assert preflight(client, "/token", new).status_code == 403  # loaded now, without it
    created = in_unit(
        store, clients.create_client, "New", ["https://cb.example/cb"], allowed_origins=[new]
    )
    client_id = created.client.client_id
    assert_allowed(preflight(client, "/token", new), new)
    assert_allowed(preflight(client, "/token", "https://cb.example"), "https://cb.example")

    moved = "http://localhost:5173"
    in_unit(store, clients.update_client, client_id, actor="test", allowed_origins=[moved])
    assert preflight(client, "/token", new).status_code == 403
    assert_allowed(preflight(client, "/token", moved), moved)
    in_unit(store, clients.update_client, client_id, actor="test", allowed_origins=[])
    assert preflight(client, "/token", moved).status_code == 403

    in_unit(store, clients.delete_client, client_id)
    assert preflight(client, "/token", "https://cb.example").status_code == 403
    assert_allowed(preflight(client, "/token", RP_ORIGIN), RP_ORIGIN)  # the others stay


def test_a_change_made_elsewhere_is_seen_within_the_ttl(
    app, client: TestClient, store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance or the CLI changes the table without this process knowing: the cached
    set is used until it is `TTL_SECONDS` old, then read again (once, not per request)."""
    now = [1000.0]
    monkeypatch.setattr(cors, "_now", lambda: now[0])
    other = "https://other-instance.example"
    assert preflight(client, "/token", other).status_code == 403
    with store() as db:  # as another process would: no service, no notice here
        db.execute(
            update(Client)
            .where(Client.client_id == world.rp.client.client_id)
            .values(allowed_origins=[other])
        )
        db.commit()
    now[0] += cors.TTL_SECONDS - 1
    assert preflight(client, "/token", other).status_code == 403  # still the cached set
    now[0] += 2
    assert_allowed(preflight(client, "/token", other), other)


def test_the_set_is_read_once_not_per_request(
    client: TestClient, store: Store, spa, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    original = clients.cors_origins
    monkeypatch.setattr(clients, "cors_origins", lambda db: reads.append(1) or original(db))
    for _ in range(5):
        assert_allowed(preflight(client, "/token", SPA_ORIGIN), SPA_ORIGIN)
        client.get("/userinfo", headers={"origin": "https://stranger.example"})
    assert len(reads) <= 1


def test_when_the_set_cannot_be_read_again_the_last_one_serves(
    client: TestClient, spa, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(cors, "_now", lambda: now[0])
    assert_allowed(preflight(client, "/token", SPA_ORIGIN), SPA_ORIGIN)

    def unreachable(db: object) -> frozenset[str]:
        raise OSError("the database is unreachable")

    monkeypatch.setattr(clients, "cors_origins", unreachable)
    now[0] += cors.TTL_SECONDS + 1
    assert_allowed(preflight(client, "/token", SPA_ORIGIN), SPA_ORIGIN)
    assert preflight(client, "/token", "https://stranger.example").status_code == 403


# --- registering allowed origins ----------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "http://spa.example",  # http off loopback
        "https://spa.example/",  # a path, even "/"
        "https://spa.example/app",
        "https://spa.example?x=1",
        "https://spa.example#top",
        "https://*.spa.example",
        "*",
        "https://user@spa.example",
        "spa.example",
        "ftp://spa.example",
        "https://spa.example:99999",
        "https://spa example",
        "null",
        "",
    ],
)
def test_an_allowed_origin_must_be_an_origin(store: Store, origin: str) -> None:
    with pytest.raises(ValidationError) as refused:
        in_unit(store, clients.create_client, "SPA", [SPA_REDIRECT], allowed_origins=[origin])
    assert refused.value.field == "allowed_origins"


def test_allowed_origins_are_kept_in_the_form_browsers_send(store: Store) -> None:
    created = in_unit(
        store,
        clients.create_client,
        "SPA",
        [SPA_REDIRECT],
        allowed_origins=["HTTPS://App.Example:443", "http://localhost:5173", "http://[::1]:3000"],
    )
    assert created.client.allowed_origins == [
        "https://app.example",
        "http://localhost:5173",
        "http://[::1]:3000",
    ]


def test_the_cli_sets_and_clears_allowed_origins(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("IAM_DATABASE_URL", database_url)
    monkeypatch.setenv("IAM_SECRET_KEY", "test-secret-key-0123456789abcdef0123456789")
    monkeypatch.setenv("IAM_ISSUER", "https://testserver")
    monkeypatch.setenv("IAM_SMS_BACKEND", "webhook:https://sms.example.com/send")
    argv = ["clients", "create", "--name", "SPA", "--redirect-uri", SPA_REDIRECT, "--public"]
    argv += ["--allowed-origin", ALLOWED, "--allowed-origin", "http://localhost:5173", "--json"]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["allowed_origins"] == [ALLOWED, "http://localhost:5173"]
    client_id = record["client_id"]

    other = "https://other.spa.example"
    assert main(["clients", "update", client_id, "--allowed-origin", other, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allowed_origins"] == [other]
    assert main(["clients", "update", client_id, "--allowed-origin", "", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allowed_origins"] == []
    assert main(["clients", "update", client_id, "--allowed-origin", "https://a.example/"]) == 1
    assert "allowed_origin" in capsys.readouterr().err


def test_the_admin_api_sets_and_changes_allowed_origins(admin_world: AdminWorld) -> None:
    api = admin_world.console
    body = {"name": "SPA", "redirect_uris": [SPA_REDIRECT], "public": True}
    created = api.post(
        "/admin/api/apps", json={**body, "allowed_origins": [ALLOWED]}, headers=admin_world.bearer
    )
    assert created.status_code == 201, created.text
    assert created.json()["allowed_origins"] == [ALLOWED]
    path = f"/admin/api/apps/{created.json()['client_id']}"
    assert api.get(path, headers=admin_world.bearer).json()["allowed_origins"] == [ALLOWED]
    changed = api.patch(path, json={"allowed_origins": []}, headers=admin_world.bearer)
    assert changed.status_code == 200, changed.text
    assert changed.json()["allowed_origins"] == []
    refused = api.patch(
        path, json={"allowed_origins": ["https://a.example/path"]}, headers=admin_world.bearer
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "allowed_origins"
    # the admin API itself answers no CORS
    assert_no_cors(api.get(path, headers={**admin_world.bearer, "origin": ALLOWED}))


def test_the_console_form_takes_one_origin_per_line(admin_world: AdminWorld, store: Store) -> None:
    console = admin_world.console
    form = {
        "csrf_token": admin_world.csrf("/admin/apps"),
        "name": "SPA",
        "redirect_uris": SPA_REDIRECT,
        "post_logout_redirect_uris": "",
        "allowed_origins": f"{ALLOWED}\r\n\r\n http://localhost:5173 \r\n",
        "public": "on",
        "scopes": ["openid", "profile"],
        "context_policy": "none",
        "context_claim": "",
        "access_token_ttl": "300",
        "id_token_ttl": "900",
        "refresh_token_ttl": "3600",
    }
    created = console.post("/admin/apps", data=form)
    assert created.status_code == 303, created.text
    (spa,) = [c for c in in_unit(store, clients.list_clients) if c.name == "SPA"]
    assert spa.allowed_origins == [ALLOWED, "http://localhost:5173"]
    page = console.get(f"/admin/apps/{spa.client_id}").text
    assert re.search(r'<textarea id="allowed_origins"[^>]*>' + re.escape(ALLOWED), page)

    bad = {**form, "allowed_origins": "https://a.example/path", "csrf_token": admin_world.csrf()}
    refused = console.post(f"/admin/apps/{spa.client_id}", data=bad)
    assert refused.status_code == 422
    assert 'id="allowed_origins-error"' in refused.text
    chinese = console.get("/admin/apps", headers={"accept-language": "zh-CN"}).text
    assert 'id="allowed_origins"' in chinese and "来源" in chinese


def test_the_world_origins_hold(client: TestClient, world: World) -> None:
    """The redirect URIs' origins are allowed without any allowed_origins."""
    assert RP_REDIRECT.startswith(RP_ORIGIN) and PUBLIC_REDIRECT.startswith(LOOPBACK_ORIGIN)
    assert_allowed(preflight(client, "/token", RP_ORIGIN), RP_ORIGIN)
