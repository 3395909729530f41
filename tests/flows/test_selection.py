"""The SSO pre-flight check and the identity selector over HTTP: /authorize → /select-identity
(or the linking offer) → /flow/{id} → a code whose tokens carry the chosen context
(product.md flows 3 and 4; contract.md "Tokens and claims" and the /select-identity form)."""

from __future__ import annotations

import html
import re
from typing import Any

import jwt
import pytest
from httpx2 import Response
from sqlalchemy import func, select, update
from starlette.testclient import TestClient
from support.browser import Front, WeComFront
from support.constants import CORP_A, CORP_B, ISSUER, RP_REDIRECT, WECOM_BASE
from support.protocol import query_of
from support.units import in_unit
from support.wecom import META_A, META_B
from support.world import World

from iam.clock import utcnow
from iam.db.models import (
    AuditEvent,
    IdentityLink,
    OtpChallenge,
    PendingAuthorization,
    SsoSession,
    new_id,
)
from iam.db.store import Store
from iam.services import clients, users
from iam.services.clients import RegisteredClient
from iam.web import SESSION_COOKIE

pytestmark = pytest.mark.usefixtures("reused_signing_key")

OTHER_PHONE = "+8613900139000"
ZH = {"accept-language": "zh-CN,zh;q=0.9"}
EN = {"accept-language": "en-US,en;q=0.9"}

CLAIM_KEYS = ("provider", "corpid", "corp_name", "userid", "department", "position")


def claim_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The context claim a link with this metadata gives (contract: Tokens and claims)."""
    return {key: meta[key] for key in CLAIM_KEYS}


# --- helpers ------------------------------------------------------------------------------------


def register(store: Store, policy: str, name: str = "Sales CRM") -> RegisteredClient:
    return in_unit(store, clients.create_client, name, [RP_REDIRECT], context_policy=policy)


def add_link(
    store: Store, user_id: str, corp_id: str, userid: str, meta: dict, status: str = "active"
) -> str:
    link = in_unit(store, users.link_wecom, user_id, corp_id, userid, meta)
    if status != "active":
        with store() as db:
            db.execute(update(IdentityLink).where(IdentityLink.id == link.id).values(status=status))
            db.commit()
    return link.id


def both_links(store: Store, world: World) -> tuple[str, str]:
    """张三 in subsidiary A and in subsidiary B: (link A, link B), oldest first."""
    return (
        add_link(store, world.user.id, CORP_A, "zhangsan_A", META_A),
        add_link(store, world.user.id, CORP_B, "zs_b", META_B),
    )


def signed_in(front: Front) -> Front:
    """Sign in by phone + SMS: a session without any WeCom context."""
    answer = front.login()
    assert answer.status_code == 303, answer.text
    return front


def authorize(front: Front, rp: RegisteredClient, **extra: str) -> tuple[dict, str, Response]:
    params, verifier = front.code_params(rp.client.client_id, RP_REDIRECT, **extra)
    return params, verifier, front.authorize(**params)


def to_selector(answer: Response) -> str:
    """The flow id of an answer that sends the browser to the selector (or linking offer)."""
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/select-identity?"), location
    return query_of(location)["flow"]


def at_client(answer: Response, params: dict) -> dict[str, str]:
    """The query the client receives (state checked)."""
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(RP_REDIRECT + "?"), location
    query = query_of(location)
    assert query["state"] == params["state"], query
    return query


def resume(front: Front, answer: Response, flow: str) -> Response:
    """Follow a 303 back to /flow/{flow}."""
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/flow/{flow}"
    return front.client.get(answer.headers["location"])


def post_choice(front: Front, flow: str, **fields: str) -> Response:
    data = {"csrf_token": front.csrf(), "flow": flow, **fields}
    return front.client.post("/select-identity", data=data)


def token_context(
    front: Front, query: dict[str, str], verifier: str, rp: RegisteredClient
) -> dict[str, Any] | None:
    """Exchange the code; the ID token's context claim (None when absent). The access token
    must say the same."""
    answer = front.exchange(query["code"], verifier, RP_REDIRECT, rp)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    jwks = jwt.PyJWKSet.from_dict(front.client.get("/jwks.json").json())
    found = []
    for token in (tokens["id_token"], tokens["access_token"]):
        key = jwks[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=rp.client.client_id, issuer=ISSUER
        )
        found.append(claims.get(rp.client.context_claim))
    assert found[0] == found[1], found
    return found[0]


def session_context(store: Store, user_id: str) -> str | None:
    with store() as db:
        return (
            db.scalars(select(SsoSession).where(SsoSession.user_id == user_id))
            .one()
            .context_link_id
        )


def choices(page: Response) -> list[str]:
    """The link ids of the selector's buttons, in page order."""
    return re.findall(r'<button type="submit" name="link_id" value="([^"]+)"', page.text)


