"""On-demand binding over HTTP (`/bind`): a WeCom member with no link proves a phone by SMS code,
and is linked to the core user with that phone (made if there is none). Every refusal changes
nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient
from support.browser import WeComFront
from support.clocks import Clock
from support.constants import CORP_A, ISSUER, PHONE
from support.protocol import query_of
from support.units import in_unit

from iam.clock import utcnow
from iam.db.models import (
    AuditEvent,
    IdentityLink,
    OtpChallenge,
    PendingBinding,
    SsoSession,
    User,
)
from iam.db.store import Store
from iam.devtools.wecom_simulator import SimMember
from iam.services import accounts, rows, users
from iam.web import SESSION_COOKIE

pytestmark = pytest.mark.usefixtures("reused_signing_key")

LISI_PHONE = "+8613900139000"


# --- helpers ------------------------------------------------------------------------------------


class Binding:
    """A browser standing on /bind for one WeCom identity."""

    def __init__(self, front: WeComFront, userid: str = "zhangsan_A") -> None:
        answer = front.login_as(userid)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/bind?")
        self.front = front
        self.page = answer.headers["location"]
        self.token = query_of(self.page)["binding"]
        self.csrf = front.csrf(self.page)

    def post(self, client: TestClient | None = None, **fields: str) -> Any:
        data = {"csrf_token": self.csrf, "binding": self.token, **fields}
        return (client or self.front.client).post("/bind", data=data)

    def send_code(self, phone: str = PHONE) -> Any:
        return self.post(phone=phone)

    def submit(self, code: str, phone: str = PHONE) -> Any:
        return self.post(phone=phone, code=code)


def counts(store: Store) -> tuple[int, int, int]:
    """(users, links, sessions)."""
    with store() as db:
        return (
            db.scalar(select(func.count()).select_from(User)),
            db.scalar(select(func.count()).select_from(IdentityLink)),
            db.scalar(select(func.count()).select_from(SsoSession)),
        )


def event_names(store: Store) -> list[str]:
    with store() as db:
        return list(db.scalars(select(AuditEvent.event).order_by(AuditEvent.id)))


def age_codes(store: Store) -> None:
    """Make the codes sent so far old enough that the 60 s resend limit allows another."""
    with store() as db:
        db.execute(update(OtpChallenge).values(created_at=utcnow() - timedelta(minutes=2)))
        db.commit()


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# --- binding ------------------------------------------------------------------------------------


def test_the_bind_page_says_who_wecom_vouches_for(wecom_front: WeComFront) -> None:
    binding = Binding(wecom_front, "lisi")
    page = wecom_front.client.get(binding.page)
    assert page.status_code == 200
    assert "WeCom says you are 李四 (lisi) at 子公司A" in page.text
    assert f'name="binding" value="{binding.token}"' in page.text
    assert 'name="csrf_token"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "绑定企业微信身份" in wecom_front.client.get(binding.page + "&lang=zh-CN").text


def test_what_wecom_says_is_escaped_on_the_page(wecom_front: WeComFront) -> None:
    wecom_front.simulator.add_member(
        CORP_A, SimMember("mallory", '<script>alert("x")</script>', [2], "<b>boss</b>")
    )
    page = wecom_front.client.get(Binding(wecom_front, "mallory").page)
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(" in page.text


def test_binding_an_existing_phone_links_that_person(wecom_front: WeComFront, store: Store) -> None:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE, "zhangsan@example.com")
    binding = Binding(wecom_front)
    sent = binding.send_code()
    assert sent.status_code == 200
    assert "A 6-digit code was sent to +8613800138000" in sent.text
    assert [m.purpose for m in wecom_front.sms.messages()] == ["bind"]

    bound = binding.submit(wecom_front.last_code())
    assert bound.status_code == 303 and bound.headers["location"] == "/", bound.text
    assert SESSION_COOKIE in bound.headers["set-cookie"]
    with store() as db:
        link = db.scalars(select(IdentityLink)).one()
        sso = db.scalars(select(SsoSession)).one()
        linked_user = db.get(User, user.id)
    assert link.user_id == user.id
    assert link.provider_user_id == f"{CORP_A}/zhangsan_A"
    assert (sso.user_id, sso.context_link_id, sso.amr) == (user.id, link.id, ["wecom"])
    assert linked_user.phone_verified_at is not None
    assert linked_user.name == "张三 Zhang San"  # the core user's own name is kept
    assert counts(store) == (1, 1, 1)
    names = event_names(store)
    assert names.count("user.created") == 1  # only the one create_user made
    assert names.count("link.created") == 1
    with store() as db:
        created = db.scalars(select(AuditEvent).where(AuditEvent.event == "link.created")).one()
        assert db.scalars(select(PendingBinding)).all() == []  # the binding is spent
    assert created.user_id == user.id
    assert (created.detail["method"], created.detail["link_id"]) == ("sms", link.id)
    assert "Zhang San" in wecom_front.client.get("/").text


def test_binding_a_new_phone_makes_the_person_with_wecoms_name(
    wecom_front: WeComFront, store: Store
) -> None:
    binding = Binding(wecom_front, "lisi")
    binding.send_code("13900139000")  # the mainland form is read as +86
    bound = binding.submit(wecom_front.last_code(), "13900139000")
    assert bound.status_code == 303 and bound.headers["location"] == "/", bound.text
    with store() as db:
        user = db.scalars(select(User)).one()
        link = db.scalars(select(IdentityLink)).one()
        trail = {
            e.event: e
            for e in db.scalars(select(AuditEvent).where(AuditEvent.event != "corp.added"))
        }
    assert (user.name, user.phone, user.email) == ("李四", LISI_PHONE, None)
    assert user.phone_verified_at is not None
    assert link.user_id == user.id
    assert trail["user.created"].user_id == user.id
    assert trail["user.created"].detail["via"] == "wecom"
    assert trail["link.created"].detail["method"] == "sms"
    assert trail["login.succeeded"].detail["context_link_id"] == link.id


def test_a_wrong_code_shows_the_tries_left_and_binds_nothing(
    wecom_front: WeComFront, store: Store
) -> None:
    binding = Binding(wecom_front)
    binding.send_code()
    right = wecom_front.last_code()
    for tries_left in (4, 3):
        answer = binding.submit(wrong(right))
        assert answer.status_code == 400
        assert f"The code is wrong. {tries_left} tries left." in answer.text
        assert 'name="code"' in answer.text  # still on the code step
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert counts(store) == (0, 0, 0)
    for malformed in ("12345", "abcdef"):
        assert binding.submit(malformed).status_code == 400
    assert binding.submit(right).status_code == 303
    assert counts(store) == (1, 1, 1)


def test_five_wrong_codes_kill_the_code(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    binding.send_code()
    right = wecom_front.last_code()
    for _ in range(5):
        binding.submit(wrong(right))
    dead = binding.submit(right)
    assert dead.status_code == 400
    assert counts(store) == (0, 0, 0)


def test_a_login_code_does_not_bind(wecom_front: WeComFront, store: Store) -> None:
    """Codes are per purpose: the one /login/otp sent cannot finish a binding."""
    # login codes go to known numbers only
    in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    binding = Binding(wecom_front)
    wecom_front.send_code(PHONE)  # the sign-in page's code, purpose "login"
    assert [m.purpose for m in wecom_front.sms.messages()] == ["login"]
    answer = binding.submit(wecom_front.last_code())
    assert answer.status_code == 400
    assert counts(store) == (1, 0, 0)


def test_an_invalid_phone_is_refused_clearly(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    for phone in ["", "12345", "not a phone", "+0123456789", "1" * 40]:
        answer = binding.send_code(phone)
        assert answer.status_code == 400, phone
        assert "international number" in answer.text
        assert 'name="phone"' in answer.text  # back on the phone step
        assert binding.submit("123456", phone).status_code == 400, phone
    assert wecom_front.sms.messages() == []
    assert counts(store) == (0, 0, 0)


def test_a_second_code_within_a_minute_is_refused(wecom_front: WeComFront) -> None:
    binding = Binding(wecom_front)
    assert binding.send_code().status_code == 200
    again = binding.send_code()
    assert again.status_code == 429
    assert 0 < int(again.headers["retry-after"]) <= 60
    assert re.search(r"Wait \d+ seconds", again.text)
    assert len(wecom_front.sms.messages()) == 1


def test_forms_without_our_csrf_token_are_refused(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    plain = {"binding": binding.token, "phone": PHONE}
    assert wecom_front.client.post("/bind", data=plain).status_code == 403
    forged = {**plain, "csrf_token": "0" * 64}
    assert wecom_front.client.post("/bind", data=forged).status_code == 403
    with TestClient(wecom_front.client.app, base_url=ISSUER) as other:
        foreign = WeComFront(other, wecom_front.sms, wecom_front.simulator).csrf()
    refused = wecom_front.client.post("/bind", data={**plain, "csrf_token": foreign})
    assert refused.status_code == 403
    assert "form" in refused.text.lower()
    assert wecom_front.sms.messages() == []

    binding.send_code()
    code = wecom_front.last_code()
    for csrf in (None, "0" * 64, foreign):
        data = {**plain, "code": code, **({"csrf_token": csrf} if csrf else {})}
        assert wecom_front.client.post("/bind", data=data).status_code == 403
    assert counts(store) == (0, 0, 0)
    assert binding.submit(code).status_code == 303  # the code was not spent by the refusals


def test_an_oversized_form_is_refused(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    answer = binding.post(phone=PHONE, junk="x" * 20000)
    assert answer.status_code == 413
    assert wecom_front.sms.messages() == []
    assert counts(store) == (0, 0, 0)


def test_an_expired_binding_is_refused(
    wecom_front: WeComFront, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, accounts, rows)
    binding = Binding(wecom_front)
    binding.send_code()
    code = wecom_front.last_code()
    clock.advance(minutes=11)
    page = wecom_front.client.get(binding.page)
    assert page.status_code == 400
    assert "expired or belongs to another browser" in page.text
    answer = binding.submit(code)
    assert answer.status_code == 400
    assert "expired or belongs to another browser" in answer.text
    assert counts(store) == (0, 0, 0)


def test_a_binding_of_another_browser_is_refused(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    binding.send_code()
    code = wecom_front.last_code()
    with TestClient(wecom_front.client.app, base_url=ISSUER, follow_redirects=False) as other:
        assert other.get(binding.page).status_code == 400
        csrf = WeComFront(other, wecom_front.sms, wecom_front.simulator).csrf()
        data = {"csrf_token": csrf, "binding": binding.token, "phone": PHONE, "code": code}
        stolen = other.post("/bind", data=data)
        assert stolen.status_code == 400
        assert "expired or belongs to another browser" in stolen.text
        data.pop("code")
        assert other.post("/bind", data=data).status_code == 400
    assert len(wecom_front.sms.messages()) == 1
    assert counts(store) == (0, 0, 0)
    assert binding.submit(code).status_code == 303  # still the rightful browser's


def test_an_unknown_binding_is_refused(wecom_front: WeComFront) -> None:
    csrf = wecom_front.csrf()
    for token in ["", "no-such-binding", "x" * 500]:
        page = wecom_front.client.get("/bind", params={"binding": token})
        assert page.status_code == 400
        assert "expired or belongs to another browser" in page.text
        answer = wecom_front.client.post(
            "/bind", data={"csrf_token": csrf, "binding": token, "phone": PHONE}
        )
        assert answer.status_code == 400
    assert wecom_front.sms.messages() == []


def test_a_binding_is_finished_once(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    binding.send_code()
    code = wecom_front.last_code()
    assert binding.submit(code).status_code == 303
    replay = binding.submit(code)
    assert replay.status_code == 400
    assert "expired or belongs to another browser" in replay.text
    assert counts(store) == (1, 1, 1)


def test_a_disabled_person_with_that_phone_cannot_be_bound(
    wecom_front: WeComFront, store: Store
) -> None:
    in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    with store() as db:
        db.execute(update(User).values(status="disabled"))
        db.commit()
    binding = Binding(wecom_front)
    binding.send_code()
    answer = binding.submit(wecom_front.last_code())
    assert answer.status_code == 403
    assert "disabled" in answer.text
    assert counts(store) == (1, 0, 0)
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_two_tabs_binding_the_same_member_end_with_one_link(
    wecom_front: WeComFront, store: Store
) -> None:
    """Two WeCom logins of one member in one browser, each at /bind: the second to finish finds
    the first one's link."""
    first = Binding(wecom_front)
    second = Binding(wecom_front)
    assert first.token != second.token
    first.send_code()
    assert first.submit(wecom_front.last_code()).status_code == 303
    wecom_front.client.cookies.delete(SESSION_COOKIE)  # so the second login starts a session
    age_codes(store)
    second.send_code()
    assert second.submit(wecom_front.last_code()).status_code == 303
    assert counts(store) == (1, 1, 2)


def test_a_binding_that_loses_two_races_still_signs_in(
    wecom_front: WeComFront, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other binders commit a person and a link while this one's unit of work runs, and its
    unit runs again from the start. On SQLite this cannot happen: the unit holds the one
    write lock from the moment it uses up its code, so other binders wait for it and then find
    what it made (the simulation would deadlock); on PostgreSQL it can."""
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite's single writer serialises binders: no race to lose")
    binding = Binding(wecom_front)
    binding.send_code()
    code = wecom_front.last_code()
    real = accounts.find_user_by_phone
    looked_up: list[User | None] = []

    def racing(db: Any, phone: str) -> User | None:
        found = real(db, phone)
        looked_up.append(found)
        if len(looked_up) == 1:  # zs_b, with the same phone, makes the person first
            in_unit(store, users.create_user, "张三", phone)
        elif len(looked_up) == 2 and found is not None:  # the member's other tab links first
            in_unit(store, users.link_wecom, found.id, CORP_A, "zhangsan_A")
        return found

    monkeypatch.setattr(accounts, "find_user_by_phone", racing)
    bound = binding.submit(code)
    assert bound.status_code == 303 and bound.headers["location"] == "/"
    assert counts(store) == (1, 1, 1)
