"""The admin API against its own OpenAPI document (`/admin/api/openapi.json`), with schemathesis.

- The document, as the app serves it, is valid OpenAPI 3.1: schemathesis loads it and finds
  every operation, it passes the OpenAPI 3.1 meta-schema, every schema in it is a valid JSON
  Schema (2020-12), every operation documents its responses, and every `$ref` resolves.
- Every operation answers generated requests, valid and invalid ones (schemathesis' examples,
  coverage and fuzzing phases), as the document says: no server error, a documented status,
  content type, headers and body, valid data taken and invalid data refused.
- A walk through every operation on existing records, so that the success answers (an app with
  its secret, a user with links and sessions, a WeCom connection test...) are checked too, which
  random ids seldom reach.

The app runs in-process (schemathesis' ASGI transport) on a migrated SQLite copy seeded with a
user, apps and a WeCom corporation (reached through the simulator), and is called with an admin
client's bearer token. Generation is bounded and seeded, so a run is quick and repeatable.

The mismatches it found once (integral numbers such as 600.0 for integer fields; ids holding a
newline) have their own tests at the end of this file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema_rs
import pytest
import schemathesis
from joserfc.jwk import ECKey, RSAKey
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.datastructures import Secret
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from support.constants import CORP_A, CORP_B, ISSUER, RP_REDIRECT, TEST_SECRET, WECOM_BASE
from support.units import in_unit
from support.wecom import connect_corp

from iam.app import create_app
from iam.db.models import User
from iam.db.store import Store, create_db_engine
from iam.devtools.wecom_simulator import WeComSimulator, demo_corps
from iam.services import clients, sessions, users
from iam.services.sms import ConsoleSms
from iam.settings import Settings

DOCUMENT = "/admin/api/openapi.json"
SEED = 20240601
MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
#: What a schema-valid request may meet besides success: a refusal the document lists that the
#: schema cannot express: an unknown id (404); a state conflict (409: a public app has no secret
#: to rotate or retire, a corp id already connected); the 64 KiB body limit (413: twenty URIs of
#: 2000 characters are schema-valid, and schemathesis sends them \u-escaped). Never 400/415/422.
ACCEPTED = ["2xx", "401", "404", "409", "413"]
#: What an invalid request may meet: a refusal (schemathesis' default list, with the documented
#: 413 for a body over 64 KiB; no 5xx, which not_a_server_error would report anyway).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
OPERATIONS = 20
PHONE = "+8613800138000"
LIFETIMES = tuple(clients.LIFETIMES)


# --- the app, seeded, and the document as schemathesis loads it -------------------------------


def loopback(app: ASGIApp) -> ASGIApp:
    """The app as reached from 127.0.0.1. (Schemathesis' ASGI client names itself `testclient`,
    which is no address, and which the admin address guard rightly refuses.)"""

    async def from_loopback(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": ("127.0.0.1", 50000)}
        await app(scope, receive, send)

    return from_loopback


def config(token: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ACCEPTED},
                "negative_data_rejection": {"expected-statuses": REJECTED},
            },
        }
    )


@dataclass(frozen=True)
class Seeded:
    """What the database holds besides the admin client, addressed by id in the walk."""

    app_id: str
    public_app_id: str
    user_id: str
    link_id: str
    other_link_id: str
    corp_id: str


def seed(store: Store) -> Seeded:
    connect_corp(store, WeComSimulator(demo_corps()), CORP_A)
    app = in_unit(store, clients.create_client, "CRM", [RP_REDIRECT], context_policy="required")
    public = in_unit(
        store, clients.create_client, "Mobile", ["http://127.0.0.1:8765/cb"], public=True
    )
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE, "zhangsan@example.com")
    link = in_unit(
        store,
        users.link_wecom,
        user.id,
        CORP_A,
        "zhangsan_A",
        {"corpid": CORP_A, "corp_name": "子公司A", "userid": "zhangsan_A", "position": "销售经理"},
    )
    other = in_unit(
        store, users.link_wecom, user.id, CORP_B, "zs_b", {"corpid": CORP_B, "userid": "zs_b"}
    )
    with store() as db:
        person = db.get(User, user.id)
        assert person is not None
        sessions.start(db, person, ["wecom"], ip="127.0.0.1", context_link_id=link.id)
        sessions.start(db, person, ["sms"], user_agent="Mozilla/5.0")
        db.commit()
    return Seeded(app.client.client_id, public.client.client_id, user.id, link.id, other.id, CORP_A)


#: A JWK Set whose keys are keys: what a schema-valid `jwks` cannot be made to hold (an RSA
#: modulus, a point on P-256) and what the API rightly refuses otherwise (422).
REAL_KEYS = {
    "keys": [
        ECKey.generate_key("P-256", parameters={"kid": "api-1"}).as_dict(private=False),
        RSAKey.generate_key(2048, parameters={"kid": "api-2"}).as_dict(private=False),
    ]
}


def with_real_keys(context: Any, case: Any) -> Any:
    """schemathesis' `map_case` hook: a schema-valid body's `jwks` becomes real keys; every
    other part of the body stays as generated (invalid bodies are left alone)."""
    body = case.body
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and isinstance(body, dict) and isinstance(body.get("jwks"), dict):
        case.body = {**body, "jwks": REAL_KEYS}
    return case


@dataclass(frozen=True)
class AdminApi:
    schema: Any  # schemathesis' OpenApiSchema, loaded from the app
    document: dict[str, Any]  # the same document, as a plain client gets it
    client: TestClient  # from 127.0.0.1, no credentials
    bearer: dict[str, str]
    seeded: Seeded


@pytest.fixture
def admin_api(sqlite_template: Path, tmp_path: Path) -> Iterator[AdminApi]:
    """The app on a migrated SQLite copy (SQLite only: this is about the HTTP contract), an admin
    client's token, and the API description as schemathesis loads it from the app."""
    path = tmp_path / "iam.db"
    shutil.copy(sqlite_template, path)
    database_url = f"sqlite:///{path}"
    engine = create_db_engine(database_url)
    store = Store(engine)
    seeded = seed(store)
    script = in_unit(store, clients.create_client, "Ops script", [RP_REDIRECT], admin=True)
    settings = Settings(
        secret_key=Secret(TEST_SECRET),
        issuer=ISSUER,
        database_url=database_url,
        wecom_api_base=WECOM_BASE,
        wecom_oauth_url=f"{WECOM_BASE}/connect/oauth2/authorize",
        wecom_qr_url=f"{WECOM_BASE}/wwlogin/sso/login",
    )
    simulator = WeComSimulator(demo_corps())
    simulator.configure_app(CORP_A, redirect_domain=urlsplit(ISSUER).netloc)  # its test passes
    try:
        with TestClient(simulator.app, base_url=WECOM_BASE) as wecom_http:
            sms = ConsoleSms()
            app = loopback(create_app(settings, store=store, sms=sms, wecom_http=wecom_http))
            with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
                answer = client.post(
                    "/token",
                    data={"grant_type": "client_credentials", "scope": "iam:admin"},
                    auth=(script.client.client_id, script.client_secret or ""),
                )
                assert answer.status_code == 200, answer.text
                token = answer.json()["access_token"]
                served = client.get(DOCUMENT)
                assert served.status_code == 200, served.text
                assert served.headers["content-type"] == "application/json"
                schema = schemathesis.openapi.from_asgi(DOCUMENT, app, config=config(token))
                schema.hook("map_case")(with_real_keys)
                yield AdminApi(
                    schema,
                    served.json(),
                    client,
                    {"authorization": f"Bearer {token}"},
                    seeded,
                )
    finally:
        shutdown_lifespans()  # the app schemathesis started (it keeps it running otherwise)
        engine.dispose()


