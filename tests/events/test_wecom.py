"""WeCom's encrypted callbacks through HTTP (issue #13), with events sealed by our own
encryptor (itself checked against WeCom's official vectors in
tests/federation/test_wecom_callbacks.py) and a simulated WeCom directory that changes: a
leaver's `required`-app refresh token gets `invalid_grant` and the corporation is no longer
offered, a rename leaves one link, a position change shows in the next token; refusals store
nothing."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import jwt
import pytest
from httpx2 import Response
from sqlalchemy import func, select
from starlette.testclient import TestClient
from support.browser import WeComFront, refresh, tokens_of
from support.clocks import RateClock
from support.constants import CORP_A, CORP_B, RP_REDIRECT, TEST_SECRET
from support.units import in_unit
from support.wecom import META_A, META_B, connect_corp, set_callback
from support.world import World

from iam.app import create_app
from iam.db.models import AuditEvent, DirectoryEvent, IdentityLink
from iam.db.store import Store
from iam.devtools.wecom_simulator import WeComSimulator
from iam.federation.wecom.callbacks import CallbackCrypto
from iam.secretbox import SecretBox
from iam.services import clients, corps, users
from iam.services.clients import RegisteredClient
from iam.services.sms import ConsoleSms
from iam.settings import Settings

TOKEN = "QDG6eK"
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
TIMESTAMP, NONCE = "1409659813", "1372623149"
#: WeCom's official sample (wecom-api.md §5.5, Set A1) for the corporation wx5823bf96d3bd56c7.
OFFICIAL_CORP = "wx5823bf96d3bd56c7"
OFFICIAL_A1 = (
    "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780"
    "&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO"
    "%2BFZXvnaqQ%3D%3D"
)


def change(change_type: str, corp_id: str = CORP_A, **fields: str) -> str:
    """A contact-change event as WeCom sends it (wecom-api.md §6)."""
    body = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in fields.items())
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>"
        f"<ChangeType>{change_type}</ChangeType>{body}</xml>"
    )


def post(
    front: WeComFront, plaintext: str, *, receive_id: str = CORP_A, token: str = TOKEN
) -> Response:
    envelope, signature = CallbackCrypto(token, KEY, receive_id).seal_message(
        plaintext, TIMESTAMP, NONCE
    )
    query = urlencode({"msg_signature": signature, "timestamp": TIMESTAMP, "nonce": NONCE})
    return front.client.post(
        f"/events/wecom/{CORP_A}?{query}", content=envelope, headers={"content-type": "text/xml"}
    )


@pytest.fixture
def receiving(wecom_front: WeComFront, store: Store) -> WeComFront:
    """Subsidiary A's app has its callback settings."""
    set_callback(store, CORP_A, TOKEN, KEY)
    return wecom_front


@pytest.fixture
def in_a(receiving: WeComFront, store: Store, world: World) -> WeComFront:
    """张三, linked in both subsidiaries, signed in through subsidiary A's WeCom."""
    in_unit(store, users.link_wecom, world.user.id, CORP_A, "zhangsan_A", META_A)
    in_unit(store, users.link_wecom, world.user.id, CORP_B, "zs_b", META_B)
    came_in = receiving.login_as("zhangsan_A", CORP_A)
    assert (came_in.status_code, came_in.headers["location"]) == (303, "/"), came_in.text
    return receiving


@pytest.fixture
def crm(store: Store) -> RegisteredClient:
    return in_unit(store, clients.create_client, "CRM", [RP_REDIRECT], context_policy="required")


def context_of(tokens: dict[str, str]) -> dict[str, object]:
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    context: dict[str, object] = claims["wecom_context"]
    return context


def count(store: Store, model: type) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(model)) or 0


def links_of_a(store: Store) -> list[IdentityLink]:
    with store() as db:
        return list(
            db.scalars(select(IdentityLink).where(IdentityLink.provider_user_id.startswith(CORP_A)))
        )


# --- the URL check ------------------------------------------------------------------------------


def test_wecoms_url_check_gets_the_plaintext_alone(receiving: WeComFront) -> None:
    crypto = CallbackCrypto(TOKEN, KEY, CORP_A)
    echostr = crypto.encrypt("5927638265917")
    query = urlencode(
        {
            "msg_signature": crypto.signature(TIMESTAMP, NONCE, echostr),
            "timestamp": TIMESTAMP,
            "nonce": NONCE,
            "echostr": echostr,
        }
    )
    answer = receiving.client.get(f"/events/wecom/{CORP_A}?{query}")
    assert (answer.status_code, answer.text) == (200, "5927638265917")
    assert answer.headers["content-type"].startswith("text/plain")


