"""The identity context claim by app policy, everywhere a token speaks about the person: the ID
token, the JWT access token, userinfo and introspection, on the code and the refresh grants
(product.md flow 3; contract.md "Tokens and claims"). Tokens are verified with PyJWT against the
published JWKS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from httpx2 import Response
from sqlalchemy import select, text
from support.browser import Front, WeComFront
from support.constants import CORP_A, CORP_B, ISSUER, RP_REDIRECT
from support.protocol import query_of
from support.units import in_unit
from support.wecom import META_A, META_B
from support.world import World

from iam.db.models import IdentityLink, SsoSession
from iam.db.store import Store
from iam.services import clients, users
from iam.services.clients import RegisteredClient

pytestmark = pytest.mark.usefixtures("reused_signing_key")

DEFAULT_CLAIM = "wecom_context"
CUSTOM_CLAIM = "https://crm.example.com/claims/context"

#: Exactly the claim a required app gets for the context "张三 in subsidiary A".
CONTEXT_A = {
    "provider": "wecom",
    "corpid": CORP_A,
    "corp_name": "子公司A",
    "userid": "zhangsan_A",
    "department": ["销售部"],
    "position": "销售经理",
}
#: None of this may reach a `none` app, in any shape.
SUBSIDIARY_DETAILS = [
    DEFAULT_CLAIM,
    CUSTOM_CLAIM,
    "corpid",
    "corp_name",
    CORP_A,
    CORP_B,
    "子公司A",
    "子公司B",
    "销售部",
    "售后服务部",
    "销售经理",
    "售后顾问",
    "zhangsan_A",
    "zs_b",
    "department",
    "position",
]


@dataclass
class Seen:
    """Everything an app learns about the person from one set of tokens."""

    token_response: dict[str, Any]
    id_token: dict[str, Any]
    access_token: dict[str, Any]
    userinfo: dict[str, Any]
    introspection: dict[str, Any]
    raw: list[str]  # the response bodies as sent

    def places(self) -> dict[str, dict[str, Any]]:
        return {
            "id_token": self.id_token,
            "access_token": self.access_token,
            "userinfo": self.userinfo,
            "introspection": self.introspection,
        }

    def context(self, claim: str) -> dict[str, Any | None]:
        return {place: claims.get(claim) for place, claims in self.places().items()}

    def everything(self) -> str:
        """All of it serialized, as readable text (no \\u escapes)."""
        return "\n".join(
            [json.dumps(self.places(), ensure_ascii=False), *self.raw]
            + [json.dumps(self.token_response, ensure_ascii=False)]
        )


# --- helpers ------------------------------------------------------------------------------------


def register(store: Store, policy: str, claim: str | None = None) -> RegisteredClient:
    name = f"App {policy} {claim or ''}".strip()
    return in_unit(
        store,
        clients.create_client,
        name,
        [RP_REDIRECT],
        context_policy=policy,
        context_claim=claim,
    )


def verify(front: Front, token: str, audience: str) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_dict(front.client.get("/jwks.json").json())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "aud", "exp", "iat", "sub"]},
    )


def auth(rp: RegisteredClient) -> tuple[str, str]:
    return rp.client.client_id, rp.client_secret or ""


def code_flow(front: Front, rp: RegisteredClient, **extra: str) -> Response:
    """Authorize in the signed-in browser (no page may be needed) and exchange the code."""
    params, verifier = front.code_params(rp.client.client_id, RP_REDIRECT, **extra)
    answer = front.authorize(**params)
    assert answer.status_code == 302, answer.text
    query = query_of(answer.headers["location"])
    assert query.get("state") == params["state"] and "code" in query, query
    exchanged = front.exchange(query["code"], verifier, RP_REDIRECT, rp)
    assert exchanged.status_code == 200, exchanged.text
    return exchanged


def refresh(front: Front, rp: RegisteredClient, refresh_token: str) -> Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return front.client.post("/token", data=data, auth=auth(rp))


def seen(front: Front, rp: RegisteredClient, answer: Response) -> Seen:
    """Read a token response the way the app does: both tokens, userinfo, introspection."""
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    userinfo = front.client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200, userinfo.text
    introspection = front.client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=auth(rp)
    )
    assert introspection.status_code == 200, introspection.text
    assert introspection.json()["active"] is True
    return Seen(
        token_response=tokens,
        id_token=verify(front, tokens["id_token"], rp.client.client_id),
        access_token=verify(front, tokens["access_token"], rp.client.client_id),
        userinfo=userinfo.json(),
        introspection=introspection.json(),
        raw=[answer.text, userinfo.text, introspection.text],
    )


def later_view(front: Front, rp: RegisteredClient, access_token: str) -> dict[str, dict]:
    """What userinfo and introspection say now about an access token issued earlier."""
    userinfo = front.client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert userinfo.status_code == 200, userinfo.text
    introspection = front.client.post("/introspect", data={"token": access_token}, auth=auth(rp))
    assert introspection.status_code == 200, introspection.text
    return {"userinfo": userinfo.json(), "introspection": introspection.json()}


def assert_sub_is_the_person(view: Seen, world: World) -> None:
    assert {place: claims["sub"] for place, claims in view.places().items()} == dict.fromkeys(
        view.places(), world.user.id
    )


def assert_nothing_of_the_subsidiary(view: Seen) -> None:
    everything = view.everything()
    leaked = [detail for detail in SUBSIDIARY_DETAILS if detail in everything]
    assert leaked == [], everything


def disable(store: Store, link_id: str) -> None:
    with store() as db:
        db.execute(
            text("UPDATE identity_links SET status='disabled' WHERE id = :id"), {"id": link_id}
        )
        db.commit()


@pytest.fixture
def links(store: Store, world: World) -> tuple[str, str]:
    """张三 linked in both subsidiaries: (link A, link B)."""
    return (
        in_unit(store, users.link_wecom, world.user.id, CORP_A, "zhangsan_A", META_A).id,
        in_unit(store, users.link_wecom, world.user.id, CORP_B, "zs_b", META_B).id,
    )


@pytest.fixture
def in_subsidiary_a(wecom_front: WeComFront, store: Store, links: tuple[str, str]) -> WeComFront:
    """A browser signed in through subsidiary A's WeCom: the session's context is link A."""
    came_in = wecom_front.login_as("zhangsan_A", CORP_A)
    assert came_in.status_code == 303 and came_in.headers["location"] == "/", came_in.text
    with store() as db:
        assert db.scalars(select(SsoSession.context_link_id)).one() == links[0]
    return wecom_front


def by_sms(front: Front) -> Front:
    answer = front.login()
    assert answer.status_code == 303, answer.text
    return front


# --- none: the natural person only --------------------------------------------------------------


@pytest.mark.parametrize("claim", [None, CUSTOM_CLAIM], ids=["default claim", "custom claim"])
def test_a_none_app_never_sees_the_subsidiary(
    in_subsidiary_a: WeComFront, store: Store, world: World, claim: str | None
) -> None:
    learning = register(store, "none", claim)
    for extra in ({}, {"prompt": "select_account"}):
        view = seen(in_subsidiary_a, learning, code_flow(in_subsidiary_a, learning, **extra))
        assert_nothing_of_the_subsidiary(view)
        assert_sub_is_the_person(view, world)
        assert view.id_token["amr"] == ["wecom"]  # how the person signed in is no secret
        assert view.id_token["name"] == world.user.name

        renewed = seen(
            in_subsidiary_a,
            learning,
            refresh(in_subsidiary_a, learning, view.token_response["refresh_token"]),
        )
        assert_nothing_of_the_subsidiary(renewed)
        assert_sub_is_the_person(renewed, world)


# --- required: exactly the chosen link's context ------------------------------------------------


@pytest.mark.parametrize("claim", [None, CUSTOM_CLAIM], ids=["default claim", "custom claim"])
def test_a_required_app_gets_exactly_the_context(
    in_subsidiary_a: WeComFront, store: Store, world: World, claim: str | None
) -> None:
    crm = register(store, "required", claim)
    name = claim or DEFAULT_CLAIM
    assert crm.client.context_claim == name
    view = seen(in_subsidiary_a, crm, code_flow(in_subsidiary_a, crm))
    assert view.context(name) == dict.fromkeys(view.places(), CONTEXT_A)
    assert_sub_is_the_person(view, world)
    if claim is not None:  # under the app's own name only
        assert view.context(DEFAULT_CLAIM) == dict.fromkeys(view.places())
        assert DEFAULT_CLAIM not in view.everything()


def test_a_required_app_gets_the_context_of_the_only_link_for_an_sms_session(
    front: Front, store: Store, world: World
) -> None:
    in_unit(store, users.link_wecom, world.user.id, CORP_B, "zs_b", META_B)
    crm = register(store, "required")
    view = seen(by_sms(front), crm, code_flow(front, crm))
    expected = {key: META_B[key] for key in CONTEXT_A}
    assert view.context(DEFAULT_CLAIM) == dict.fromkeys(view.places(), expected)
    assert_sub_is_the_person(view, world)
    assert view.id_token["amr"] == ["sms"]


def test_refresh_keeps_the_context(in_subsidiary_a: WeComFront, store: Store, world: World) -> None:
    crm = register(store, "required", CUSTOM_CLAIM)
    first = seen(in_subsidiary_a, crm, code_flow(in_subsidiary_a, crm))
    renewed = seen(
        in_subsidiary_a, crm, refresh(in_subsidiary_a, crm, first.token_response["refresh_token"])
    )
    assert renewed.context(CUSTOM_CLAIM) == dict.fromkeys(renewed.places(), CONTEXT_A)
    assert_sub_is_the_person(renewed, world)
    # and again, from the rotated refresh token
    again = seen(
        in_subsidiary_a, crm, refresh(in_subsidiary_a, crm, renewed.token_response["refresh_token"])
    )
    assert again.context(CUSTOM_CLAIM) == dict.fromkeys(again.places(), CONTEXT_A)


def test_refresh_keeps_the_context_of_the_code_after_the_session_changes_it(
    in_subsidiary_a: WeComFront, store: Store, world: World, links: tuple[str, str]
) -> None:
    crm = register(store, "required")
    first = seen(in_subsidiary_a, crm, code_flow(in_subsidiary_a, crm))
    came_in = in_subsidiary_a.login_as("zs_b", CORP_B)  # the session moves to subsidiary B
    assert came_in.status_code == 303, came_in.text
    renewed = seen(
        in_subsidiary_a, crm, refresh(in_subsidiary_a, crm, first.token_response["refresh_token"])
    )
    assert renewed.context(DEFAULT_CLAIM) == dict.fromkeys(renewed.places(), CONTEXT_A)


def test_refresh_of_a_required_app_fails_once_its_link_is_disabled(
    in_subsidiary_a: WeComFront, store: Store, links: tuple[str, str]
) -> None:
    crm = register(store, "required")
    tokens = code_flow(in_subsidiary_a, crm).json()
    disable(store, links[0])
    refused = refresh(in_subsidiary_a, crm, tokens["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert "access_token" not in refused.json()
    # the refusal did not spend the token: once the link is active again, it works
    with store() as db:
        db.execute(
            text("UPDATE identity_links SET status='active' WHERE id = :id"), {"id": links[0]}
        )
        db.commit()
    assert refresh(in_subsidiary_a, crm, tokens["refresh_token"]).status_code == 200
    # an access token issued before the link was disabled no longer names it
    disable(store, links[0])
    later = later_view(in_subsidiary_a, crm, tokens["access_token"])
    assert {place: claims.get(DEFAULT_CLAIM) for place, claims in later.items()} == {
        "userinfo": None,
        "introspection": None,
    }


def test_a_code_of_a_required_app_is_refused_once_its_link_is_disabled(
    in_subsidiary_a: WeComFront, store: Store, links: tuple[str, str]
) -> None:
    crm = register(store, "required")
    params, verifier = in_subsidiary_a.code_params(crm.client.client_id, RP_REDIRECT)
    query = query_of(in_subsidiary_a.authorize(**params).headers["location"])
    disable(store, links[0])  # the person left subsidiary A before the app redeemed the code
    answer = in_subsidiary_a.exchange(query["code"], verifier, RP_REDIRECT, crm)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


# --- optional: the session's context when there is one; never asked ----------------------------


def test_an_optional_app_gets_the_sessions_context(
    in_subsidiary_a: WeComFront, store: Store, world: World
) -> None:
    portal = register(store, "optional")
    view = seen(in_subsidiary_a, portal, code_flow(in_subsidiary_a, portal))
    assert view.context(DEFAULT_CLAIM) == dict.fromkeys(view.places(), CONTEXT_A)
    assert_sub_is_the_person(view, world)
    renewed = seen(
        in_subsidiary_a,
        portal,
        refresh(in_subsidiary_a, portal, view.token_response["refresh_token"]),
    )
    assert renewed.context(DEFAULT_CLAIM) == dict.fromkeys(renewed.places(), CONTEXT_A)


def test_an_optional_app_without_a_context_gets_none(
    front: Front, store: Store, world: World, links: tuple[str, str]
) -> None:
    portal = register(store, "optional", CUSTOM_CLAIM)
    view = seen(by_sms(front), portal, code_flow(front, portal))  # two links, no context
    assert_nothing_of_the_subsidiary(view)
    assert_sub_is_the_person(view, world)


def test_a_disabled_links_context_is_not_given_to_an_optional_app(
    in_subsidiary_a: WeComFront, store: Store, world: World, links: tuple[str, str]
) -> None:
    portal = register(store, "optional")
    tokens = code_flow(in_subsidiary_a, portal).json()
    assert verify(in_subsidiary_a, tokens["id_token"], portal.client.client_id)[DEFAULT_CLAIM]
    disable(store, links[0])

    # tokens issued before: userinfo and introspection no longer name it
    later = later_view(in_subsidiary_a, portal, tokens["access_token"])
    assert DEFAULT_CLAIM not in later["userinfo"] and DEFAULT_CLAIM not in later["introspection"]
    assert later["userinfo"]["sub"] == later["introspection"]["sub"] == world.user.id
    # a refresh still works for an optional app, without the context
    renewed = seen(
        in_subsidiary_a, portal, refresh(in_subsidiary_a, portal, tokens["refresh_token"])
    )
    assert renewed.context(DEFAULT_CLAIM) == dict.fromkeys(renewed.places())
    assert CORP_A not in renewed.everything()
    # a new authorization: the session's context is stale, so none is given
    fresh = seen(in_subsidiary_a, portal, code_flow(in_subsidiary_a, portal))
    assert fresh.context(DEFAULT_CLAIM) == dict.fromkeys(fresh.places())
    with store() as db:
        assert db.get(IdentityLink, links[0]).status == "disabled"
