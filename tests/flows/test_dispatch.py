"""/authorize and /flow/{id}: the saved request resumes after login, once, in its own browser."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from support.browser import Front
from support.constants import ISSUER, RP_REDIRECT
from support.protocol import query_of
from support.world import World

from iam.app import create_app
from iam.clock import utcnow
from iam.db.models import PendingAuthorization
from iam.db.store import Store
from iam.services.sms import ConsoleSms
from iam.settings import Settings


def start(front: Front, world: World, **extra: str) -> tuple[dict, str]:
    """Open /authorize without a session: (params, the flow id it saved)."""
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT, **extra)
    answer = front.authorize(**params)
    assert answer.status_code == 303
    return params, query_of(answer.headers["location"])["flow"]


def test_the_request_resumes_after_login_with_its_state(front: Front, world: World) -> None:
    params, flow = start(front, world)
    page = front.client.get(f"/login?flow={flow}")
    assert "CRM" in page.text  # "to continue to CRM"
    after_login = front.login(flow=flow)
    assert after_login.headers["location"] == f"/flow/{flow}"
    answer = front.client.get(after_login.headers["location"])
    assert answer.status_code == 302
    landing = query_of(answer.headers["location"])
    assert answer.headers["location"].startswith(RP_REDIRECT + "?")
    assert landing["state"] == params["state"] and landing["code"]


def test_a_finished_request_cannot_be_resumed_again(front: Front, world: World) -> None:
    _, flow = start(front, world)
    front.client.get(front.login(flow=flow).headers["location"])
    again = front.client.get(f"/flow/{flow}")
    assert again.status_code == 400
    assert "location" not in again.headers


def test_an_expired_request_is_an_error_page(front: Front, world: World) -> None:
    _, flow = start(front, world)
    with front.client.app.state.store() as db:
        db.execute(update(PendingAuthorization).values(expires_at=utcnow().replace(year=2020)))
        db.commit()
    assert front.client.get(f"/flow/{flow}").status_code == 400


def test_an_unfinished_login_goes_back_to_the_login_page(front: Front, world: World) -> None:
    _, flow = start(front, world)
    answer = front.client.get(f"/flow/{flow}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?flow={flow}"


@pytest.mark.parametrize(
    ("parameter", "error"),
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
)
def test_request_objects_are_refused_not_ignored(
    front: Front, world: World, parameter: str, error: str
) -> None:
    params, _ = front.code_params(
        world.rp.client.client_id, RP_REDIRECT, **{parameter: "eyJhbGciOiJub25lIn0.e30."}
    )
    answer = front.authorize(**params)
    assert answer.status_code == 302
    assert query_of(answer.headers["location"])["error"] == error
    assert query_of(answer.headers["location"])["state"] == params["state"]


def test_an_openid_request_without_redirect_uri_is_refused(front: Front, world: World) -> None:
    params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
    del params["redirect_uri"]
    answer = front.authorize(**params)
    # an error page at the server, even with one registered URI (RFC 6749 4.1.2.1; the
    # conformance suite's ensure-redirect-uri-in-authorization-request)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "redirect_uri is required" in answer.text


# --- what an unauthenticated request may store ---


def _stored(front: Front) -> list[list[list[str]]]:
    with front.client.app.state.store() as db:
        return [row.params for row in db.scalars(select(PendingAuthorization))]


def test_only_the_request_parameters_are_stored(front: Front, world: World) -> None:
    """An 8 KB query of junk must not become an 8 KB row that waits 30 minutes."""
    params, _ = start(front, world, junk="x" * 6000, other="y" * 1000)
    [stored] = _stored(front)
    assert {name for name, _ in stored} == set(params) - {"junk", "other"}
    assert len(json.dumps(stored)) < 1000


def test_waiting_requests_are_limited_per_address(
    settings: Settings, store: Store, sms: ConsoleSms, world: World, rate_clock: object
) -> None:
    """Each browser (here: a fresh cookie jar each time) may leave a row; an address may not
    leave more than its limit, and a refused request stores nothing."""
    app = create_app(replace(settings, rate_limits="flow_start.ip=3/600"), store=store, sms=sms)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        front = Front(client, sms)
        params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
        for _ in range(3):
            client.cookies.clear()
            assert front.authorize(**params).status_code == 303
        client.cookies.clear()
        refused = front.authorize(**params, lang="en")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "500"
        assert "Try again in 500 seconds" in refused.text
        assert len(_stored(front)) == 3


def test_waiting_requests_are_limited_per_browser(
    settings: Settings, store: Store, sms: ConsoleSms, world: World, rate_clock: object
) -> None:
    app = create_app(replace(settings, rate_limits="flow_start.key=2/600"), store=store, sms=sms)
    with TestClient(app, base_url=ISSUER, follow_redirects=False) as client:
        front = Front(client, sms)
        params, _ = front.code_params(world.rp.client.client_id, RP_REDIRECT)
        assert [front.authorize(**params).status_code for _ in range(3)] == [303, 303, 429]
        client.cookies.clear()  # another browser
        assert front.authorize(**params).status_code == 303