def offers(page: Response) -> list[str]:
    """The linking offer's hrefs, in page order."""
    return [html.unescape(h) for h in re.findall(r'href="(/login/wecom/[^"]+)"', page.text)]


def context_events(store: Store) -> int:
    with store() as db:
        statement = select(func.count()).where(AuditEvent.event == "session.context_chosen")
        return db.scalar(statement.select_from(AuditEvent))


def links_of(store: Store, user_id: str) -> list[IdentityLink]:
    with store() as db:
        return list(db.scalars(select(IdentityLink).where(IdentityLink.user_id == user_id)))


# --- required, two links, no context: the selector ---------------------------------------------


def test_two_links_and_no_context_show_the_selector_then_issue_the_choice(
    front: Front, world: World, store: Store
) -> None:
    link_a, link_b = both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    params, verifier, answer = authorize(front, crm)
    flow = to_selector(answer)
    assert session_context(store, world.user.id) is None

    page = front.client.get(answer.headers["location"], headers=ZH)
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert "您要以哪个身份使用 Sales CRM？" in page.text
    assert "子公司A – 销售经理" in page.text and "子公司B – 售后顾问" in page.text
    assert "取消并返回 Sales CRM" in page.text
    assert choices(page) == [link_a, link_b]
    english = front.client.get(answer.headers["location"], headers=EN)
    assert "Which identity do you want to use for Sales CRM?" in english.text
    assert "Cancel and go back to Sales CRM" in english.text
    assert choices(english) == [link_a, link_b]

    chosen = post_choice(front, flow, link_id=link_b)
    query = at_client(resume(front, chosen, flow), params)
    assert token_context(front, query, verifier, crm) == claim_of(META_B)
    assert session_context(store, world.user.id) == link_b
    assert context_events(store) == 1

    # the session remembers the choice: the next authorization for the app goes straight through
    params, verifier, again = authorize(front, crm)
    assert token_context(front, at_client(again, params), verifier, crm) == claim_of(META_B)


def test_the_selector_shows_active_links_only(front: Front, world: World, store: Store) -> None:
    link_a, link_b = both_links(store, world)
    add_link(store, world.user.id, CORP_A, "zhangsan_old", META_A, status="disabled")
    crm = register(store, "required")
    signed_in(front)
    _, _, answer = authorize(front, crm)
    page = front.client.get(answer.headers["location"], headers=EN)
    assert choices(page) == [link_a, link_b]
    assert "zhangsan_old" not in page.text


def test_the_selector_escapes_what_the_directory_says(
    front: Front, world: World, store: Store
) -> None:
    hostile = {
        **META_A,
        "corp_name": "<b>Evil Corp</b>",
        "position": "<script>alert(1)</script>",
        "avatar": 'https://x.example/a.png" onerror="alert(2)',
        "department": ["<img src=x>"],
    }
    add_link(store, world.user.id, CORP_A, "zhangsan_A", hostile)
    add_link(store, world.user.id, CORP_B, "zs_b", META_B)
    crm = register(store, "required")
    signed_in(front)
    _, _, answer = authorize(front, crm)
    page = front.client.get(answer.headers["location"], headers=EN)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;Evil Corp&lt;/b&gt;" in page.text
    for raw in ("<script>alert", "<b>Evil", 'onerror="alert', "<img src=x>"):
        assert raw not in page.text


