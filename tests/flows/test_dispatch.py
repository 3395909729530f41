"""/authorize and /flow/{id}: the saved request resumes after login, once, in its own browser."""

from __future__ import annotations

import pytest
from conftest import RP_REDIRECT, Front, World, query_of
from sqlalchemy import update

from iam.clock import utcnow
from iam.db.models import PendingAuthorization


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
    # the client has a single registered URI, so the error can go back to it safely
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(RP_REDIRECT + "?")
    assert query_of(answer.headers["location"])["error"] == "invalid_request"