def test_the_official_url_check_vector_is_answered(wecom_front: WeComFront, store: Store) -> None:
    in_unit(
        store,
        corps.add_corp,
        SecretBox(TEST_SECRET),
        OFFICIAL_CORP,
        "官方示例",
        218,
        "secret",
        callback_token=TOKEN,
        encoding_aes_key=KEY,
    )
    answer = wecom_front.client.get(f"/events/wecom/{OFFICIAL_CORP}?{OFFICIAL_A1}")
    assert (answer.status_code, answer.text) == (200, "1616140317555161061")


def test_a_url_check_for_another_corporation_is_refused(
    receiving: WeComFront, store: Store
) -> None:
    crypto = CallbackCrypto(TOKEN, KEY, CORP_B)  # the right keys, another corporation's id
    echostr = crypto.encrypt("5927638265917")
    signature = crypto.signature(TIMESTAMP, NONCE, echostr)
    query = urlencode(
        {"msg_signature": signature, "timestamp": TIMESTAMP, "nonce": NONCE, "echostr": echostr}
    )
    assert receiving.client.get(f"/events/wecom/{CORP_A}?{query}").status_code == 400


@pytest.mark.parametrize("corp_id", [CORP_B, "NOPE"], ids=["no settings", "unknown"])
def test_a_corporation_without_callback_settings_has_no_receiver(
    receiving: WeComFront, corp_id: str
) -> None:
    query = urlencode({"msg_signature": "0" * 40, "timestamp": "1", "nonce": "1", "echostr": "x"})
    assert receiving.client.get(f"/events/wecom/{corp_id}?{query}").status_code == 404


# --- what each event does ----------------------------------------------------------------------


