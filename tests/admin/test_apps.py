"""Admin apps: the console pages and forms, and the JSON API with its OpenAPI description."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from joserfc.jws import extract_compact
from sqlalchemy import select
from starlette.testclient import TestClient
from support.admin import AdminWorld, admin_console
from support.constants import ISSUER, RP_REDIRECT, TEST_SECRET
from support.units import in_unit

from iam.db.models import AuditEvent, Client
from iam.db.store import Store
from iam.secretbox import SecretBox
from iam.services import clients, corps

pytestmark = pytest.mark.usefixtures("reused_signing_key")

API = "/admin/api/apps"
UNKNOWN = "c_000000000000000000000000"
APP = {
    "name": "CRM",
    "redirect_uris": ["https://crm.example.com/cb", "http://127.0.0.1:8765/cb"],
    "post_logout_redirect_uris": ["https://crm.example.com/bye"],
    "scopes": ["openid", "profile"],
    "context_policy": "required",
    "context_claim": "https://group.example.com/context",
    "access_token_ttl": 300,
    "id_token_ttl": 900,
    "refresh_token_ttl": 0,
}
FORM = {
    "name": "CRM",
    "redirect_uris": "https://crm.example.com/cb\r\n\r\nhttp://127.0.0.1:8765/cb\r\n",
    "post_logout_redirect_uris": "",
    "scopes": ["openid", "profile"],
    "context_policy": "required",
    "context_claim": "",
    "access_token_ttl": "300",
    "id_token_ttl": "900",
    "refresh_token_ttl": "0",
}


def _apps(store: Store) -> dict[str, Client]:
    return {client.client_id: client for client in in_unit(store, clients.list_clients)}


def _events(store: Store, client_id: str) -> list[tuple[str, str | None]]:
    with store() as db:
        rows = db.scalars(
            select(AuditEvent).where(AuditEvent.client_id == client_id).order_by(AuditEvent.id)
        )
        return [(row.event, row.actor) for row in rows]


def _secret_on(page: str) -> str:
    match = re.search(r'<p class="secret" id="client-secret">([^<]+)</p>', page)
    assert match, page
    return match.group(1)


def _token(client: TestClient, client_id: str, secret: str) -> int:
    """The status of a client_credentials token request with this secret."""
    answer = client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return answer.status_code


def _post(world: AdminWorld, path: str, form: dict[str, Any], csrf_from: str = "/admin/apps"):
    return world.console.post(path, data={"csrf_token": world.csrf(csrf_from), **form})


def _followed(world: AdminWorld, answer):
    """Post/redirect/get: the page a 303 leads to."""
    assert answer.status_code == 303, answer.text
    return world.console.get(answer.headers["location"])


# --- the console: who may see it ----------------------------------------------------------


def test_every_console_page_and_form_needs_a_sign_in(app) -> None:
    with admin_console(app) as browser:
        for method, path in [
            ("GET", "/admin/apps"),
            ("POST", "/admin/apps"),
            ("GET", f"/admin/apps/{UNKNOWN}"),
            ("POST", f"/admin/apps/{UNKNOWN}"),
            ("POST", f"/admin/apps/{UNKNOWN}/rotate"),
            ("POST", f"/admin/apps/{UNKNOWN}/retire"),
            ("GET", f"/admin/apps/{UNKNOWN}/delete"),
            ("POST", f"/admin/apps/{UNKNOWN}/delete"),
        ]:
            answer = browser.request(method, path, data=FORM if method == "POST" else None)
            assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login"), path


def test_forms_refuse_a_post_without_csrf(admin_world: AdminWorld, store) -> None:
    script_id = next(iter(_apps(store)))
    before = {client_id: client.secret_hash for client_id, client in _apps(store).items()}
    for path in [
        "/admin/apps",
        f"/admin/apps/{script_id}",
        f"/admin/apps/{script_id}/rotate",
        f"/admin/apps/{script_id}/retire",
        f"/admin/apps/{script_id}/delete",
    ]:
        for token in ({}, {"csrf_token": "forged"}):
            answer = admin_world.console.post(path, data={**FORM, **token})
            assert answer.status_code == 403, (path, token)
    after = {client_id: client.secret_hash for client_id, client in _apps(store).items()}
    assert after == before
    assert _apps(store)[script_id].name == "Ops script"


# --- the console: the list and registering an app -------------------------------------------


def test_the_list_shows_each_app_and_the_create_form(admin_world: AdminWorld, store) -> None:
    public = in_unit(store, clients.create_client, "Mobile", [RP_REDIRECT], public=True).client
    page = admin_world.console.get("/admin/apps")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    for client in _apps(store).values():
        assert f'<a href="/admin/apps/{client.client_id}">{client.name}</a>' in page.text
    assert "Public" in page.text and "Confidential" in page.text and "admin API" in page.text
    assert public.context_claim in page.text
    for field in ("name", "redirect_uris", "post_logout_redirect_uris", "public", "scopes"):
        assert f'name="{field}"' in page.text
    for field in ("context_policy", "context_claim", "access_token_ttl", "refresh_token_ttl"):
        assert f'name="{field}"' in page.text


def test_registering_a_confidential_app_shows_its_secret_once(
    admin_world: AdminWorld, store
) -> None:
    answer = _followed(admin_world, _post(admin_world, "/admin/apps", FORM))
    assert answer.status_code == 200, answer.text
    assert "shown only this once" in answer.text
    secret = _secret_on(answer.text)
    (client,) = [c for c in _apps(store).values() if c.name == "CRM"]
    assert client.check_client_secret(secret)
    assert client.redirect_uris == ["https://crm.example.com/cb", "http://127.0.0.1:8765/cb"]
    assert (client.allowed_scopes, client.context_policy) == ("openid profile", "required")
    assert client.context_claim == "wecom_context"  # left empty: the default
    assert (client.access_token_ttl, client.id_token_ttl, client.refresh_token_ttl) == (300, 900, 0)
    assert "refresh_token" not in client.grant_types
    assert _events(store, client.client_id) == [("client.created", "admin:root")]
    again = admin_world.console.get(f"/admin/apps/{client.client_id}")
    assert secret not in again.text and 'class="secret"' not in again.text


def test_registering_a_public_app_shows_no_secret(admin_world: AdminWorld, store) -> None:
    posted = _post(admin_world, "/admin/apps", {**FORM, "name": "Mobile", "public": "on"})
    answer = _followed(admin_world, posted)
    assert answer.status_code == 200, answer.text
    assert 'class="secret"' not in answer.text
    assert "A public app has no secret" in answer.text
    (client,) = [c for c in _apps(store).values() if c.name == "Mobile"]
    assert client.is_public and client.secret_hash is None


def _case(case: tuple[str, dict[str, Any]]) -> str:
    field, change = case
    return f"{field}={next(iter(change.values()))!r}"[:40]


CREATE_ERRORS = [
    ("name", {"name": "   "}),
    ("redirect_uris", {"redirect_uris": "  \r\n"}),
    ("redirect_uris", {"redirect_uris": "https://crm.example.com/cb#top"}),
    ("redirect_uris", {"redirect_uris": "https://*.example.com/cb"}),
    ("redirect_uris", {"redirect_uris": "http://crm.example.com/cb"}),
    ("post_logout_redirect_uris", {"post_logout_redirect_uris": "crm.example.com/bye"}),
    ("scopes", {"scopes": ["openid", "iam:admin"]}),
    ("context_policy", {"context_policy": "always"}),
    ("context_claim", {"context_claim": "email"}),
    ("context_claim", {"context_claim": "wecom context"}),
    ("access_token_ttl", {"access_token_ttl": "59"}),
    ("id_token_ttl", {"id_token_ttl": "1h"}),
    ("refresh_token_ttl", {"refresh_token_ttl": "-1"}),
    ("initiate_login_uri", {"initiate_login_uri": "http://crm.example.com/start"}),
    ("initiate_login_uri", {"initiate_login_uri": "https://crm.example.com/start#top"}),
    ("initiate_login_uri", {"initiate_login_uri": "crm.example.com/start"}),
    ("access_token_signing_alg", {"access_token_signing_alg": "HS256"}),
]


@pytest.mark.parametrize(("field", "change"), CREATE_ERRORS, ids=map(_case, CREATE_ERRORS))
def test_an_invalid_field_reshows_the_create_form_and_registers_nothing(
    admin_world: AdminWorld, store, field: str, change: dict[str, Any]
) -> None:
    before = set(_apps(store))
    form = {**FORM, "name": "Kept name", **change, "csrf_token": admin_world.csrf("/admin/apps")}
    answer = admin_world.console.post("/admin/apps", data=form)
    assert answer.status_code == 422, answer.text
    assert f'id="{field}-error"' in answer.text
    assert 'aria-invalid="true"' in answer.text
    if field != "name":
        assert 'value="Kept name"' in answer.text  # what was typed is shown again
    assert set(_apps(store)) == before


# --- the console: one app -------------------------------------------------------------------


def test_the_app_page_shows_the_settings_and_saves_changes(admin_world: AdminWorld, store) -> None:
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    page = admin_world.console.get(f"/admin/apps/{client_id}")
    assert page.status_code == 200
    assert RP_REDIRECT in page.text and "Rotate secret" in page.text
    assert "Retire previous secret" not in page.text
    answer = _post(
        admin_world,
        f"/admin/apps/{client_id}",
        {**FORM, "name": "CRM 2", "post_logout_redirect_uris": "https://crm.example.com/bye"},
    )
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        f"/admin/apps/{client_id}?done=saved",
    )
    client = in_unit(store, clients.get_client, client_id)
    assert (client.name, client.post_logout_redirect_uris) == (
        "CRM 2",
        ["https://crm.example.com/bye"],
    )
    assert client.refresh_token_ttl == 0 and client.access_token_ttl == 300
    assert "Changes saved." in admin_world.console.get(answer.headers["location"]).text
    assert _events(store, client_id)[-1] == ("client.updated", "admin:root")


@pytest.mark.parametrize(("field", "change"), CREATE_ERRORS, ids=map(_case, CREATE_ERRORS))
def test_an_invalid_field_reshows_the_edit_form_and_changes_nothing(
    admin_world: AdminWorld, store, field: str, change: dict[str, Any]
) -> None:
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    before = in_unit(store, clients.get_client, client_id)
    csrf = admin_world.csrf(f"/admin/apps/{client_id}")
    form = {**FORM, "name": "Renamed", **change, "csrf_token": csrf}
    answer = admin_world.console.post(f"/admin/apps/{client_id}", data=form)
    assert answer.status_code == 422, answer.text
    assert f'id="{field}-error"' in answer.text
    after = in_unit(store, clients.get_client, client_id)
    assert (after.name, after.redirect_uris, after.updated_at) == (
        before.name,
        before.redirect_uris,
        before.updated_at,
    )
    assert _events(store, client_id) == [("client.created", "cli")]


START = "https://crm.example.com/start"


def test_the_form_sets_changes_and_removes_the_initiate_login_uri(
    admin_world: AdminWorld, store
) -> None:
    created = _followed(
        admin_world, _post(admin_world, "/admin/apps", {**FORM, "initiate_login_uri": START})
    )
    assert created.status_code == 200, created.text
    (client,) = [c for c in _apps(store).values() if c.name == "CRM"]
    assert client.initiate_login_uri == START
    page = f"/admin/apps/{client.client_id}"
    assert f'name="initiate_login_uri" value="{START}"' in admin_world.console.get(page).text

    moved = START + "?from=workbench"
    answer = _post(admin_world, page, {**FORM, "initiate_login_uri": f" {moved} "}, page)
    assert answer.status_code == 303, answer.text
    assert in_unit(store, clients.get_client, client.client_id).initiate_login_uri == moved
    answer = _post(admin_world, page, {**FORM, "initiate_login_uri": ""}, page)
    assert answer.status_code == 303, answer.text
    assert in_unit(store, clients.get_client, client.client_id).initiate_login_uri is None
    assert [event for event, _ in _events(store, client.client_id)] == [
        "client.created",
        "client.updated",
        "client.updated",
    ]


def test_the_form_explains_the_initiate_login_uri_in_both_languages(
    admin_world: AdminWorld,
) -> None:
    english = admin_world.console.get("/admin/apps").text
    assert 'id="initiate_login_uri"' in english
    assert "Where a WeCom workbench link sends people to sign in to this app" in english
    assert 'aria-describedby="initiate_login_uri-hint"' in english
    chinese = admin_world.console.get("/admin/apps", headers={"accept-language": "zh-CN"}).text
    assert "工作台" in chinese and "initiate_login_uri" in chinese


def _connect(store: Store, box: SecretBox, corp_id: str, name: str, *, enabled: bool = True):
    in_unit(store, corps.add_corp, box, corp_id, name, 1000002, "s" * 43)
    if not enabled:
        in_unit(store, corps.update_corp, box, corp_id, actor="test", enabled=False)


def _workbench_links(page: str) -> list[str]:
    return re.findall(r'<code class="link" id="launch-[^"]*">([^<]*)</code>', page)


def test_the_app_page_lists_a_workbench_link_for_each_enabled_corporation(
    admin_world: AdminWorld, store, box: SecretBox
) -> None:
    _connect(store, box, "wwsubsidiarya0001", "子公司A")
    _connect(store, box, "wwsubsidiaryc0003", "子公司C (gone)", enabled=False)
    _connect(store, box, "wwsubsidiaryb0002", "子公司B")
    client_id = in_unit(
        store, clients.create_client, "CRM", [RP_REDIRECT], initiate_login_uri=START
    ).client.client_id

    page = admin_world.console.get(f"/admin/apps/{client_id}").text

    assert 'id="workbench-title"' in page and "Workbench links" in page
    assert _workbench_links(page) == [
        f"https://testserver/launch/{client_id}/wecom/wwsubsidiarya0001",
        f"https://testserver/launch/{client_id}/wecom/wwsubsidiaryb0002",
    ]
    assert "子公司A" in page and "子公司B" in page
    assert "子公司C" not in page and "wwsubsidiaryc0003" not in page
    for corp_id in ("wwsubsidiarya0001", "wwsubsidiaryb0002"):
        assert f'data-copy="launch-{corp_id}"' in page  # its copy button
    assert '<script src="/static/admin-copy.js" defer></script>' in page
    chinese = admin_world.console.get(
        f"/admin/apps/{client_id}", headers={"accept-language": "zh-CN"}
    ).text
    assert "工作台链接" in chinese and len(_workbench_links(chinese)) == 2


def test_without_an_initiate_login_uri_the_page_says_the_links_need_one(
    admin_world: AdminWorld, store, box: SecretBox
) -> None:
    _connect(store, box, "wwsubsidiarya0001", "子公司A")
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id

    page = admin_world.console.get(f"/admin/apps/{client_id}").text

    assert 'id="workbench-title"' in page
    assert _workbench_links(page) == [] and "/launch/" not in page
    assert 'id="workbench-needs-uri"' in page
    assert "Workbench links need a sign-in start URI" in page


def test_without_an_enabled_corporation_the_page_says_so(
    admin_world: AdminWorld, store, box: SecretBox
) -> None:
    _connect(store, box, "wwsubsidiarya0001", "子公司A", enabled=False)
    client_id = in_unit(
        store, clients.create_client, "CRM", [RP_REDIRECT], initiate_login_uri=START
    ).client.client_id
    page = admin_world.console.get(f"/admin/apps/{client_id}").text
    assert _workbench_links(page) == [] and 'id="workbench-no-corps"' in page


def test_the_copy_script_is_served_and_allowed_by_the_policy(admin_world: AdminWorld) -> None:
    script = admin_world.console.get("/static/admin-copy.js")
    assert script.status_code == 200 and "navigator.clipboard" in script.text
    page = admin_world.console.get("/admin/apps")
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_rotating_in_the_console_shows_the_new_secret_and_retiring_ends_the_old(
    admin_world: AdminWorld, store
) -> None:
    registered = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    client_id, old = registered.client.client_id, registered.client_secret or ""
    page = f"/admin/apps/{client_id}"
    rotated = _followed(admin_world, _post(admin_world, f"{page}/rotate", {}, page))
    assert rotated.status_code == 200
    new = _secret_on(rotated.text)
    assert "keeps working until you retire it" in rotated.text
    client = in_unit(store, clients.get_client, client_id)
    assert client.check_client_secret(new) and client.check_client_secret(old)
    assert "Retire previous secret" in admin_world.console.get(page).text
    retired = _post(admin_world, f"{page}/retire", {}, page)
    assert (retired.status_code, retired.headers["location"]) == (303, f"{page}?done=retired")
    client = in_unit(store, clients.get_client, client_id)
    assert client.check_client_secret(new) and not client.check_client_secret(old)
    assert _events(store, client_id)[1:] == [
        ("client.secret_rotated", "admin:root"),
        ("client.previous_secret_retired", "admin:root"),
    ]


def test_a_public_app_has_no_secret_to_rotate_or_retire(admin_world: AdminWorld, store) -> None:
    client_id = in_unit(
        store, clients.create_client, "Mobile", [RP_REDIRECT], public=True
    ).client.client_id
    page = f"/admin/apps/{client_id}"
    assert "Rotate secret" not in admin_world.console.get(page).text
    for action in ("rotate", "retire"):
        assert _post(admin_world, f"{page}/{action}", {}, page).status_code == 409
    assert in_unit(store, clients.get_client, client_id).secret_hash is None


def test_deleting_asks_first(admin_world: AdminWorld, store) -> None:
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    page = f"/admin/apps/{client_id}"
    assert f'href="{page}/delete"' in admin_world.console.get(page).text
    question = admin_world.console.get(f"{page}/delete")
    assert question.status_code == 200 and "Delete CRM?" in question.text
    assert f'action="{page}/delete"' in question.text
    assert client_id in _apps(store)  # asking deletes nothing
    answer = _post(admin_world, f"{page}/delete", {}, page)
    assert (answer.status_code, answer.headers["location"]) == (303, "/admin/apps?done=deleted")
    assert client_id not in _apps(store)
    assert "The app is deleted." in admin_world.console.get(answer.headers["location"]).text
    assert _events(store, client_id)[-1] == ("client.deleted", "admin:root")


def test_an_unknown_app_is_404_on_every_page_and_form(admin_world: AdminWorld) -> None:
    csrf = admin_world.csrf("/admin/apps")
    for method, suffix in [
        ("GET", ""),
        ("GET", "/delete"),
        ("POST", ""),
        ("POST", "/rotate"),
        ("POST", "/retire"),
        ("POST", "/delete"),
    ]:
        data = {**FORM, "csrf_token": csrf} if method == "POST" else None
        answer = admin_world.console.request(method, f"/admin/apps/{UNKNOWN}{suffix}", data=data)
        assert answer.status_code == 404, (method, suffix)
        assert "There is no such app." in answer.text


def test_the_console_speaks_chinese(admin_world: AdminWorld) -> None:
    page = admin_world.console.get("/admin/apps", headers={"accept-language": "zh-CN"})
    assert "登记新应用" in page.text and "回调地址" in page.text


def test_the_secret_page_is_a_redirect_so_a_reload_registers_nothing(
    admin_world: AdminWorld, store
) -> None:
    posted = _post(admin_world, "/admin/apps", FORM)
    location = posted.headers["location"]
    handover = posted.cookies.get("iam_admin_secret")
    assert handover and "secret" not in location
    first = admin_world.console.get(location)  # the page shows it, once
    assert 'class="secret"' in first.text
    reload = admin_world.console.get(location)  # a reload is a GET: nothing new, no secret
    assert 'class="secret"' not in reload.text
    assert [c.name for c in _apps(store).values()].count("CRM") == 1
    # The sealed secret of one app never shows on another app's page, nor a forged one.
    other = in_unit(store, clients.create_client, "Other", [RP_REDIRECT]).client.client_id
    for sealed in (handover, "forged"):
        admin_world.console.cookies.set(
            "iam_admin_secret", sealed, domain="testserver.local", path=f"/admin/apps/{other}"
        )
        page = admin_world.console.get(f"/admin/apps/{other}")
        assert 'class="secret"' not in page.text


# --- the API --------------------------------------------------------------------------------


def _script_id(store: Store) -> str:
    """The admin client whose token `admin_world.bearer` carries."""
    return next(c.client_id for c in _apps(store).values() if c.name == "Ops script")


@pytest.mark.parametrize("how", ["session", "bearer"])
def test_the_api_lists_registers_reads_changes_rotates_and_deletes(
    admin_world: AdminWorld, store, how: str
) -> None:
    with admin_console(admin_world.console.app) as signed_out:
        if how == "session":
            api, headers, actor = admin_world.console, {}, "admin:root"
        else:
            api, headers, actor = signed_out, admin_world.bearer, f"client:{_script_id(store)}"
        _api_round_trip(api, headers, actor, store)


def _api_round_trip(api: TestClient, headers: dict[str, str], actor: str, store: Store) -> None:
    listed = api.get(API, headers=headers)
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    assert [a["name"] for a in listed.json()["apps"]] == ["Ops script"]
    assert listed.json()["apps"][0]["admin"] is True
    assert "iam:admin" not in listed.json()["apps"][0]["scopes"]

    created = api.post(API, json=APP, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert created.headers["location"] == f"{API}/{client_id}"
    assert created.headers["cache-control"] == "no-store"
    assert {key: body[key] for key in APP} == APP
    assert body["public"] is False and body["has_previous_secret"] is False
    assert body["secret_rotated_at"] is None and body["created_at"].endswith("Z")
    assert "secret_hash" not in created.text and secret not in api.get(API, headers=headers).text
    assert in_unit(store, clients.get_client, client_id).check_client_secret(secret)

    read = api.get(f"{API}/{client_id}", headers=headers)
    assert read.status_code == 200 and read.json() == {
        k: v for k, v in body.items() if k != "client_secret"
    }

    patched = api.patch(
        f"{API}/{client_id}",
        json={"name": "CRM 2", "context_policy": "optional", "refresh_token_ttl": 3600},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["context_policy"]) == ("CRM 2", "optional")
    assert patched.json()["redirect_uris"] == APP["redirect_uris"]  # untouched
    assert in_unit(store, clients.get_client, client_id).check_grant_type("refresh_token")

    rotated = api.post(f"{API}/{client_id}/secret", headers=headers)
    assert rotated.status_code == 200 and rotated.json()["has_previous_secret"] is True
    assert rotated.json()["client_secret"] not in (None, secret)
    assert rotated.json()["secret_rotated_at"].endswith("Z")
    retired = api.delete(f"{API}/{client_id}/previous-secret", headers=headers)
    assert retired.status_code == 204 and retired.content == b""
    assert api.get(f"{API}/{client_id}", headers=headers).json()["has_previous_secret"] is False

    deleted = api.delete(f"{API}/{client_id}", headers=headers)
    assert deleted.status_code == 204
    assert api.get(f"{API}/{client_id}", headers=headers).status_code == 404
    assert _events(store, client_id) == [
        ("client.created", actor),
        ("client.updated", actor),
        ("client.secret_rotated", actor),
        ("client.previous_secret_retired", actor),
        ("client.deleted", actor),
    ]


def test_the_api_sets_changes_and_removes_the_initiate_login_uri(
    admin_world: AdminWorld, store
) -> None:
    api = admin_world.console
    plain = api.post(API, json=APP).json()
    assert plain["initiate_login_uri"] is None
    created = api.post(API, json={**APP, "initiate_login_uri": START})
    assert created.status_code == 201, created.text
    client_id = created.json()["client_id"]
    assert created.json()["initiate_login_uri"] == START
    assert api.get(f"{API}/{client_id}").json()["initiate_login_uri"] == START

    moved = "http://127.0.0.1:8765/start?from=workbench"
    changed = api.patch(f"{API}/{client_id}", json={"initiate_login_uri": moved})
    assert (changed.status_code, changed.json()["initiate_login_uri"]) == (200, moved)
    untouched = api.patch(f"{API}/{client_id}", json={"name": "CRM 2"})
    assert untouched.json()["initiate_login_uri"] == moved  # not sent: kept
    removed = api.patch(f"{API}/{client_id}", json={"initiate_login_uri": ""})
    assert (removed.status_code, removed.json()["initiate_login_uri"]) == (200, None)
    assert in_unit(store, clients.get_client, client_id).initiate_login_uri is None
    empty = api.post(API, json={**APP, "initiate_login_uri": ""})
    assert (empty.status_code, empty.json()["initiate_login_uri"]) == (201, None)


def test_the_description_says_how_to_remove_the_initiate_login_uri(
    admin_world: AdminWorld,
) -> None:
    schemas = admin_world.console.get("/admin/api/openapi.json").json()["components"]["schemas"]
    answered = schemas["App"]["properties"]["initiate_login_uri"]
    assert [kind["type"] for kind in answered["anyOf"]] == ["string", "null"]
    for name in ("AppInput", "AppPatch"):
        field = schemas[name]["properties"]["initiate_login_uri"]
        assert field["type"] == "string" and "null" not in str(field.get("anyOf", ""))
        assert "empty string removes" in field["description"], name
        assert re.search(field["pattern"], "") and re.search(field["pattern"], START)
        assert not re.search(field["pattern"], "http://crm.example.com/start")


def test_a_public_app_gets_no_secret_from_the_api(admin_world: AdminWorld) -> None:
    api = admin_world.console
    created = api.post(API, json={**APP, "public": True})
    assert created.status_code == 201
    assert created.json()["client_secret"] is None and created.json()["public"] is True
    client_id = created.json()["client_id"]
    for method, path in [("POST", "secret"), ("DELETE", "previous-secret")]:
        answer = api.request(method, f"{API}/{client_id}/{path}")
        assert answer.status_code == 409 and answer.json()["error"] == "conflict"
    retire = api.post(API, json=APP).json()["client_id"]  # nothing to retire: fine
    assert api.delete(f"{API}/{retire}/previous-secret").status_code == 204


def test_the_old_secret_works_at_the_token_endpoint_until_retired(
    admin_world: AdminWorld,
) -> None:
    api = admin_world.console
    created = api.post(API, json=APP, headers=admin_world.bearer).json()
    client_id, old = created["client_id"], created["client_secret"]
    assert _token(api, client_id, old) == 200
    new = api.post(f"{API}/{client_id}/secret", headers=admin_world.bearer).json()["client_secret"]
    assert (_token(api, client_id, old), _token(api, client_id, new)) == (200, 200)
    assert api.delete(f"{API}/{client_id}/previous-secret").status_code == 204
    refused = api.post("/token", data={"grant_type": "client_credentials"}, auth=(client_id, old))
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    assert _token(api, client_id, new) == 200


OPERATIONS = [
    ("GET", API),
    ("POST", API),
    ("GET", f"{API}/{UNKNOWN}"),
    ("PATCH", f"{API}/{UNKNOWN}"),
    ("DELETE", f"{API}/{UNKNOWN}"),
    ("POST", f"{API}/{UNKNOWN}/secret"),
    ("DELETE", f"{API}/{UNKNOWN}/previous-secret"),
]


def test_every_api_call_needs_a_session_or_an_admin_token(app) -> None:
    with admin_console(app) as browser:
        for method, path in OPERATIONS:
            for headers in ({}, {"authorization": "Bearer not-a-token"}):
                answer = browser.request(method, path, json=APP, headers=headers)
                assert answer.status_code == 401, (method, path)
                assert answer.json()["error"] == "unauthorized"
                assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_non_admin_clients_own_token_is_refused(app, store) -> None:
    plain = in_unit(store, clients.create_client, "Plain", [RP_REDIRECT])
    with admin_console(app) as browser:
        token = browser.post(
            "/token",
            data={"grant_type": "client_credentials"},
            auth=(plain.client.client_id, plain.client_secret or ""),
        )
        assert token.status_code == 200, token.text
        assert "iam:admin" not in token.json()["scope"]
        bearer = {"authorization": f"Bearer {token.json()['access_token']}"}
        for method, path in OPERATIONS:
            assert browser.request(method, path, json=APP, headers=bearer).status_code == 401


def test_unknown_apps_are_404_in_json(admin_world: AdminWorld) -> None:
    api = admin_world.console
    for method, path in [*OPERATIONS[2:], ("GET", f"{API}/a%2Fb"), ("GET", f"{API}/a/b/c")]:
        answer = api.request(method, path, json={"name": "x"} if method == "PATCH" else None)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "not_found"


def test_a_wrong_method_is_405(admin_world: AdminWorld) -> None:
    api = admin_world.console
    for method, path in [
        ("PUT", API),
        ("PUT", f"{API}/{UNKNOWN}"),
        ("GET", f"{API}/{UNKNOWN}/secret"),
        ("PATCH", f"{API}/{UNKNOWN}/previous-secret"),
    ]:
        assert api.request(method, path).status_code == 405, (method, path)


API_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("name", {"name": None}),
    ("name", {"name": 7}),
    ("name", {"name": " "}),
    ("name", {"name": "x" * 201}),
    ("name", {"name": "CRM\n"}),
    ("redirect_uris", {"redirect_uris": []}),
    ("redirect_uris", {"redirect_uris": "https://crm.example.com/cb"}),
    ("redirect_uris", {"redirect_uris": [7]}),
    ("redirect_uris", {"redirect_uris": ["https://crm.example.com/cb#x"]}),
    ("redirect_uris", {"redirect_uris": ["https://*.example.com/cb"]}),
    ("redirect_uris", {"redirect_uris": ["http://crm.example.com/cb"]}),
    ("redirect_uris", {"redirect_uris": ["https://user@crm.example.com/cb"]}),
    ("redirect_uris", {"redirect_uris": ["https://crm.example.com/cb"] * 21}),
    ("post_logout_redirect_uris", {"post_logout_redirect_uris": ["javascript:alert(1)"]}),
    ("scopes", {"scopes": "openid"}),
    ("scopes", {"scopes": ["openid", "iam:admin"]}),
    ("context_policy", {"context_policy": "always"}),
    ("context_claim", {"context_claim": "sub"}),
    ("context_claim", {"context_claim": ""}),
    ("context_claim", {"context_claim": "has space"}),
    ("access_token_ttl", {"access_token_ttl": 59}),
    ("access_token_ttl", {"access_token_ttl": "600"}),
    ("id_token_ttl", {"id_token_ttl": 86401}),
    ("id_token_ttl", {"id_token_ttl": 3600.5}),
    ("refresh_token_ttl", {"refresh_token_ttl": True}),
    ("refresh_token_ttl", {"refresh_token_ttl": 90 * 86400 + 1}),
    ("initiate_login_uri", {"initiate_login_uri": None}),
    ("initiate_login_uri", {"initiate_login_uri": 7}),
    ("initiate_login_uri", {"initiate_login_uri": [START]}),
    ("initiate_login_uri", {"initiate_login_uri": "http://crm.example.com/start"}),
    ("initiate_login_uri", {"initiate_login_uri": "https://crm.example.com/start#x"}),
    ("initiate_login_uri", {"initiate_login_uri": "/start"}),
    ("initiate_login_uri", {"initiate_login_uri": " "}),
    ("client_id", {"client_id": "chosen"}),
    ("client_secret", {"client_secret": "mine"}),
    ("admin", {"admin": True}),
    ("grant_types", {"grant_types": ["password"]}),
    ("access_token_signing_alg", {"access_token_signing_alg": "HS256"}),
    ("access_token_signing_alg", {"access_token_signing_alg": "none"}),
    ("access_token_signing_alg", {"access_token_signing_alg": "es256"}),
    ("access_token_signing_alg", {"access_token_signing_alg": ""}),
    ("access_token_signing_alg", {"access_token_signing_alg": None}),
    ("access_token_signing_alg", {"access_token_signing_alg": ["ES256"]}),
]


@pytest.mark.parametrize(("field", "change"), API_ERRORS, ids=map(_case, API_ERRORS))
def test_an_invalid_field_is_422_naming_it_and_changes_nothing(
    admin_world: AdminWorld, store, field: str, change: dict[str, Any]
) -> None:
    """Registering with it, or changing an app to it."""
    api = admin_world.console
    target = api.post(API, json=APP).json()["client_id"]
    before = {client_id: client.updated_at for client_id, client in _apps(store).items()}
    for method, path, body in [
        ("POST", API, {**APP, **change}),
        ("PATCH", f"{API}/{target}", {"access_token_ttl": 120, **change}),
    ]:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 422, (method, answer.text)
        assert (answer.json()["error"], answer.json()["field"]) == ("invalid", field), method
    after = {client_id: client.updated_at for client_id, client in _apps(store).items()}
    assert after == before


@pytest.mark.parametrize("field", ["name", "redirect_uris"])
def test_a_missing_required_field_is_422_naming_it(admin_world: AdminWorld, field: str) -> None:
    missing = admin_world.console.post(API, json={k: v for k, v in APP.items() if k != field})
    assert (missing.status_code, missing.json()["field"]) == (422, field)


def test_public_cannot_change_after_creation(admin_world: AdminWorld) -> None:
    api = admin_world.console
    target = api.post(API, json=APP).json()["client_id"]
    public = api.patch(f"{API}/{target}", json={"public": True})
    assert (public.status_code, public.json()["field"]) == (422, "public")
    assert "cannot change after creation" in public.json()["message"]


def test_a_body_that_is_not_a_json_object_is_refused(admin_world: AdminWorld) -> None:
    api = admin_world.console
    assert api.post(API, data={"name": "CRM"}).status_code == 415
    not_json = api.post(API, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert api.post(API, json=[APP]).status_code == 400
    assert api.post(API, json={**APP, "name": "x" * 70000}).status_code == 413


# --- the OpenAPI description ----------------------------------------------------------------


def _conforms(value: Any, schema: dict[str, Any], document: dict[str, Any], where: str) -> None:
    """Enough JSON Schema to hold the answers to what the description says of them."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        _conforms(value, document["components"]["schemas"][name], document, where)
        return
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    python = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kinds:
        assert any(
            (isinstance(value, int) and not isinstance(value, bool))
            if kind == "integer"
            else isinstance(value, python[kind])
            for kind in kinds
        ), (where, value, kinds)
    if "enum" in schema:
        assert value in schema["enum"], (where, value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), (where, sorted(value))
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), (where, set(value) - set(properties))
        for key, item in value.items():
            if key in properties:
                _conforms(item, properties[key], document, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _conforms(item, schema["items"], document, f"{where}[{index}]")


def test_every_answer_is_what_the_description_says(admin_world: AdminWorld) -> None:
    api = admin_world.console
    document = api.get("/admin/api/openapi.json").json()
    paths = {path: ops for path, ops in document["paths"].items() if path.startswith("/apps")}
    assert set(paths) == {
        "/apps",
        "/apps/{client_id}",
        "/apps/{client_id}/secret",
        "/apps/{client_id}/previous-secret",
    }
    for name in ("App", "AppInput", "AppPatch", "AppWithSecret"):
        assert name in document["components"]["schemas"]
    for name in ("AppInput", "AppPatch"):
        assert document["components"]["schemas"][name]["additionalProperties"] is False

    client_id = api.post(API, json=APP).json()["client_id"]
    public_id = api.post(API, json={**APP, "public": True}).json()["client_id"]
    calls = [
        ("/apps", "get", None, None),
        ("/apps", "post", {"name": "Another", "redirect_uris": [RP_REDIRECT]}, None),
        ("/apps", "post", {**APP, "context_claim": "sub"}, None),
        ("/apps", "post", {**APP, "public": "yes"}, None),
        ("/apps/{client_id}", "get", None, client_id),
        ("/apps/{client_id}", "get", None, UNKNOWN),
        ("/apps/{client_id}", "patch", {"scopes": ["openid"]}, client_id),
        ("/apps/{client_id}", "patch", {"public": True}, client_id),
        ("/apps/{client_id}", "patch", {"name": "x"}, UNKNOWN),
        ("/apps/{client_id}/secret", "post", None, client_id),
        ("/apps/{client_id}/secret", "post", None, UNKNOWN),
        ("/apps/{client_id}/secret", "post", None, public_id),
        ("/apps/{client_id}/previous-secret", "delete", None, client_id),
        ("/apps/{client_id}/previous-secret", "delete", None, UNKNOWN),
        ("/apps/{client_id}", "delete", None, client_id),
        ("/apps/{client_id}", "delete", None, client_id),
    ]
    for path, method, body, target in calls:
        url = "/admin/api" + path.replace("{client_id}", target or "")
        answer = api.request(method.upper(), url, json=body)
        operation = paths[path][method]
        documented = operation["responses"].get(str(answer.status_code))
        assert documented, (method, path, answer.status_code, answer.text)
        for header in documented.get("headers", {}):
            assert header.lower() in answer.headers, (method, path, header)
        if "content" in documented:
            assert answer.headers["content-type"] == "application/json"
            schema = documented["content"]["application/json"]["schema"]
            _conforms(answer.json(), schema, document, f"{method} {path}")
        else:
            assert answer.content == b""
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert "401" in operation["responses"], (method, path)
            if "{client_id}" in path:
                assert "404" in operation["responses"], (method, path)
            if "requestBody" in operation:
                assert {"400", "415", "422"} <= set(operation["responses"]), (method, path)


# --- how an app authenticates, through the API ----------------------------------------------

EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "api-ec"})
KEYS = {"keys": [EC_KEY.as_dict(private=False)]}