@pytest.fixture
def admin_schema(admin_api: AdminApi) -> Any:
    return admin_api.schema


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32's lazy schemas read and rewrite `request.node._nodeid`, which pytest
    9.2 (installed here) no longer has (node ids moved to `_id`): give it the attribute it
    reads. Reporting is unchanged: pytest 9 names each operation's subtest by its label."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# --- the document ----------------------------------------------------------------------------


def refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every `$ref` in the document: (where it is, what it points to)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield where, value
            else:
                yield from refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from refs(value, f"{where}/{index}")


def resolve(document: dict[str, Any], pointer: str) -> Any:
    """A local JSON pointer (`#/components/schemas/App`), or KeyError."""
    assert pointer.startswith("#/"), f"not a local reference: {pointer}"
    node: Any = document
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                yield method, path, operation


def test_the_document_is_valid_openapi_3_1(admin_api: AdminApi) -> None:
    document, schema = admin_api.document, admin_api.schema
    assert document["openapi"].startswith("3.1.")
    assert document["servers"] == [{"url": f"{ISSUER}/admin/api"}]
    schema.validate()  # the OpenAPI 3.1 meta-schema; raises with the first error

    loaded = list(schema.get_all_operations())
    problems = [result.err() for result in loaded if isinstance(result, Err)]
    assert not problems, problems
    labels = sorted(result.ok().label for result in loaded if isinstance(result, Ok))
    assert len(labels) == len(set(labels)) == OPERATIONS, labels

    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)) == OPERATIONS, ids
    for method, path, operation in operations(document):
        responses = operation.get("responses")
        assert responses, f"{method.upper()} {path} documents no responses"
        assert "401" in responses, f"{method.upper()} {path} does not document 401"
        for status, response in responses.items():
            assert response.get("description"), f"{method.upper()} {path} {status}"

    unresolved = []
    for where, pointer in refs(document):
        try:
            resolve(document, pointer)
        except (KeyError, IndexError, ValueError):
            unresolved.append(f"{where} -> {pointer}")
    assert not unresolved, unresolved
    used = {pointer.rsplit("/", 1)[1] for _, pointer in refs(document)}
    assert set(document["components"]["schemas"]) <= used | {"Error"}

    # Each schema, with the components beside it so its references resolve, is valid 2020-12.
    for name, component in document["components"]["schemas"].items():
        standalone = {**component, "components": document["components"]}
        jsonschema_rs.meta.validate(standalone)
        jsonschema_rs.validator_for(standalone)  # compiles: patterns and references work
        assert component.get("type") == "object", name


