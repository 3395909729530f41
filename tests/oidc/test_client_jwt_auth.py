"""private_key_jwt and client_secret_jwt (RFC 7523 2.2, OIDC Core 9): a client proves itself at
/token, /revoke and /introspect with an assertion signed by one of its keys, registered as a JWK
Set or published at its jwks_uri, or by an HMAC keyed by its secret; each assertion once,
briefly, for us."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from authlib.oauth2.rfc7523 import client_secret_jwt_sign, private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey
from starlette.testclient import TestClient
from support.admin import AdminWorld
from support.browser import Front
from support.constants import ISSUER, RP_REDIRECT, TEST_SECRET
from support.databases import flushed_redis, redis_url
from support.units import in_unit
from support.world import World

from iam.app import create_app
from iam.cli import main
from iam.db.store import Store
from iam.errors import ConflictError, ValidationError
from iam.secretbox import SecretBox
from iam.services import clients
from iam.services.sms import ConsoleSms
from iam.settings import Settings

pytestmark = pytest.mark.usefixtures("reused_signing_key")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_ENDPOINT = f"{ISSUER}/token"
#: This suite's Redis database (each suite names its own: they never flush each other's).
REDIS_DB = 11

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
OTHER_RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, other key
ROTATED_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})


def public_set(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(
    key: Key,
    client_id: str,
    *,
    alg: str | None = None,
    aud: str = TOKEN_ENDPOINT,
    lifetime: int = 60,
    omit: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A client assertion as RFC 7523 3 describes it; `omit` leaves claims out."""
    now = int(time.time())
    values = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
        **claims,
    }
    header = {"alg": alg or ("ES256" if isinstance(key, ECKey) else "RS256")}
    if key.kid:
        header["kid"] = key.kid
    payload = {k: v for k, v in values.items() if k not in omit}
    return jwt.encode(header, payload, key, algorithms=[header["alg"]])


def assertion_form(signed: str, **data: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **data}


def client_credentials(client: TestClient, signed: str, **extra: str):
    return client.post(
        "/token", data=assertion_form(signed, grant_type="client_credentials", **extra)
    )


def refused(answer, status: int = 401) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == "invalid_client", answer.text
    assert "access_token" not in answer.text


def signed_client(store: Store, **keys: Any) -> clients.RegisteredClient:
    keys = keys or {"jwks": public_set(RSA_KEY, EC_KEY)}
    return in_unit(
        store,
        clients.create_client,
        "Signed",
        [RP_REDIRECT],
        token_endpoint_auth_method="private_key_jwt",
        **keys,
    )


@pytest.fixture
def signed(store: Store) -> str:
    """A private_key_jwt client with an RSA and an EC key: its client id."""
    registered = signed_client(store)
    assert registered.client_secret is None  # keys, no secret
    return registered.client.client_id


