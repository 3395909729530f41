"""Admin: token signing keys in the console (/admin/keys) and the API (/admin/api/keys): the
list, and a rotation after which this instance signs with the new key at once while the old
one stays in JWKS."""

from __future__ import annotations

import re
from typing import Any

import jwt
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.constants import RP_REDIRECT
from support.units import in_unit

from iam.admin.openapi import document
from iam.db.models import AuditEvent, SigningKey
from iam.db.store import Store
from iam.services import clients

pytestmark = pytest.mark.usefixtures("reused_signing_key")
#: For what the handlers decide before the database is asked: SQLite is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

#: Members of a private RSA JWK (RFC 7518 6.3.2): none may ever be shown.
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


def kids(store: Store, alg: str | None = "RS256") -> list[str]:
    """The kids of one algorithm's keys (the RS256 ones by default), oldest first; None: all."""
    query = select(SigningKey.kid).order_by(SigningKey.created_at)
    with store() as db:
        return list(db.scalars(query if alg is None else query.where(SigningKey.alg == alg)))


def rotations(store: Store) -> list[AuditEvent]:
    with store() as db:
        query = select(AuditEvent).where(AuditEvent.event == "key.rotated")
        return list(db.scalars(query.order_by(AuditEvent.id)))


def script_id(store: Store) -> str:
    """The client id of admin_world's API script ("Ops script")."""
    return next(c.client_id for c in in_unit(store, clients.list_clients) if c.name == "Ops script")


def fresh_admin_token(client: TestClient, store: Store) -> str:
    """A new client_credentials token, signed by whichever key signs now."""
    script = in_unit(store, clients.create_client, "Another script", [RP_REDIRECT], admin=True)
    answer = client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "iam:admin"},
        auth=(script.client.client_id, script.client_secret or ""),
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def assert_public(key: dict[str, Any]) -> None:
    assert set(key) == set(document("x")["components"]["schemas"]["SigningKey"]["required"])
    assert not PRIVATE_MEMBERS & set(key["public_jwk"])
    assert key["public_jwk"]["kid"] == key["kid"] and key["public_jwk"]["kty"] == "RSA"


@SQLITE_ONLY
def test_the_api_needs_a_caller(app, store: Store) -> None:
    before = kids(store)
    with admin_console(app) as anonymous:
        for method, path in [("GET", "/admin/api/keys"), ("POST", "/admin/api/keys/rotate")]:
            answer = anonymous.request(method, path)
            assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized"), path
        page = anonymous.get("/admin/keys")
        assert (page.status_code, page.headers["location"]) == (303, "/admin/login")
        rotate = anonymous.post("/admin/keys/rotate", data={"confirm": "yes"})
        assert (rotate.status_code, rotate.headers["location"]) == (303, "/admin/login")
    assert kids(store) == before