def test_the_document_needs_no_credentials_and_the_api_does(admin_api: AdminApi) -> None:
    """The description is public (scripts read it first); every operation refuses a caller
    without credentials with the documented 401, in JSON, with a Bearer challenge."""
    for method, path, _ in operations(admin_api.document):
        concrete = path.replace("{", "x").replace("}", "")
        answer = admin_api.client.request(method.upper(), "/admin/api" + concrete)
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert answer.json()["error"] == "unauthorized"


# --- generated requests ----------------------------------------------------------------------


def _is_html_404(response: Any) -> bool:
    kind = (response.headers.get("content-type") or [""])[0]
    return response.status_code == 404 and kind.startswith("text/html")


api = schemathesis.pytest.from_fixture("admin_schema")


@api.parametrize()
def test_generated_requests_get_the_documented_answers(case: Any) -> None:
    case.validate_response(case.call(), checks=CHECKS)


# --- every operation on existing records -----------------------------------------------------


def call(api: AdminApi, label: str, status: int, **data: Any) -> Any:
    """One operation (by its label, `GET /apps/{client_id}`) with the given parameters and
    body, checked like the generated ones; its answer."""
    method, path = label.split(" ", 1)
    case = api.schema[path][method].Case(**data)
    response = case.call_and_validate(headers=api.bearer, checks=CHECKS)
    assert response.status_code == status, (label, response.status_code, response.text)
    return response.json() if response.content else None