# --- the token endpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
def test_client_credentials_with_a_signed_assertion(
    client: TestClient, signed: str, key: Key
) -> None:
    answer = client_credentials(client, assertion(key, signed), scope="profile")
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"].lower() == "bearer"
    introspected = client.post(
        "/introspect",
        data=assertion_form(
            assertion(key, signed, aud=f"{ISSUER}/introspect"),
            token=answer.json()["access_token"],
        ),
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True
    assert introspected.json()["client_id"] == signed


def test_the_issuer_is_an_audience_too_and_the_client_id_may_be_sent(
    client: TestClient, signed: str
) -> None:
    answer = client_credentials(client, assertion(RSA_KEY, signed, aud=ISSUER), client_id=signed)
    assert answer.status_code == 200, answer.text
    as_list = assertion(RSA_KEY, signed, aud=[TOKEN_ENDPOINT, "https://elsewhere.example"])
    assert client_credentials(client, as_list).status_code == 200


def test_authlib_s_own_client_signing_is_taken(client: TestClient, signed: str) -> None:
    """What a client signing with Authlib's `private_key_jwt_sign` sends (RFC 7523 3: aud the
    token endpoint, a jti), once its exp is short: Authlib's default, an hour, is too long."""
    signed_jwt = private_key_jwt_sign(
        RSA_KEY, client_id=signed, token_endpoint=TOKEN_ENDPOINT, expires_in=120
    )
    assert client_credentials(client, signed_jwt).status_code == 200
    an_hour = private_key_jwt_sign(RSA_KEY, client_id=signed, token_endpoint=TOKEN_ENDPOINT)
    refused(client_credentials(client, an_hour))


def test_code_exchange_with_a_signed_assertion(
    front: Front, world: World, signed: str, store: Store
) -> None:
    code, verifier, _params = front.get_code(signed, RP_REDIRECT)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": RP_REDIRECT,
        "code_verifier": verifier,
    }
    answer = front.client.post("/token", data=assertion_form(assertion(EC_KEY, signed), **data))
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
    refreshed = front.client.post(
        "/token",
        data=assertion_form(
            assertion(RSA_KEY, signed),
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        ),
    )
    assert refreshed.status_code == 200, refreshed.text
    revoked = front.client.post(
        "/revoke",
        data=assertion_form(
            assertion(RSA_KEY, signed, aud=f"{ISSUER}/revoke"),
            token=refreshed.json()["refresh_token"],
        ),
    )
    assert revoked.status_code == 200, revoked.text
    gone = front.client.post(
        "/introspect",
        data=assertion_form(assertion(RSA_KEY, signed), token=refreshed.json()["refresh_token"]),
    )
    assert gone.json() == {"active": False}


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("wrong aud", lambda c: assertion(RSA_KEY, c, aud="https://elsewhere.example/token")),
        ("revoke aud at /token", lambda c: assertion(RSA_KEY, c, aud=f"{ISSUER}/revoke")),
        ("expired", lambda c: assertion(RSA_KEY, c, lifetime=-120)),
        ("exp too far ahead", lambda c: assertion(RSA_KEY, c, lifetime=3600)),
        ("no exp", lambda c: assertion(RSA_KEY, c, omit=("exp",))),
        ("no jti", lambda c: assertion(RSA_KEY, c, omit=("jti",))),
        ("iat in the future", lambda c: assertion(RSA_KEY, c, iat=int(time.time()) + 600)),
        ("iss is not sub", lambda c: assertion(RSA_KEY, c, iss="someone-else")),
        ("wrong signature", lambda c: assertion(OTHER_RSA_KEY, c)),
        ("PS256", lambda c: assertion(RSA_KEY, c, alg="PS256")),
        ("unknown kid", lambda c: assertion(ROTATED_KEY, c)),
        ("unknown client", lambda c: assertion(RSA_KEY, "no-such-client")),
    ],
)
def test_a_bad_assertion_is_refused(client: TestClient, signed: str, case: str, make) -> None:
    refused(client_credentials(client, make(signed)))


def test_a_token_endpoint_refuses_a_malformed_assertion(client: TestClient, signed: str) -> None:
    refused(client_credentials(client, "not.a.jwt"))
    answer = client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:example:other",
            "client_assertion": assertion(RSA_KEY, signed),
        },
    )
    refused(answer)


def test_a_replayed_assertion_is_refused(client: TestClient, signed: str) -> None:
    once = assertion(RSA_KEY, signed)
    assert client_credentials(client, once).status_code == 200
    refused(client_credentials(client, once))


def test_a_jti_is_spent_once_whatever_else_differs(client: TestClient, signed: str) -> None:
    jti = secrets.token_urlsafe(8)
    assert client_credentials(client, assertion(RSA_KEY, signed, jti=jti)).status_code == 200
    refused(client_credentials(client, assertion(EC_KEY, signed, jti=jti, aud=ISSUER)))


def test_a_replay_is_refused_by_another_instance_sharing_redis(
    settings: Settings, store: Store, sms: ConsoleSms, signed: str
) -> None:
    shared = dataclasses.replace(settings, redis_url=redis_url(REDIS_DB))
    with flushed_redis(REDIS_DB) as server:
        first = TestClient(create_app(shared, store=store, sms=sms), base_url=ISSUER)
        second = TestClient(create_app(shared, store=store, sms=sms), base_url=ISSUER)
        with first, second:
            once = assertion(RSA_KEY, signed)
            assert client_credentials(first, once).status_code == 200
            refused(client_credentials(second, once))
            assert client_credentials(second, assertion(RSA_KEY, signed)).status_code == 200
        remembered = server.keys("iam:jti:*")
        assert len(remembered) == 2
        assert all(0 < server.ttl(key) <= 60 + 30 + 2 for key in remembered)