# --- required: one link, or a context from a WeCom login ---------------------------------------


def test_one_active_link_is_used_at_once(front: Front, world: World, store: Store) -> None:
    add_link(store, world.user.id, CORP_A, "zhangsan_A", META_A, status="disabled")
    add_link(store, world.user.id, CORP_B, "zs_b", META_B)
    crm = register(store, "required")
    signed_in(front)
    params, verifier, answer = authorize(front, crm)  # the disabled link does not count
    assert token_context(front, at_client(answer, params), verifier, crm) == claim_of(META_B)
    assert session_context(store, world.user.id) is None  # nothing chosen: nothing remembered


def test_a_wecom_login_context_is_used_without_a_question(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    _, link_b = both_links(store, world)
    crm = register(store, "required")
    came_in = wecom_front.login_as("zs_b", CORP_B)
    assert came_in.status_code == 303 and came_in.headers["location"] == "/", came_in.text
    assert session_context(store, world.user.id) == link_b
    params, verifier, answer = authorize(wecom_front, crm)
    assert token_context(wecom_front, at_client(answer, params), verifier, crm) == claim_of(META_B)


def test_a_wecom_login_during_the_request_gives_its_context(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    both_links(store, world)
    crm = register(store, "required")
    params, verifier, answer = authorize(wecom_front, crm)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?")
    flow = query_of(answer.headers["location"])["flow"]
    came_in = wecom_front.login_as("zhangsan_A", CORP_A, flow=flow)
    query = at_client(resume(wecom_front, came_in, flow), params)
    assert token_context(wecom_front, query, verifier, crm) == claim_of(META_A)


# --- prompt=select_account ----------------------------------------------------------------------


def test_select_account_always_shows_the_selector_and_takes_one_choice(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    link_a, link_b = both_links(store, world)
    crm = register(store, "required")
    wecom_front.login_as("zhangsan_A", CORP_A)  # the session has a context: A
    assert session_context(store, world.user.id) == link_a

    params, verifier, answer = authorize(wecom_front, crm, prompt="select_account")
    flow = to_selector(answer)
    page = wecom_front.client.get(answer.headers["location"], headers=EN)
    assert choices(page) == [link_a, link_b]
    assert re.search(rf'value="{link_a}" class="choice current"', page.text), page.text
    # an unchosen request goes back to the selector, however often it is resumed
    assert wecom_front.client.get(f"/flow/{flow}").headers["location"] == (
        f"/select-identity?flow={flow}"
    )

    chosen = post_choice(wecom_front, flow, link_id=link_b)
    query = at_client(resume(wecom_front, chosen, flow), params)  # asked once, not again
    assert token_context(wecom_front, query, verifier, crm) == claim_of(META_B)
    assert session_context(store, world.user.id) == link_b

    # every request with select_account asks again; choosing the current one is fine too
    params, verifier, answer = authorize(wecom_front, crm, prompt="select_account")
    flow = to_selector(answer)
    query = at_client(
        resume(wecom_front, post_choice(wecom_front, flow, link_id=link_b), flow), params
    )
    assert token_context(wecom_front, query, verifier, crm) == claim_of(META_B)


def test_select_account_asks_even_with_a_single_link(
    front: Front, world: World, store: Store
) -> None:
    link_a = add_link(store, world.user.id, CORP_A, "zhangsan_A", META_A)
    crm = register(store, "required")
    signed_in(front)
    params, verifier, answer = authorize(front, crm, prompt="select_account")
    flow = to_selector(answer)
    assert choices(front.client.get(answer.headers["location"])) == [link_a]
    query = at_client(resume(front, post_choice(front, flow, link_id=link_a), flow), params)
    assert token_context(front, query, verifier, crm) == claim_of(META_A)


# --- prompt=none: never a page, the OIDC errors instead ----------------------------------------


def test_prompt_none_with_two_links_and_no_context_is_account_selection_required(
    front: Front, world: World, store: Store
) -> None:
    both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    params, _, answer = authorize(front, crm, prompt="none")
    query = at_client(answer, params)
    assert query["error"] == "account_selection_required"
    assert "code" not in query
    assert session_context(store, world.user.id) is None


def test_prompt_none_with_a_context_or_one_link_issues_silently(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    both_links(store, world)
    crm = register(store, "required")
    wecom_front.login_as("zs_b", CORP_B)
    params, verifier, answer = authorize(wecom_front, crm, prompt="none")
    assert token_context(wecom_front, at_client(answer, params), verifier, crm) == claim_of(META_B)


def test_prompt_none_with_no_link_is_interaction_required(
    front: Front, world: World, store: Store
) -> None:
    crm = register(store, "required")
    signed_in(front)
    params, _, answer = authorize(front, crm, prompt="none")
    query = at_client(answer, params)
    assert query["error"] == "interaction_required"
    assert "code" not in query


def test_prompt_none_signed_out_is_login_required(front: Front, world: World, store: Store) -> None:
    both_links(store, world)
    for policy in ("none", "optional", "required"):
        rp = register(store, policy)
        params, _, answer = authorize(front, rp, prompt="none")
        assert at_client(answer, params)["error"] == "login_required", policy


def test_prompt_none_with_select_account_is_an_invalid_request(
    front: Front, world: World, store: Store
) -> None:
    both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    params, _, answer = authorize(front, crm, prompt="none select_account")
    assert at_client(answer, params)["error"] == "invalid_request"


# --- cancel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("links", [0, 2], ids=["at the linking offer", "at the selector"])
def test_cancel_is_access_denied_at_the_client(
    front: Front, world: World, store: Store, links: int
) -> None:
    if links:
        both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    params, _, answer = authorize(front, crm)
    flow = to_selector(answer)
    cancelled = post_choice(front, flow, cancel="1")
    query = at_client(resume(front, cancelled, flow), params)
    assert query["error"] == "access_denied"
    assert "code" not in query
    assert session_context(store, world.user.id) is None
    assert front.client.get(f"/flow/{flow}").status_code == 400  # the request is over


def test_a_cancel_with_a_link_id_is_still_a_cancel(
    front: Front, world: World, store: Store
) -> None:
    link_a, _ = both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    params, _, answer = authorize(front, crm)
    flow = to_selector(answer)
    cancelled = post_choice(front, flow, cancel="1", link_id=link_a)
    assert at_client(resume(front, cancelled, flow), params)["error"] == "access_denied"
    assert session_context(store, world.user.id) is None


# --- optional and none apps never ask -----------------------------------------------------------


def test_optional_without_context_issues_at_once_without_one(
    front: Front, world: World, store: Store
) -> None:
    both_links(store, world)
    portal = register(store, "optional", name="Portal")
    signed_in(front)
    params, verifier, answer = authorize(front, portal)
    assert token_context(front, at_client(answer, params), verifier, portal) is None


def test_optional_with_a_context_issues_it(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    both_links(store, world)
    portal = register(store, "optional", name="Portal")
    wecom_front.login_as("zhangsan_A", CORP_A)
    params, verifier, answer = authorize(wecom_front, portal)
    assert token_context(wecom_front, at_client(answer, params), verifier, portal) == claim_of(
        META_A
    )


def test_a_none_app_never_shows_the_selector(front: Front, world: World, store: Store) -> None:
    learning = register(store, "none", name="Learning")
    signed_in(front)
    for links in (0, 2):
        if links:
            both_links(store, world)
        for extra in ({}, {"prompt": "select_account"}):
            params, verifier, answer = authorize(front, learning, **extra)
            assert token_context(front, at_client(answer, params), verifier, learning) is None


# --- no link at all: the linking offer ----------------------------------------------------------


def test_the_linking_offer_links_a_wecom_identity_to_the_signed_in_person(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    crm = register(store, "required")
    signed_in(wecom_front)
    texts_sent = len(wecom_front.sms.messages())
    params, verifier, answer = authorize(wecom_front, crm)
    flow = to_selector(answer)

    page = wecom_front.client.get(answer.headers["location"], headers=EN)
    assert page.status_code == 200, page.text
    assert "Sales CRM needs one of your company identities" in page.text
    assert "WeCom · 子公司A" in page.text and "WeCom · 子公司B" in page.text
    assert choices(page) == []
    hrefs = offers(page)
    assert [(h.split("?")[0], query_of(h)) for h in hrefs] == [
        (f"/login/wecom/{CORP_A}", {"flow": flow, "link": "1"}),
        (f"/login/wecom/{CORP_B}", {"flow": flow, "link": "1"}),
    ]
    chinese = wecom_front.client.get(answer.headers["location"], headers=ZH)
    assert "Sales CRM 需要您的公司身份" in chinese.text
    assert "企业微信 · 子公司A" in chinese.text

    started = wecom_front.client.get(hrefs[1])
    assert started.headers["location"].startswith(WECOM_BASE)
    came_back = wecom_front.client.get(wecom_front.pick(started, "zs_b"))
    assert came_back.headers["location"] == f"/flow/{flow}", came_back.text  # no /bind, no SMS
    assert len(wecom_front.sms.messages()) == texts_sent

    [link] = links_of(store, world.user.id)
    assert link.provider_user_id == f"{CORP_B}/zs_b"
    assert link.status == "active"
    with store() as db:
        assert db.scalar(select(func.count()).select_from(IdentityLink)) == 1
        created = db.scalars(select(AuditEvent).where(AuditEvent.event == "link.created")).one()
        assert created.user_id == world.user.id and created.detail["method"] == "session"
        sessions = db.scalars(select(SsoSession)).all()
    assert [(s.user_id, s.context_link_id) for s in sessions] == [(world.user.id, link.id)]

    query = at_client(wecom_front.client.get(came_back.headers["location"]), params)
    claim = token_context(wecom_front, query, verifier, crm)
    assert claim == {
        "provider": "wecom",
        "corpid": CORP_B,
        "corp_name": "子公司B",
        "userid": "zs_b",
        "department": ["售后服务部"],
        "position": "售后顾问",
    }


def test_the_linking_offer_refuses_an_identity_linked_to_someone_else(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    other = in_unit(store, users.create_user, "李四", OTHER_PHONE)
    others = add_link(store, other.id, CORP_A, "zhangsan_A", META_A)
    crm = register(store, "required")
    signed_in(wecom_front)
    _, _, answer = authorize(wecom_front, crm)
    flow = to_selector(answer)
    href = offers(wecom_front.client.get(answer.headers["location"]))[0]
    assert href.startswith(f"/login/wecom/{CORP_A}?")

    started = wecom_front.client.get(href)
    refused = wecom_front.client.get(wecom_front.pick(started, "zhangsan_A"), headers=EN)
    assert refused.status_code == 409, refused.text
    assert "already linked to another account" in refused.text
    assert "location" not in refused.headers

    assert links_of(store, world.user.id) == []
    assert [link.id for link in links_of(store, other.id)] == [others]
    with store() as db:
        sessions = db.scalars(select(SsoSession)).all()
    assert [(s.user_id, s.context_link_id) for s in sessions] == [(world.user.id, None)]
    # still signed in as before, the request still waits at the offer
    assert wecom_front.client.get(f"/flow/{flow}").headers["location"] == (
        f"/select-identity?flow={flow}"
    )


def test_a_refused_link_leaves_the_other_persons_link_and_trail_untouched(
    wecom_front: WeComFront, world: World, store: Store
) -> None:
    other = in_unit(store, users.create_user, "李四", OTHER_PHONE)
    stale = {**META_A, "position": "实习生"}  # what the directory said when it was linked
    others = add_link(store, other.id, CORP_A, "zhangsan_A", stale)
    crm = register(store, "required")
    signed_in(wecom_front)
    _, _, answer = authorize(wecom_front, crm)
    href = offers(wecom_front.client.get(answer.headers["location"]))[0]
    refused = wecom_front.client.get(wecom_front.pick(wecom_front.client.get(href), "zhangsan_A"))
    assert refused.status_code == 409, refused.text
    with store() as db:
        link = db.get(IdentityLink, others)
        trail = db.scalars(select(AuditEvent).where(AuditEvent.user_id == other.id)).all()
    assert (link.link_metadata, link.last_login_at) == (stale, None)
    assert [event.event for event in trail] == ["user.created", "link.created"]


# --- refusals that change nothing ---------------------------------------------------------------


def still_waiting(front: Front, store: Store, world: World, flow: str) -> None:
    """Nothing was chosen and the request still waits at the selector."""
    assert session_context(store, world.user.id) is None
    assert context_events(store) == 0
    back = front.client.get(f"/flow/{flow}")
    assert back.status_code == 303 and back.headers["location"] == f"/select-identity?flow={flow}"


@pytest.fixture
def at_selector(front: Front, world: World, store: Store) -> tuple[str, str, str]:
    """Signed in by SMS, two links, a required app's request waiting at the selector:
    (flow, link A, link B)."""
    link_a, link_b = both_links(store, world)
    crm = register(store, "required")
    signed_in(front)
    _, _, answer = authorize(front, crm)
    return to_selector(answer), link_a, link_b


def forged_link_id(store: Store, world: World, kind: str) -> str:
    if kind == "another person's":
        other = in_unit(store, users.create_user, "李四", OTHER_PHONE)
        return add_link(store, other.id, CORP_A, "lisi", {**META_A, "userid": "lisi"})
    if kind == "disabled":
        return add_link(store, world.user.id, CORP_A, "zhangsan_old", META_A, status="disabled")
    if kind == "unknown":
        return new_id()
    if kind == "oversized":
        return new_id() + "x" * 4000
    if kind == "a SQL fragment":
        return "' OR '1'='1"
    return ""  # empty


FORGERIES = ["another person's", "disabled", "unknown", "oversized", "a SQL fragment", "empty"]


def test_a_forged_choice_is_refused_and_changes_nothing(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, _, _ = at_selector
    for kind in FORGERIES:
        refused = post_choice(front, flow, link_id=forged_link_id(store, world, kind))
        assert refused.status_code == 303, (kind, refused.text)
        assert refused.headers["location"] == f"/select-identity?flow={flow}&problem=forbidden"
        still_waiting(front, store, world, flow)
    unknown = forged_link_id(store, world, "unknown")
    data = {"csrf_token": front.csrf(), "flow": flow, "link_id": unknown}
    refused = front.client.post("/select-identity", data=data)
    english = front.client.get(refused.headers["location"], headers=EN)
    assert english.status_code == 200
    assert "That identity is not one of yours" in english.text
    assert 'type="submit" name="link_id"' in english.text  # the choices are still offered
    chinese = front.client.get(refused.headers["location"], headers=ZH)
    assert "该身份不属于您或已停用" in chinese.text
    still_waiting(front, store, world, flow)


def test_a_post_without_our_csrf_token_changes_nothing(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, link_a, _ = at_selector
    for action in ({"link_id": link_a}, {"cancel": "1"}):
        for csrf in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}):
            data = {"flow": flow, **action, **csrf}
            refused = front.client.post("/select-identity", data=data, headers=EN)
            assert refused.status_code == 403, (data, refused.text)
            assert "did not come from this site" in refused.text
            still_waiting(front, store, world, flow)


def test_another_browser_cannot_choose_or_cancel_for_this_request(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, link_a, _ = at_selector
    with store() as db:  # let the same person ask for a second code at once
        db.execute(update(OtpChallenge).values(created_at=utcnow().replace(year=2020)))
        db.commit()
    with TestClient(front.client.app, base_url=ISSUER, follow_redirects=False) as browser:
        other = signed_in(Front(browser, front.sms))
        assert gone_home(other, flow)
        for fields in ({"link_id": link_a}, {"cancel": "1"}):
            refused = post_choice(other, flow, **fields)
            assert refused.headers["location"] == f"/select-identity?flow={flow}"
    with store() as db:
        sessions = db.scalars(select(SsoSession)).all()
    assert [s.context_link_id for s in sessions] == [None, None]
    assert context_events(store) == 0
    back = front.client.get(f"/flow/{flow}")
    assert back.headers["location"] == f"/select-identity?flow={flow}"


def test_a_finished_request_takes_no_more_choices(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, link_a, link_b = at_selector
    chosen = post_choice(front, flow, link_id=link_a)
    assert resume(front, chosen, flow).status_code == 302
    for fields in ({"link_id": link_b}, {"cancel": "1"}):
        late = post_choice(front, flow, **fields)
        assert late.headers["location"] == f"/select-identity?flow={flow}"
    assert session_context(store, world.user.id) == link_a
    assert context_events(store) == 1
    assert gone_home(front, flow)  # Back after the app got its answer


def test_an_expired_request_takes_no_choice(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, link_a, _ = at_selector
    with store() as db:
        db.execute(update(PendingAuthorization).values(expires_at=utcnow().replace(year=2020)))
        db.commit()
    assert gone_home(front, flow)
    late = post_choice(front, flow, link_id=link_a)
    assert late.headers["location"] == f"/select-identity?flow={flow}"
    assert session_context(store, world.user.id) is None
    assert context_events(store) == 0


def test_a_choice_without_a_session_changes_nothing(
    front: Front, world: World, store: Store, at_selector: tuple[str, str, str]
) -> None:
    flow, link_a, _ = at_selector
    cookie = front.client.cookies.get(SESSION_COOKIE)
    front.client.cookies.delete(SESSION_COOKIE)
    page = front.client.get(f"/select-identity?flow={flow}")
    assert page.status_code == 303 and page.headers["location"] == f"/login?flow={flow}"
    for fields in ({"link_id": link_a}, {"cancel": "1"}):
        refused = post_choice(front, flow, **fields)
        assert refused.headers["location"] == f"/select-identity?flow={flow}"
    front.client.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    still_waiting(front, store, world, flow)


def gone_home(front: Front, flow: str) -> bool:
    """The selector of a request that is not (or no longer) this browser's sends the signed-in
    browser home: Back after the app got its answer."""
    page = front.client.get(f"/select-identity?flow={flow}")
    return page.status_code == 303 and page.headers["location"] == "/"


def test_the_selector_without_a_live_request_is_an_error_page(front: Front, world: World) -> None:
    for flow in (None, "", "no-such-flow", "x" * 5000):
        query = "" if flow is None else f"?flow={flow}"
        page = front.client.get("/select-identity" + query, headers=EN)
        assert page.status_code == 400, query[:20]
        assert "This sign-in request has expired" in page.text
    signed_in(front)
    for flow in (None, "", "no-such-flow", "x" * 5000):
        query = "" if flow is None else f"?flow={flow}"
        page = front.client.get("/select-identity" + query, headers=EN)
        assert page.status_code == 303 and page.headers["location"] == "/", query[:20]
        refused = post_choice(front, flow or "", link_id=new_id())
        assert refused.status_code == 303, refused.text