def test_every_operation_on_existing_records(admin_api: AdminApi) -> None:
    seeded = admin_api.seeded
    app = {"client_id": seeded.app_id}
    public = {"client_id": seeded.public_app_id}
    user = {"user_id": seeded.user_id}
    corp = {"corp_id": seeded.corp_id}

    # Apps: register (the secret shown once), read, change, rotate, retire, delete.
    listed = call(admin_api, "GET /apps", 200)
    assert {found["client_id"] for found in listed["apps"]} >= {seeded.app_id}
    body = {
        "name": "HR 人事",
        "redirect_uris": ["https://hr.example.com/cb", "http://127.0.0.1:9000/cb"],
        "post_logout_redirect_uris": ["https://hr.example.com/bye"],
        "scopes": ["openid", "profile", "phone"],
        "context_policy": "optional",
        "context_claim": "https://group.example.com/context",
        "access_token_ttl": 600,
        "id_token_ttl": 600,
        "refresh_token_ttl": 0,
    }
    created = call(admin_api, "POST /apps", 201, body=body)
    assert created["client_secret"] and created["context_policy"] == "optional"
    new = {"client_id": created["client_id"]}
    call(admin_api, "GET /apps/{client_id}", 200, path_parameters=app)
    changed = call(
        admin_api,
        "PATCH /apps/{client_id}",
        200,
        path_parameters=new,
        body={"name": "HR", "scopes": ["openid"], "refresh_token_ttl": 86400},
    )
    assert (changed["name"], changed["scopes"]) == ("HR", ["openid"])
    rotated = call(admin_api, "POST /apps/{client_id}/secret", 200, path_parameters=new)
    assert rotated["has_previous_secret"] and rotated["client_secret"] != created["client_secret"]
    call(admin_api, "DELETE /apps/{client_id}/previous-secret", 204, path_parameters=new)
    call(admin_api, "POST /apps/{client_id}/secret", 409, path_parameters=public)
    call(admin_api, "DELETE /apps/{client_id}/previous-secret", 409, path_parameters=public)
    call(
        admin_api,
        "POST /apps",
        201,
        body={"name": "SPA", "redirect_uris": ["https://spa.example.com/cb"], "public": True},
    )
    call(admin_api, "DELETE /apps/{client_id}", 204, path_parameters=new)
    call(admin_api, "GET /apps/{client_id}", 404, path_parameters=new)

    # WeCom corporations: list, connect, read, change, test the connection.
    call(admin_api, "GET /corps", 200)
    simulated = next(c for c in demo_corps() if c.corp_id == CORP_B)
    connect = {
        "corp_id": simulated.corp_id,
        "name": simulated.name,
        "agent_id": simulated.agent_id,
        "secret": simulated.secret,
        "trust_mobile": True,
    }
    call(admin_api, "POST /corps", 201, body=connect)
    call(admin_api, "POST /corps", 409, body=connect)
    call(admin_api, "GET /corps/{corp_id}", 200, path_parameters=corp)
    call(
        admin_api,
        "PATCH /corps/{corp_id}",
        200,
        path_parameters={"corp_id": CORP_B},
        body={"enabled": False, "name": "子公司B (paused)"},
    )
    tested = call(admin_api, "POST /corps/{corp_id}/test", 200, path_parameters=corp)
    assert (tested["ok"], tested["errcode"], tested["reason"]) == (True, 0, None)
    wrong = call(
        admin_api,
        "PATCH /corps/{corp_id}",
        200,
        path_parameters=corp,
        body={"secret": "not-the-secret"},
    )
    assert "secret" not in wrong
    refused = call(admin_api, "POST /corps/{corp_id}/test", 200, path_parameters=corp)
    assert refused["ok"] is False and refused["errcode"] is not None

    # Users: search, one with links and sessions, disable, end sessions, remove a link.
    found = call(admin_api, "GET /users", 200, query={"q": "张三", "limit": 1})
    assert [row["id"] for row in found["users"]] == [seeded.user_id]
    detail = call(admin_api, "GET /users/{user_id}", 200, path_parameters=user)
    assert len(detail["links"]) == 2 and len(detail["sessions"]) == 2
    contexts = {session["context"] for session in detail["sessions"]}
    assert contexts == {f"{CORP_A}/zhangsan_A", None}
    disabled = call(
        admin_api,
        "PATCH /users/{user_id}",
        200,
        path_parameters=user,
        body={"status": "disabled"},
    )
    assert disabled["status"] == "disabled"
    ended = call(admin_api, "DELETE /users/{user_id}/sessions", 200, path_parameters=user)
    assert ended["ended"] >= 0
    link = {**user, "link_id": seeded.other_link_id}
    call(admin_api, "DELETE /users/{user_id}/links/{link_id}", 204, path_parameters=link)
    call(admin_api, "DELETE /users/{user_id}/links/{link_id}", 404, path_parameters=link)

    # The audit trail, filtered, and the signing keys.
    trail = call(admin_api, "GET /audit", 200, query={"user_id": seeded.user_id, "limit": 5})
    assert trail["events"]
    call(admin_api, "GET /audit", 200, query={"event": "client.", "since": "2000-01-01T00:00:00"})
    call(admin_api, "GET /keys", 200)
    key = call(admin_api, "POST /keys/rotate", 201)
    assert key["signing"] and key["published"]