def test_while_redis_fails_this_process_still_refuses_a_replay(
    settings: Settings, store: Store, sms: ConsoleSms, signed: str, caplog
) -> None:
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(unreachable, store=store, sms=sms), base_url=ISSUER) as client:
        once = assertion(RSA_KEY, signed)
        assert client_credentials(client, once).status_code == 200
        refused(client_credentials(client, once))
    assert "Redis failed remembering an assertion's jti" in caplog.text


# --- one method per client ------------------------------------------------------------------


def test_a_signed_client_cannot_use_a_secret_or_none(
    client: TestClient, signed: str, world: World
) -> None:
    form = {"grant_type": "client_credentials"}
    refused(client.post("/token", data=form, auth=(signed, "anything")))
    refused(client.post("/token", data={**form, "client_id": signed, "client_secret": "x"}))
    refused(client.post("/token", data={**form, "client_id": signed}), 401)


def test_a_secret_client_cannot_send_an_assertion(client: TestClient, world: World) -> None:
    rp = world.rp.client.client_id
    answer = client_credentials(client, assertion(RSA_KEY, rp))
    refused(answer)
    assert "authenticates with client_secret_basic" in answer.json()["error_description"]
    public = world.public_rp.client.client_id
    refused(client_credentials(client, assertion(RSA_KEY, public)))


def test_an_assertion_with_a_secret_too_is_refused(client: TestClient, signed: str) -> None:
    both = client.post(
        "/token",
        data=assertion_form(assertion(RSA_KEY, signed), grant_type="client_credentials"),
        auth=(signed, "secret"),
    )
    refused(both)
    other_id = client_credentials(client, assertion(RSA_KEY, signed), client_id="someone-else")
    refused(other_id)


# --- keys at a jwks_uri ----------------------------------------------------------------------


@dataclass
class KeyServer:
    """A real HTTP server on loopback publishing a JWK Set, counting its fetches."""

    keys: dict[str, Any]
    fetches: int = 0
    url: str = ""
    stop: Any = field(default=None, repr=False)


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    published = KeyServer(public_set(RSA_KEY))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            published.fetches += 1
            body = json.dumps(published.keys).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    published.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    try:
        yield published
    finally:
        server.shutdown()
        server.server_close()


def test_keys_at_a_jwks_uri_are_fetched_cached_and_refetched_for_a_new_kid(
    app, client: TestClient, store: Store, key_server: KeyServer
) -> None:
    client_id = signed_client(store, jwks_uri=key_server.url).client.client_id
    cache = app.state.oidc.server.client_assertion.jwks
    now = [1000.0]
    cache.clock = lambda: now[0]
    assert client_credentials(client, assertion(RSA_KEY, client_id)).status_code == 200
    assert client_credentials(client, assertion(RSA_KEY, client_id)).status_code == 200
    assert key_server.fetches == 1  # cached

    key_server.keys = public_set(ROTATED_KEY)  # the client rotates its key
    now[0] += 10
    refused(client_credentials(client, assertion(ROTATED_KEY, client_id)))
    assert key_server.fetches == 1  # not again within a minute: no fetch amplifier
    now[0] += 60
    assert client_credentials(client, assertion(ROTATED_KEY, client_id)).status_code == 200
    assert key_server.fetches == 2  # the unknown kid was fetched once
    refused(client_credentials(client, assertion(RSA_KEY, client_id)))  # the old key is gone
    refused(client_credentials(client, assertion(OTHER_RSA_KEY, client_id)))
    assert key_server.fetches == 2

    now[0] += 400  # older than five minutes: fetched again, known kid or not
    assert client_credentials(client, assertion(ROTATED_KEY, client_id)).status_code == 200
    assert key_server.fetches == 3