def _signed_by(key: Any, client_id: str, alg: str) -> dict[str, str]:
    """A client_credentials form authenticated with an RFC 7523 assertion."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{ISSUER}/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(12),
    }
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jwt.encode({"alg": alg}, claims, key, algorithms=[alg]),
    }


def test_the_api_registers_apps_that_sign_their_requests(admin_world: AdminWorld, app) -> None:
    api = admin_world.console
    keyed = api.post(
        API, json={**APP, "token_endpoint_auth_method": "private_key_jwt", "jwks": KEYS}
    )
    assert keyed.status_code == 201, keyed.text
    record = keyed.json()
    assert (record["token_endpoint_auth_method"], record["jwks"], record["client_secret"]) == (
        "private_key_jwt",
        KEYS,
        None,
    )
    with TestClient(app, base_url=ISSUER) as client:
        answer = client.post("/token", data=_signed_by(EC_KEY, record["client_id"], "ES256"))
        assert answer.status_code == 200, answer.text
        hmac = api.post(API, json={**APP, "token_endpoint_auth_method": "client_secret_jwt"})
        assert hmac.status_code == 201, hmac.text
        secret = OctKey.import_key(hmac.json()["client_secret"].encode())
        answer = client.post("/token", data=_signed_by(secret, hmac.json()["client_id"], "HS256"))
        assert answer.status_code == 200, answer.text
        at = api.post(
            API,
            json={
                **APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": "https://crm.example.com/jwks",
            },
        )
        assert (at.status_code, at.json()["jwks_uri"]) == (201, "https://crm.example.com/jwks")


SMALL_RSA = {"keys": [{"kty": "RSA", "n": "AQAB" * 64, "e": "AQAB"}]}  # 1,536 bits
PRIVATE = {"keys": [EC_KEY.as_dict(private=True)]}
REGISTRATION_ERRORS = [
    ("jwks", {"token_endpoint_auth_method": "private_key_jwt"}),
    ("jwks", {"token_endpoint_auth_method": "private_key_jwt", "jwks": PRIVATE}),
    ("jwks", {"token_endpoint_auth_method": "private_key_jwt", "jwks": SMALL_RSA}),
    (
        "jwks",
        {
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": KEYS,
            "jwks_uri": "https://a.example/k",
        },
    ),
    ("jwks", {"token_endpoint_auth_method": "client_secret_basic", "jwks": KEYS}),
    ("jwks_uri", {"jwks_uri": "https://a.example/k"}),
    ("jwks_uri", {"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "ftp://a.example"}),
    ("token_endpoint_auth_method", {"token_endpoint_auth_method": "none"}),
    (
        "token_endpoint_auth_method",
        {"public": True, "token_endpoint_auth_method": "client_secret_jwt"},
    ),
    ("token_endpoint_auth_method", {"token_endpoint_auth_method": "tls_client_auth"}),
]


@pytest.mark.parametrize(
    ("field", "change"), REGISTRATION_ERRORS, ids=map(_case, REGISTRATION_ERRORS)
)
def test_an_app_that_cannot_authenticate_so_is_not_registered(
    admin_world: AdminWorld, store, field: str, change: dict[str, Any]
) -> None:
    before = set(_apps(store))
    answer = admin_world.console.post(API, json={**APP, **change})
    assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text
    assert set(_apps(store)) == before


def test_the_api_moves_an_app_to_keys_and_refuses_what_conflicts_with_it(
    admin_world: AdminWorld, store
) -> None:
    """What a change cannot do with the app as it is: 409, and nothing changes."""
    api = admin_world.console
    target = api.post(API, json=APP).json()["client_id"]
    public = api.post(API, json={**APP, "public": True}).json()["client_id"]
    before = {client_id: client.updated_at for client_id, client in _apps(store).items()}
    for client_id, body in [
        (target, {"token_endpoint_auth_method": "private_key_jwt"}),  # keys it does not have
        (target, {"jwks": KEYS}),  # keys for an app that uses a secret
        (target, {"token_endpoint_auth_method": "none"}),  # a confidential app
        (public, {"token_endpoint_auth_method": "client_secret_basic"}),  # a public one
    ]:
        answer = api.patch(f"{API}/{client_id}", json=body)
        assert (answer.status_code, answer.json()["error"]) == (409, "conflict"), body
    after = {client_id: client.updated_at for client_id, client in _apps(store).items()}
    assert after == before
    both = api.patch(f"{API}/{target}", json={"jwks": KEYS, "jwks_uri": "https://a.example/k"})
    assert (both.status_code, both.json()["field"]) == (422, "jwks")
    moved = api.patch(
        f"{API}/{target}", json={"token_endpoint_auth_method": "private_key_jwt", "jwks": KEYS}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["token_endpoint_auth_method"], moved.json()["jwks"]) == (
        "private_key_jwt",
        KEYS,
    )
    uri = api.patch(f"{API}/{target}", json={"jwks_uri": "https://crm.example.com/jwks"})
    assert (uri.json()["jwks"], uri.json()["jwks_uri"]) == (None, "https://crm.example.com/jwks")
    back = api.patch(f"{API}/{target}", json={"token_endpoint_auth_method": "client_secret_post"})
    assert (back.json()["token_endpoint_auth_method"], back.json()["jwks_uri"]) == (
        "client_secret_post",
        None,
    )
    rotated = api.post(f"{API}/{target}/secret")
    assert rotated.status_code == 200 and rotated.json()["client_secret"]


# --- the console: asking first, lifetimes in units, endpoints (issue #16) -----------------------


def _copyable(page: str) -> dict[str, str]:
    """Each value the page offers to copy (by its element id), each with its copy button."""
    values = dict(re.findall(r'<code class="(?:link|value)" id="([^"]+)">([^<]*)</code>', page))
    assert set(values) == set(re.findall(r'data-copy="([^"]+)"', page)), page
    return values


@pytest.mark.parametrize("action", ["rotate", "retire"])
def test_rotating_and_retiring_a_secret_ask_first_with_a_red_button(
    admin_world: AdminWorld, store, action: str
) -> None:
    registered = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT])
    client_id = registered.client.client_id
    in_unit(store, clients.rotate_secret, client_id, box=SecretBox(TEST_SECRET))  # two secrets
    page = f"/admin/apps/{client_id}"
    shown = admin_world.console.get(page).text
    # the page's red button is a link to the question; no form on the page posts the action
    assert f'<a class="button danger" href="{page}?confirm={action}"' in shown
    assert f'action="{page}/{action}"' not in shown
    question = admin_world.console.get(f"{page}?confirm={action}")
    title = {"rotate": "Rotate the secret of CRM?", "retire": "Retire the previous secret of CRM?"}
    assert title[action] in question.text
    assert re.search(
        rf'<form method="post" action="{page}/{action}">\s*<input[^>]+>\s*'
        r'<button type="submit" class="danger">',
        question.text,
    ), question.text
    assert f'<a class="button secondary" href="{page}">Cancel</a>' in question.text
    assert _events(store, client_id)[-1][0] == "client.secret_rotated"  # asking did nothing
    assert 'id="confirm"' not in admin_world.console.get(f"{page}?confirm=explode").text


def test_deleting_asks_with_a_red_button(admin_world: AdminWorld, store) -> None:
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    page = f"/admin/apps/{client_id}"
    assert f'<a class="button danger" href="{page}/delete">' in admin_world.console.get(page).text
    question = admin_world.console.get(f"{page}/delete").text
    assert '<button type="submit" class="danger">Delete permanently</button>' in question


@pytest.mark.parametrize("action", ["rotate", "retire", "delete"])
def test_a_get_on_an_apps_form_url_goes_to_its_page(
    admin_world: AdminWorld, store, action: str
) -> None:
    """A reload or a typed address of a form's URL finds the app's page; `/delete` is the
    question itself. The JSON API keeps its 405."""
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    answer = admin_world.console.get(f"/admin/apps/{client_id}/{action}")
    if action == "delete":
        assert answer.status_code == 200 and "Delete CRM?" in answer.text
    else:
        expected = (303, f"/admin/apps/{client_id}")
        assert (answer.status_code, answer.headers["location"]) == expected
    assert client_id in _apps(store)
    api = admin_world.console.get(f"{API}/{client_id}/secret", headers=admin_world.bearer)
    assert api.status_code == 405


def test_lifetimes_are_shown_and_entered_in_minutes_hours_and_days(
    admin_world: AdminWorld, store
) -> None:
    form = admin_world.console.get("/admin/apps").text
    # the defaults: 10 minutes, 1 hour, 30 days; the bounds in the same units
    for name, number, unit in [
        ("access_token_ttl", "10", "minutes"),
        ("id_token_ttl", "1", "hours"),
        ("refresh_token_ttl", "30", "days"),
    ]:
        assert re.search(rf'id="{name}" name="{name}" value="{number}"', form), name
        assert re.search(
            rf'<select id="{name}_unit"[^>]*>(?:(?!</select>).)*'
            rf'<option value="{unit}" selected>{unit}</option>',
            form,
            re.S,
        ), name
    assert 'id="access_token_ttl-hint">1 minute to 1 day.</p>' in form
    assert "0 minutes to 90 days; 0 means the app gets no refresh tokens." in form
    assert '<option value="seconds"' not in form  # whole minutes: no seconds offered
    chinese = admin_world.console.get("/admin/apps?lang=zh-CN").text
    assert 'id="access_token_ttl-hint">1 分钟 至 1 天。</p>' in chinese

    units = {"access_token_ttl_unit": "hours", "id_token_ttl_unit": "minutes"}
    typed = {"access_token_ttl": "2", "id_token_ttl": "45", "refresh_token_ttl": "7"}
    answer = _post(
        admin_world, "/admin/apps", {**FORM, **typed, **units, "refresh_token_ttl_unit": "days"}
    )
    assert answer.status_code == 303, answer.text
    client_id = answer.headers["location"].split("/")[3].split("?")[0]
    client = in_unit(store, clients.get_client, client_id)
    assert (client.access_token_ttl, client.id_token_ttl, client.refresh_token_ttl) == (
        7200,
        2700,
        7 * 86400,
    )
    page = admin_world.console.get(f"/admin/apps/{client_id}?lang=en").text
    assert re.search(r'id="id_token_ttl" name="id_token_ttl" value="45"', page)

    # a lifetime the API set in seconds is shown in seconds, and kept on a save
    admin_world.console.patch(
        f"{API}/{client_id}", json={"access_token_ttl": 61}, headers=admin_world.bearer
    )
    page = admin_world.console.get(f"/admin/apps/{client_id}").text
    assert re.search(r'id="access_token_ttl" name="access_token_ttl" value="61"', page)
    assert '<option value="seconds" selected>seconds</option>' in page


@pytest.mark.parametrize(
    ("typed", "unit"),
    [("25", "hours"), ("0", "minutes"), ("1.5", "hours"), ("10", "weeks"), ("", "minutes")],
)
def test_a_lifetime_out_of_bounds_says_the_bounds_in_units(
    admin_world: AdminWorld, store, typed: str, unit: str
) -> None:
    before = set(_apps(store))
    form = {**FORM, "access_token_ttl": typed, "access_token_ttl_unit": unit}
    answer = _post(admin_world, "/admin/apps?lang=zh-CN", form)
    assert answer.status_code == 422
    error = re.search(r'<p class="error" id="access_token_ttl-error">(.*?)</p>', answer.text, re.S)
    assert error, answer.text
    assert error.group(1) == "请输入整数：1 分钟 至 1 天。"  # the service's English stays out
    assert set(_apps(store)) == before


def test_the_app_pages_show_the_endpoints_with_copy_buttons(admin_world: AdminWorld, store) -> None:
    uris = [RP_REDIRECT, "https://crm.example.com/cb"]
    client_id = in_unit(store, clients.create_client, "CRM", uris).client.client_id
    discovery = f"{ISSUER}/.well-known/openid-configuration"
    listing = admin_world.console.get("/admin/apps").text
    assert _copyable(listing) == {"issuer": ISSUER, "discovery-url": discovery}
    page = admin_world.console.get(f"/admin/apps/{client_id}").text
    assert _copyable(page) == {
        "issuer": ISSUER,
        "discovery-url": discovery,
        "client-id": client_id,
        "redirect-uri-1": RP_REDIRECT,
        "redirect-uri-2": "https://crm.example.com/cb",
    }
    assert '<script src="/static/admin-copy.js" defer></script>' in page
    assert admin_world.console.get(discovery).json()["issuer"] == ISSUER  # the URL is right


def test_the_rotation_time_is_shown_in_the_configured_zone(admin_world: AdminWorld, store) -> None:
    client_id = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT]).client.client_id
    in_unit(store, clients.rotate_secret, client_id, box=SecretBox(TEST_SECRET))
    rotated = in_unit(store, clients.get_client, client_id).secret_rotated_at
    shanghai = rotated.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    page = admin_world.console.get(f"/admin/apps/{client_id}").text
    assert f"Last rotated {shanghai:%Y-%m-%d %H:%M}." in page


def test_the_whole_app_form_fits_the_consoles_field_limit(admin_world: AdminWorld, store) -> None:
    """Every field of the create form, each lifetime with its unit and every scope ticked: more
    fields than a sign-in page's form may have, all taken; a form far longer is refused."""
    whole = {
        **FORM,
        "post_logout_redirect_uris": "https://crm.example.com/bye",
        "allowed_origins": "https://spa.example.com",
        "initiate_login_uri": "https://crm.example.com/start",
        "backchannel_logout_uri": "https://crm.example.com/bc",
        "token_endpoint_auth_method": "client_secret_basic",
        "jwks": "",
        "jwks_uri": "",
        "scopes": list(clients.SUPPORTED_SCOPES),
        **{f"{name}_unit": "minutes" for name in ("access_token_ttl", "id_token_ttl")},
        "access_token_ttl": "5",
        "id_token_ttl": "15",
        "refresh_token_ttl_unit": "days",
    }
    assert len(whole) + len(clients.SUPPORTED_SCOPES) > 21
    answer = _post(admin_world, "/admin/apps", whole)
    assert answer.status_code == 303, answer.text
    flood = {**whole, **{f"x{n}": "1" for n in range(60)}}
    refused = _post(admin_world, "/admin/apps", flood)
    assert refused.status_code == 413