# --- mismatches schemathesis found once (fixed) -----------------------------------------------


def test_a_lifetime_written_as_an_integral_number_is_taken(admin_api: AdminApi) -> None:
    body = {"name": "HR", "redirect_uris": ["https://hr.example.com/cb"]}
    for name in LIFETIMES:
        answer = admin_api.client.post(
            "/admin/api/apps", json={**body, name: 600.0}, headers=admin_api.bearer
        )
        assert answer.status_code == 201, (name, answer.text)
        assert answer.json()[name] == 600
    answer = admin_api.client.patch(
        f"/admin/api/apps/{admin_api.seeded.app_id}",
        json={"access_token_ttl": 600.0},
        headers=admin_api.bearer,
    )
    assert answer.status_code == 200, answer.text


def _json_404(admin_api: AdminApi, method: str, path: str) -> None:
    answer = admin_api.client.request(method, "/admin/api" + path, headers=admin_api.bearer)
    assert (answer.status_code, answer.headers["content-type"]) == (404, "application/json"), (
        method,
        path,
        answer.status_code,
        answer.text[:200],
    )
    assert answer.json()["error"] == "not_found"


def test_an_id_with_a_newline_gets_the_documented_json_404(admin_api: AdminApi) -> None:
    seeded = admin_api.seeded
    newline = quote("x\ny", safe="")
    for method, path in [
        ("GET", f"/apps/{newline}"),
        ("GET", f"/corps/{newline}"),
        ("GET", f"/users/{newline}"),
        ("DELETE", f"/users/{newline}/sessions"),
        ("DELETE", f"/users/{seeded.user_id}/links/{newline}"),
    ]:
        _json_404(admin_api, method, path)


def test_an_id_with_a_slash_gets_the_documented_json_404(admin_api: AdminApi) -> None:
    """Each area has a catch-all below its ids, so an id holding a slash (sent as %2F) is no
    record, in JSON, rather than the site's HTML 404 page."""
    seeded = admin_api.seeded
    slash = quote("x/y", safe="")
    for method, path in [
        ("GET", f"/apps/{slash}"),
        ("GET", f"/corps/{slash}"),
        ("POST", f"/corps/{slash}/test"),
        ("GET", f"/users/{slash}"),
        ("DELETE", f"/users/{slash}/sessions"),
        ("DELETE", f"/users/{seeded.user_id}/links/{slash}"),
    ]:
        _json_404(admin_api, method, path)