def test_an_unreachable_jwks_uri_refuses_the_client(client: TestClient, store: Store) -> None:
    client_id = signed_client(store, jwks_uri="http://127.0.0.1:9/jwks.json").client.client_id
    refused(client_credentials(client, assertion(RSA_KEY, client_id)))


# --- discovery -------------------------------------------------------------------------------


def test_discovery_announces_jwt_client_authentication(client: TestClient) -> None:
    document = client.get("/.well-known/openid-configuration").json()
    for endpoint in ("token", "revocation", "introspection"):
        methods = document[f"{endpoint}_endpoint_auth_methods_supported"]
        assert {"private_key_jwt", "client_secret_jwt"} <= set(methods)
        assert document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == [
            "RS256",
            "ES256",
            "HS256",
        ]


# --- registration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "field_name"),
    [
        ({"jwks": {"keys": [RSA_KEY.as_dict(private=True)]}}, "jwks"),
        ({"jwks": json.dumps({"keys": [EC_KEY.as_dict(private=True)]})}, "jwks"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks"),
        ({"jwks": {"keys": []}}, "jwks"),
        ({"jwks": "{not json"}, "jwks"),
        ({"jwks": public_set(RSA_KEY), "jwks_uri": "https://rp.example/jwks"}, "jwks"),
        ({}, "jwks"),
        ({"jwks_uri": "http://rp.example/jwks"}, "jwks_uri"),
    ],
)
def test_registration_refuses_unusable_keys(
    store: Store, keys: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(ValidationError) as refusal:
        in_unit(
            store,
            clients.create_client,
            "Signed",
            [RP_REDIRECT],
            token_endpoint_auth_method="private_key_jwt",
            **keys,
        )
    assert refusal.value.field == field_name
    assert in_unit(store, clients.list_clients) == []


def test_keys_only_for_a_signed_client_and_none_only_for_a_public_one(store: Store) -> None:
    with pytest.raises(ValidationError):
        in_unit(store, clients.create_client, "X", [RP_REDIRECT], jwks=public_set(RSA_KEY))
    with pytest.raises(ValidationError):
        in_unit(store, clients.create_client, "X", [RP_REDIRECT], token_endpoint_auth_method="none")
    with pytest.raises(ValidationError):
        in_unit(
            store,
            clients.create_client,
            "X",
            [RP_REDIRECT],
            public=True,
            token_endpoint_auth_method="client_secret_basic",
        )
    assert in_unit(store, clients.list_clients) == []


def test_a_client_moves_to_keys_and_back(store: Store, world: World) -> None:
    rp = world.rp.client.client_id
    moved = in_unit(
        store,
        clients.update_client,
        rp,
        actor="test",
        token_endpoint_auth_method="private_key_jwt",
        jwks_uri="https://rp.example/jwks",
    )
    assert (moved.secret_hash, moved.jwks) == (None, None)
    assert moved.jwks_uri == "https://rp.example/jwks"
    with pytest.raises(ValidationError):
        in_unit(store, clients.rotate_secret, rp)
    replaced = in_unit(
        store, clients.update_client, rp, actor="test", jwks=json.dumps(public_set(EC_KEY))
    )
    assert (replaced.jwks, replaced.jwks_uri) == (public_set(EC_KEY), None)
    with pytest.raises(ConflictError):  # keys it needs, taken away
        in_unit(store, clients.update_client, rp, actor="test", jwks="", jwks_uri="")
    back = in_unit(
        store,
        clients.update_client,
        rp,
        actor="test",
        token_endpoint_auth_method="client_secret_post",
    )
    assert (back.token_endpoint_auth_method, back.jwks, back.jwks_uri) == (
        "client_secret_post",
        None,
        None,
    )
    assert in_unit(store, clients.rotate_secret, rp).client_secret


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`iam ...` on the test database: (exit code, stdout, stderr)."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if "IAM_" not in k})
    for name, value in {
        "IAM_SECRET_KEY": TEST_SECRET,
        "IAM_ISSUER": ISSUER,
        "IAM_SMS_BACKEND": "webhook:https://sms.example.com/send",
        "IAM_DATABASE_URL": database_url,
    }.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_cli_registers_a_signed_client_and_changes_its_keys(cli, store: Store) -> None:
    code, out, err = cli(
        "clients", "create", "--name", "Signed", "--redirect-uri", RP_REDIRECT,
        "--token-endpoint-auth-method", "private_key_jwt",
        "--jwks", json.dumps(public_set(RSA_KEY)), "--json",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    created = json.loads(out)
    assert created["client_secret"] is None
    assert created["token_endpoint_auth_method"] == "private_key_jwt"
    assert created["jwks"] == public_set(RSA_KEY)
    assert created["jwks_uri"] is None
    client_id = created["client_id"]

    uri = "https://rp.example/jwks.json"
    code, out, err = cli("clients", "update", client_id, "--jwks-uri", uri, "--json")
    assert (code, err) == (0, ""), err
    assert (json.loads(out)["jwks_uri"], json.loads(out)["jwks"]) == (uri, None)
    code, out, err = cli("clients", "rotate-secret", client_id)
    assert code == 1 and "private_key_jwt" in err


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--jwks", json.dumps({"keys": [RSA_KEY.as_dict(private=True)]})], "private"),
        ([], "jwks"),
        (["--jwks", "[]"], "JWK Set"),
        (["--jwks-uri", "http://rp.example/jwks"], "jwks_uri"),
    ],
)
def test_the_cli_refuses_unusable_keys_and_registers_nothing(
    cli, store: Store, options: list[str], fragment: str
) -> None:
    code, out, err = cli(
        "clients", "create", "--name", "Signed", "--redirect-uri", RP_REDIRECT,
        "--token-endpoint-auth-method", "private_key_jwt", *options,
    )  # fmt: skip
    assert code == 1 and out == "" and fragment in err, err
    assert in_unit(store, clients.list_clients) == []