def test_a_leaver_loses_subsidiary_a(
    in_a: WeComFront, store: Store, crm: RegisteredClient, simulator: WeComSimulator
) -> None:
    tokens = tokens_of(in_a, crm)
    assert context_of(tokens)["corpid"] == CORP_A
    simulator.remove_member(CORP_A, "zhangsan_A")
    answer = post(in_a, change("delete_user", UserID="zhangsan_A"))
    assert (answer.status_code, answer.text) == (200, "")
    refused = refresh(in_a, crm, tokens["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    (link,) = links_of_a(store)
    assert (link.status, link.disabled_reason) == ("disabled", "left")
    # the session lost the context, and subsidiary A is offered no more: B is the only one
    assert context_of(tokens_of(in_a, crm))["corpid"] == CORP_B
    with store() as db:
        (event,) = db.scalars(select(DirectoryEvent)).all()
    assert (event.change_type, event.outcome) == ("delete_user", "disabled")


def test_a_delete_event_for_a_member_who_is_still_there_changes_nothing(
    in_a: WeComFront, store: Store
) -> None:
    assert post(in_a, change("delete_user", UserID="zhangsan_A")).status_code == 200
    (link,) = links_of_a(store)
    assert link.status == "active"  # user/get still knows them: the event was stale


def test_a_rename_leaves_one_link(
    in_a: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    simulator.update_member(CORP_A, "zhangsan_A", userid="zhang.san")
    answer = post(in_a, change("update_user", UserID="zhangsan_A", NewUserID="zhang.san"))
    assert answer.status_code == 200
    (link,) = links_of_a(store)
    assert link.provider_user_id == f"{CORP_A}/zhang.san"
    # the next login as the new userid goes straight through, to the same link
    assert in_a.login_as("zhang.san", CORP_A).status_code == 303
    assert [x.id for x in links_of_a(store)] == [link.id]


def test_a_position_change_shows_in_the_next_token(
    in_a: WeComFront, store: Store, crm: RegisteredClient, simulator: WeComSimulator
) -> None:
    simulator.update_member(CORP_A, "zhangsan_A", position="区域总监")
    assert post(in_a, change("update_user", UserID="zhangsan_A")).status_code == 200
    assert context_of(tokens_of(in_a, crm))["position"] == "区域总监"


def test_the_same_event_sent_again_is_stored_and_handled_once(
    in_a: WeComFront, store: Store, simulator: WeComSimulator
) -> None:
    simulator.remove_member(CORP_A, "zhangsan_A")
    envelope, signature = CallbackCrypto(TOKEN, KEY, CORP_A).seal_message(
        change("delete_user", UserID="zhangsan_A"), TIMESTAMP, NONCE
    )
    query = urlencode({"msg_signature": signature, "timestamp": TIMESTAMP, "nonce": NONCE})
    for _ in range(2):  # WeCom retries when it heard nothing within 5 s
        answer = in_a.client.post(f"/events/wecom/{CORP_A}?{query}", content=envelope)
        assert answer.status_code == 200
    assert count(store, DirectoryEvent) == 1
    with store() as db:
        disabled = db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "link.disabled")
        )
    assert disabled == 1


# --- refusals: a 400, audited, nothing stored ---------------------------------------------------


def refused_with(store: Store, answer: Response, reason: str) -> None:
    assert answer.status_code == 400, answer.text
    assert count(store, DirectoryEvent) == 0
    with store() as db:
        (audited,) = db.scalars(
            select(AuditEvent).where(AuditEvent.event == "wecom.callback_refused")
        ).all()
    assert (audited.outcome, audited.detail["reason"]) == ("failure", reason)


def test_a_wrong_token_is_refused(receiving: WeComFront, store: Store) -> None:
    answer = post(receiving, change("delete_user", UserID="zhangsan_A"), token="WrongToken")
    refused_with(store, answer, "signature")


def test_another_corporations_event_is_refused(receiving: WeComFront, store: Store) -> None:
    answer = post(receiving, change("delete_user", CORP_B, UserID="zs_b"), receive_id=CORP_B)
    refused_with(store, answer, "receive_id")


def test_a_forged_signature_is_refused(receiving: WeComFront, store: Store) -> None:
    envelope, signature = CallbackCrypto(TOKEN, KEY, CORP_A).seal_message(
        change("delete_user", UserID="zhangsan_A"), TIMESTAMP, NONCE
    )
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    query = urlencode({"msg_signature": flipped, "timestamp": TIMESTAMP, "nonce": NONCE})
    answer = receiving.client.post(f"/events/wecom/{CORP_A}?{query}", content=envelope)
    refused_with(store, answer, "signature")


def test_an_envelope_that_is_not_xml_is_refused(receiving: WeComFront, store: Store) -> None:
    query = urlencode({"msg_signature": "0" * 40, "timestamp": TIMESTAMP, "nonce": NONCE})
    answer = receiving.client.post(f"/events/wecom/{CORP_A}?{query}", content=b"<xml><Encrypt>")
    refused_with(store, answer, "xml")


@pytest.mark.parametrize(
    "query",
    [{}, {"msg_signature": "0" * 41, "timestamp": "1", "nonce": "1"}],
    ids=["nothing", "a signature too long"],
)
def test_missing_or_oversized_parameters_are_refused(
    receiving: WeComFront, store: Store, query: dict[str, str]
) -> None:
    answer = receiving.client.post(f"/events/wecom/{CORP_A}?{urlencode(query)}", content=b"<xml/>")
    assert answer.status_code == 400
    assert count(store, DirectoryEvent) == 0


def test_a_department_event_makes_the_next_sign_in_read_department_names_again(
    in_a: WeComFront, simulator: WeComSimulator
) -> None:
    before = simulator.calls["department_get"]
    assert in_a.login_as("zhangsan_A", CORP_A).status_code == 303
    assert simulator.calls["department_get"] == before  # remembered
    assert post(in_a, change("update_party", Id="2", Name="大客户部")).status_code == 200
    assert in_a.login_as("zhangsan_A", CORP_A).status_code == 303
    assert simulator.calls["department_get"] > before


def test_a_flood_of_refused_callbacks_is_counted_not_audited(
    wecom_settings: Settings,
    store: Store,
    sms: ConsoleSms,
    simulator: WeComSimulator,
    rate_clock: RateClock,  # no window ends between the four posts
) -> None:
    """WeCom never sends a bad signature: past the limit, forgeries are only counted (429)."""
    connect_corp(store, simulator, CORP_A)
    set_callback(store, CORP_A, TOKEN, KEY)
    app = create_app(
        replace(wecom_settings, rate_limits="callback_refused=2/600"), store=store, sms=sms
    )
    query = urlencode({"msg_signature": "0" * 40, "timestamp": TIMESTAMP, "nonce": NONCE})
    with TestClient(app) as client:
        statuses = [
            client.post(f"/events/wecom/{CORP_A}?{query}", content=b"<xml/>").status_code
            for _ in range(4)
        ]
    assert statuses == [400, 400, 429, 429]
    with store() as db:
        audited = db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event == "wecom.callback_refused")
        )
    assert audited == 2