# --- the access token signature (issue #17) ---------------------------------------------------


def _alg_of(token: str) -> str:
    return str(extract_compact(token.encode()).protected["alg"])


def test_the_api_sets_and_changes_the_access_token_signature(
    admin_world: AdminWorld, store: Store
) -> None:
    """RS256 unless ES256 is asked for; a change is audited and signs the next token."""
    api = admin_world.console
    default = api.post(API, json=APP)
    assert default.status_code == 201 and default.json()["access_token_signing_alg"] == "RS256"
    created = api.post(API, json={**APP, "name": "M2M", "access_token_signing_alg": "ES256"})
    assert created.status_code == 201, created.text
    body = created.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert body["access_token_signing_alg"] == "ES256"
    assert in_unit(store, clients.get_client, client_id).access_token_signing_alg == "ES256"
    assert api.get(f"{API}/{client_id}").json()["access_token_signing_alg"] == "ES256"

    def token() -> str:
        answer = api.post(
            "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    assert _alg_of(token()) == "ES256"
    patched = api.patch(f"{API}/{client_id}", json={"access_token_signing_alg": "RS256"})
    assert patched.status_code == 200 and patched.json()["access_token_signing_alg"] == "RS256"
    assert _alg_of(token()) == "RS256"
    with store() as db:
        [updated] = db.scalars(
            select(AuditEvent).where(
                AuditEvent.client_id == client_id, AuditEvent.event == "client.updated"
            )
        )
    assert (updated.actor, updated.detail) == (
        "admin:root",
        {"changed": ["access_token_signing_alg"]},
    )


def test_the_form_offers_and_saves_the_access_token_signature(
    admin_world: AdminWorld, store: Store
) -> None:
    listing = admin_world.console.get("/admin/apps?lang=en").text
    assert '<select id="access_token_signing_alg" name="access_token_signing_alg"' in listing
    assert '<option value="RS256" selected>RS256 (default, widest support)</option>' in listing
    assert "ES256 (faster; the app&#39;s resource servers must support it)" in listing
    chinese = admin_world.console.get("/admin/apps?lang=zh-CN").text
    assert "访问令牌签名算法" in chinese and "RS256（默认，支持最广）" in chinese

    created = _post(
        admin_world, "/admin/apps", {**FORM, "name": "M2M", "access_token_signing_alg": "ES256"}
    )
    assert created.status_code == 303, created.text
    (client,) = [c for c in _apps(store).values() if c.name == "M2M"]
    assert client.access_token_signing_alg == "ES256"
    page = admin_world.console.get(f"/admin/apps/{client.client_id}").text
    assert '<option value="ES256" selected>' in page

    path = f"/admin/apps/{client.client_id}"
    saved = _post(admin_world, path, {**FORM, "access_token_signing_alg": "RS256"}, path)
    assert saved.status_code == 303, saved.text
    assert in_unit(store, clients.get_client, client.client_id).access_token_signing_alg == "RS256"
    assert _events(store, client.client_id)[-1] == ("client.updated", "admin:root")
    unsent = _post(admin_world, path, {**FORM, "name": "M2M 2"}, path)  # a script's form
    assert unsent.status_code == 303
    assert in_unit(store, clients.get_client, client.client_id).access_token_signing_alg == "RS256"