def test_the_cli_takes_one_kind_of_keys(cli, store: Store) -> None:
    with pytest.raises(SystemExit):
        cli(
            "clients", "create", "--name", "Signed", "--redirect-uri", RP_REDIRECT,
            "--token-endpoint-auth-method", "private_key_jwt",
            "--jwks", json.dumps(public_set(RSA_KEY)), "--jwks-uri", "https://rp.example/jwks",
        )  # fmt: skip
    assert in_unit(store, clients.list_clients) == []


def test_the_cli_update_refuses_a_private_key_and_changes_nothing(
    cli, store: Store, signed: str
) -> None:
    before = in_unit(store, clients.get_client, signed)
    private = json.dumps({"keys": [EC_KEY.as_dict(private=True)]})
    code, _out, err = cli("clients", "update", signed, "--jwks", private)
    assert code == 1 and "private" in err
    code, _out, err = cli("clients", "update", signed, "--token-endpoint-auth-method", "none")
    assert code == 1 and "confidential, fixed at creation" in err
    after = in_unit(store, clients.get_client, signed)
    assert (after.jwks, after.token_endpoint_auth_method, after.updated_at) == (
        before.jwks,
        "private_key_jwt",
        before.updated_at,
    )


# --- the admin console -----------------------------------------------------------------------

CONSOLE_FORM = {
    "name": "Signed",
    "redirect_uris": RP_REDIRECT,
    "post_logout_redirect_uris": "",
    "scopes": ["openid", "profile"],
    "context_policy": "none",
    "context_claim": "",
    "access_token_ttl": "600",
    "id_token_ttl": "3600",
    "refresh_token_ttl": "0",
    "token_endpoint_auth_method": "private_key_jwt",
}


def _console_post(world: AdminWorld, path: str, form: dict[str, Any]):
    return world.console.post(path, data={"csrf_token": world.csrf("/admin/apps"), **form})