@pytest.mark.parametrize("how", ["console", "bearer"])
def test_rotation_through_the_api(admin_world: AdminWorld, app, store: Store, how: str) -> None:
    [old_kid] = kids(store)
    with admin_console(app) as script:
        client, headers = (
            (admin_world.console, {}) if how == "console" else (script, admin_world.bearer)
        )
        listed = client.get("/admin/api/keys", headers=headers)
        assert listed.status_code == 200, listed.text
        [key] = [key for key in listed.json()["keys"] if key["alg"] == "RS256"]
        [ec] = [key for key in listed.json()["keys"] if key["alg"] == "ES256"]
        assert (ec["kid"], ec["signing"], ec["public_jwk"]["kty"]) == (
            kids(store, "ES256")[0],
            True,
            "EC",
        )
        assert_public(key)
        assert (key["kid"], key["alg"], key["signing"], key["published"]) == (
            old_kid,
            "RS256",
            True,
            True,
        )
        assert (key["retired_at"], key["publish_until"]) == (None, None)

        rotated = client.post("/admin/api/keys/rotate", headers=headers)
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()
        assert_public(new)
        assert new["kid"] != old_kid and (new["signing"], new["published"]) == (True, True)
        assert rotated.headers["cache-control"] == "no-store"

        listed = client.get("/admin/api/keys", headers=headers).json()["keys"]
        newest, previous = [key for key in listed if key["alg"] == "RS256"]
        assert newest == new
        assert [key["signing"] for key in listed if key["alg"] == "ES256"] == [True, False]
        assert (previous["kid"], previous["signing"], previous["published"]) == (
            old_kid,
            False,
            True,
        )
        assert previous["retired_at"] and previous["publish_until"] > previous["retired_at"]

        # This instance signs with the new key at once; the old key still verifies.
        jwks = {key["kid"] for key in client.get("/jwks.json").json()["keys"]}
        assert jwks == set(kids(store, None)) and {old_kid, new["kid"]} <= jwks
        token = fresh_admin_token(client, store)
        assert jwt.get_unverified_header(token)["kid"] == new["kid"]
        assert jwt.get_unverified_header(admin_world.token)["kid"] == old_kid
        for bearer in (token, admin_world.token):
            answer = script.get("/admin/api/keys", headers={"authorization": f"Bearer {bearer}"})
            assert answer.status_code == 200
    assert kids(store) == [old_kid, new["kid"]]
    [event] = [event for event in rotations(store) if event.detail["alg"] == "RS256"]
    assert event.detail == {"kid": new["kid"], "alg": "RS256"}
    assert len(rotations(store)) == 2  # and the ES256 key's
    assert event.actor == ("admin:root" if how == "console" else f"client:{script_id(store)}")


@SQLITE_ONLY
def test_the_keys_page_shows_which_key_signs(admin_world: AdminWorld, store: Store) -> None:
    [kid] = kids(store)
    page = admin_world.console.get("/admin/keys")
    assert page.status_code == 200
    assert f'<tr class="signing" aria-current="true">\n      <td class="kid">{kid}</td>' in (
        page.text
    )
    assert "Signs new tokens" in page.text and "RS256" in page.text
    assert 'name="confirm" value="yes" required' in page.text
    assert "签名密钥" in admin_world.console.get("/admin/keys?lang=zh-CN").text


def test_rotating_in_the_console_needs_the_confirmation(
    admin_world: AdminWorld, store: Store
) -> None:
    [old_kid] = kids(store)
    console = admin_world.console
    csrf = admin_world.csrf("/admin/keys?lang=en")
    for form in ({}, {"confirm": "yes"}, {"csrf_token": "0" * 64, "confirm": "yes"}):
        assert console.post("/admin/keys/rotate", data=form).status_code == 403
    unconfirmed = console.post("/admin/keys/rotate", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 422
    assert "Nothing was rotated: tick the box to confirm." in unconfirmed.text
    assert kids(store) == [old_kid]

    answer = console.post("/admin/keys/rotate", data={"csrf_token": csrf, "confirm": "yes"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/keys?done=rotated")
    [_, new_kid] = kids(store)
    page = console.get(answer.headers["location"])
    assert "Rotated: the new keys below sign from now on (RS256 and ES256)." in page.text
    rows = re.findall(r"<tr( class=\"signing\"[^>]*)?>\s*<td class=\"kid\">([^<]+)</td>", page.text)
    [new_ec, old_ec] = kids(store, "ES256")[::-1]
    signing = ' class="signing" aria-current="true"'
    assert sorted(rows) == sorted(
        [(signing, new_kid), (signing, new_ec), ("", old_kid), ("", old_ec)]
    )
    assert "Published (verifies older tokens)" in page.text
    token = fresh_admin_token(console, store)
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert sorted(event.detail["kid"] for event in rotations(store)) == sorted([new_kid, new_ec])


def test_the_openapi_document_describes_the_key_operations() -> None:
    doc = document("https://testserver")
    listing = doc["paths"]["/keys"]["get"]["responses"]
    rotation = doc["paths"]["/keys/rotate"]["post"]["responses"]
    assert set(listing) == {"200", "401"} and set(rotation) == {"201", "401"}
    assert rotation["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SigningKey"
    }
    schema = doc["components"]["schemas"]["SigningKey"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