def test_the_console_registers_a_signed_app_and_refuses_a_private_key(
    admin_world: AdminWorld, store: Store
) -> None:
    private = json.dumps({"keys": [RSA_KEY.as_dict(private=True)]})
    answer = _console_post(admin_world, "/admin/apps", {**CONSOLE_FORM, "jwks": private})
    assert answer.status_code == 422, answer.text
    assert 'id="jwks-error"' in answer.text
    assert [c.name for c in in_unit(store, clients.list_clients)] == ["Ops script"]

    form = {**CONSOLE_FORM, "jwks": json.dumps(public_set(EC_KEY))}
    answer = _console_post(admin_world, "/admin/apps", form)
    assert answer.status_code == 303, answer.text
    (app,) = [c for c in in_unit(store, clients.list_clients) if c.name == "Signed"]
    assert (app.token_endpoint_auth_method, app.jwks, app.secret_hash) == (
        "private_key_jwt",
        public_set(EC_KEY),
        None,
    )
    page = admin_world.console.get(f"/admin/apps/{app.client_id}").text
    assert '<option value="private_key_jwt" selected>' in page
    assert 'id="keys-not-secret"' in page and "/rotate" not in page
    assert "&#34;kty&#34;: &#34;EC&#34;" in page or "&quot;kty&quot;: &quot;EC&quot;" in page

    moved = {**CONSOLE_FORM, "jwks": "", "jwks_uri": "https://rp.example/jwks.json"}
    answer = _console_post(admin_world, f"/admin/apps/{app.client_id}", moved)
    assert answer.status_code == 303, answer.text
    after = in_unit(store, clients.get_client, app.client_id)
    assert (after.jwks, after.jwks_uri) == (None, "https://rp.example/jwks.json")


# --- client_secret_jwt -----------------------------------------------------------------------
# The same assertion, signed with an HMAC (HS256) keyed by the client's secret (OIDC Core 9).


def secret_key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def secret_client(store: Store) -> clients.RegisteredClient:
    return in_unit(
        store,
        clients.create_client,
        "HMAC",
        [RP_REDIRECT],
        token_endpoint_auth_method="client_secret_jwt",
        box=SecretBox(TEST_SECRET),
    )


def rotate(store: Store, client_id: str, **options: Any) -> str:
    rotated = in_unit(
        store, clients.rotate_secret, client_id, box=SecretBox(TEST_SECRET), **options
    )
    assert rotated.client_secret
    return rotated.client_secret


def test_client_secret_jwt_at_every_endpoint(client: TestClient, store: Store) -> None:
    registered = secret_client(store)
    client_id, secret = registered.client.client_id, registered.client_secret or ""
    key = secret_key(secret)
    answer = client_credentials(client, assertion(key, client_id, alg="HS256"), scope="profile")
    assert answer.status_code == 200, answer.text
    access_token = answer.json()["access_token"]
    introspected = client.post(
        "/introspect",
        data=assertion_form(
            assertion(key, client_id, alg="HS256", aud=f"{ISSUER}/introspect"),
            token=access_token,
        ),
    )
    assert introspected.json()["active"] is True
    revoked = client.post(
        "/revoke",
        data=assertion_form(
            assertion(key, client_id, alg="HS256", aud=f"{ISSUER}/revoke"), token=access_token
        ),
    )
    assert revoked.status_code == 200, revoked.text
    # Authlib's own client-side signing (its default lifetime, an hour, is too long for us)
    signed_jwt = client_secret_jwt_sign(
        key, client_id=client_id, token_endpoint=TOKEN_ENDPOINT, expires_in=120
    )
    assert client_credentials(client, signed_jwt).status_code == 200


def test_client_secret_jwt_keeps_the_secret_encrypted(store: Store) -> None:
    registered = secret_client(store)
    secret = registered.client_secret or ""
    row = in_unit(store, clients.get_client, registered.client.client_id)
    assert row.secret_encrypted and secret not in row.secret_encrypted
    assert SecretBox(TEST_SECRET).decrypt(row.secret_encrypted) == secret
    basic = in_unit(store, clients.create_client, "Basic", [RP_REDIRECT])
    assert basic.client.secret_encrypted is None  # only who needs it


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("another secret", lambda c, s: assertion(secret_key("x" * 43), c, alg="HS256")),
        ("HS384", lambda c, s: assertion(secret_key(s), c, alg="HS384")),
        ("RS256 with a key", lambda c, s: assertion(RSA_KEY, c)),
        ("replayed", None),
        ("expired", lambda c, s: assertion(secret_key(s), c, alg="HS256", lifetime=-120)),
        ("wrong aud", lambda c, s: assertion(secret_key(s), c, alg="HS256", aud=ISSUER + "/x")),
    ],
)
def test_a_bad_secret_assertion_is_refused(
    client: TestClient, store: Store, case: str, make
) -> None:
    registered = secret_client(store)
    client_id, secret = registered.client.client_id, registered.client_secret or ""
    if make is None:
        once = assertion(secret_key(secret), client_id, alg="HS256")
        assert client_credentials(client, once).status_code == 200
        refused(client_credentials(client, once))
    else:
        refused(client_credentials(client, make(client_id, secret)))


def test_a_secret_jwt_client_cannot_send_its_secret_itself(
    client: TestClient, store: Store, signed: str
) -> None:
    registered = secret_client(store)
    client_id, secret = registered.client.client_id, registered.client_secret or ""
    form = {"grant_type": "client_credentials"}
    refused(client.post("/token", data=form, auth=(client_id, secret)))
    refused(client.post("/token", data={**form, "client_id": client_id, "client_secret": secret}))
    # and a private_key_jwt client cannot sign with an HMAC of anything
    refused(client_credentials(client, assertion(secret_key(secret), signed, alg="HS256")))


def test_a_rotation_keeps_the_previous_secret_until_it_is_retired(
    client: TestClient, store: Store
) -> None:
    registered = secret_client(store)
    client_id, old = registered.client.client_id, registered.client_secret or ""
    new = rotate(store, client_id)
    for secret in (old, new):
        signed_jwt = assertion(secret_key(secret), client_id, alg="HS256")
        assert client_credentials(client, signed_jwt).status_code == 200, secret
    in_unit(store, clients.retire_previous_secret, client_id, actor="test")
    refused(client_credentials(client, assertion(secret_key(old), client_id, alg="HS256")))
    assert (
        client_credentials(client, assertion(secret_key(new), client_id, alg="HS256")).status_code
        == 200
    )


def test_a_client_moves_to_client_secret_jwt_with_a_rotation_and_back(
    client: TestClient, store: Store, world: World
) -> None:
    """Only a digest of a basic client's secret is known: the move drops it, and a rotation
    gives the client its secret for signing. Moving back keeps that secret (as a digest)."""
    rp, form = world.rp.client.client_id, {"grant_type": "client_credentials"}
    old = world.rp.client_secret or ""
    moved = in_unit(
        store,
        clients.update_client,
        rp,
        actor="test",
        token_endpoint_auth_method="client_secret_jwt",
    )
    assert (moved.secret_hash, moved.secret_encrypted) == (None, None)
    answer = client_credentials(client, assertion(secret_key(old), rp, alg="HS256"))
    refused(answer)
    assert "no secret yet" in answer.json()["error_description"]
    refused(client.post("/token", data=form, auth=(rp, old)))
    new = rotate(store, rp, keep_previous=False)
    assert (
        client_credentials(client, assertion(secret_key(new), rp, alg="HS256")).status_code == 200
    )
    back = in_unit(
        store,
        clients.update_client,
        rp,
        actor="test",
        token_endpoint_auth_method="client_secret_basic",
    )
    assert back.secret_encrypted is None and back.secret_hash
    assert client.post("/token", data=form, auth=(rp, new)).status_code == 200


def test_the_cli_registers_a_client_secret_jwt_client(cli, client: TestClient) -> None:
    code, out, err = cli(
        "clients", "create", "--name", "HMAC", "--redirect-uri", RP_REDIRECT,
        "--token-endpoint-auth-method", "client_secret_jwt", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["token_endpoint_auth_method"] == "client_secret_jwt"
    key = secret_key(record["client_secret"])
    signed_jwt = assertion(key, record["client_id"], alg="HS256")
    assert client_credentials(client, signed_jwt).status_code == 200
    code, out, err = cli("clients", "rotate-secret", record["client_id"], "--json")
    assert code == 0, err
    rotated = assertion(
        secret_key(json.loads(out)["client_secret"]), record["client_id"], alg="HS256"
    )
    assert client_credentials(client, rotated).status_code == 200
