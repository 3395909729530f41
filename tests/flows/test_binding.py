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

    def post(self, client: TestClient | None = None, path: str = "/bind", **fields: str) -> Any:
        data = {"csrf_token": self.csrf, "binding": self.token, **fields}
        return (client or self.front.client).post(path, data=data)

    def send_code(self, phone: str = PHONE) -> Any:
        return self.post(phone=phone)

    def submit(self, code: str, phone: str = PHONE) -> Any:
        return self.post(phone=phone, code=code)

    def confirm(self, client: TestClient | None = None, **fields: str) -> Any:
        return self.post(client, "/bind/confirm", confirm="1", **fields)

    def cancel(self) -> Any:
        return self.post(None, "/bind/confirm", cancel="1")

    def shown(self, answer: Any) -> Any:
        """The page a POST's 303 leads to (a step of this binding: no number in its URL)."""
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        assert location.startswith("/bind?"), location
        query = query_of(location)
        assert query["binding"] == self.token
        assert set(query) <= {"binding", "step", "problem", "wait"}, location
        return self.front.client.get(location)


def problem_of(answer: Any) -> str | None:
    """The problem code a step's 303 names."""
    return query_of(answer.headers["location"]).get("problem")


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
    assert query_of(sent.headers["location"])["step"] == "code"
    code_step = binding.shown(sent)
    assert "A 6-digit code was sent to +86 138****8000" in code_step.text
    assert 'name="code"' in code_step.text
    assert [m.purpose for m in wecom_front.sms.messages()] == ["bind"]
    assert wecom_front.client.get(sent.headers["location"]).status_code == 200  # a reload
    assert len(wecom_front.sms.messages()) == 1  # sends nothing

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
    assert SESSION_COOKIE in bound.headers["set-cookie"]
    notice = binding.shown(bound)  # signed in; the page says an account was made
    assert notice.status_code == 200
    assert "A new account was created for +86 139****9000 with the name 李四." in notice.text
    assert "子公司A · 李四 (lisi) is linked to it" in notice.text
    assert '<a class="button primary" href="/">Continue</a>' in notice.text
    chinese = wecom_front.client.get(binding.page + "&lang=zh-CN")
    assert "已为 +86 139****9000 新建账号" in chinese.text
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
        assert problem_of(answer) == "wrong_code"
        page = binding.shown(answer)
        assert f"The code is wrong. {tries_left} tries left." in page.text
        assert 'name="code"' in page.text  # still on the code step
        assert "+86 138****8000" in page.text  # and the number it went to
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert counts(store) == (0, 0, 0)
    for malformed in ("12345", "abcdef"):
        assert problem_of(binding.submit(malformed)) == "code_invalid"
    assert binding.submit(right).headers["location"] == binding.page  # the new account
    assert counts(store) == (1, 1, 1)


def test_five_wrong_codes_kill_the_code(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    binding.send_code()
    right = wecom_front.last_code()
    for _ in range(5):
        binding.submit(wrong(right))
    dead = binding.submit(right)
    assert problem_of(dead) == "code_dead"
    phone_step = wecom_front.client.get(dead.headers["location"], follow_redirects=True)
    assert 'name="phone"' in phone_step.text
    assert counts(store) == (0, 0, 0)


def test_a_login_code_does_not_bind(wecom_front: WeComFront, store: Store) -> None:
    """Codes are per purpose: the one /login/otp sent cannot finish a binding."""
    # login codes go to known numbers only
    in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    binding = Binding(wecom_front)
    wecom_front.send_code(PHONE)  # the sign-in page's code, purpose "login"
    assert [m.purpose for m in wecom_front.sms.messages()] == ["login"]
    answer = binding.submit(wecom_front.last_code())
    assert problem_of(answer) == "code_dead"
    assert counts(store) == (1, 0, 0)


def test_an_invalid_phone_is_refused_clearly(wecom_front: WeComFront, store: Store) -> None:
    binding = Binding(wecom_front)
    for phone in ["", "12345", "not a phone", "+0123456789", "1" * 40]:
        answer = binding.send_code(phone)
        assert problem_of(answer) == "phone_invalid", phone
        page = binding.shown(answer)
        assert "international number" in page.text
        assert 'name="phone"' in page.text  # back on the phone step
        assert problem_of(binding.submit("123456", phone)) in ("phone_invalid", "code_dead")
    assert wecom_front.sms.messages() == []
    assert counts(store) == (0, 0, 0)


def test_a_second_code_within_a_minute_is_refused(wecom_front: WeComFront) -> None:
    binding = Binding(wecom_front)
    assert binding.send_code().status_code == 303
    again = binding.send_code()
    assert problem_of(again) == "not_resent"
    page = binding.shown(again)
    assert "No new code was sent" in page.text and 'name="code"' in page.text
    assert re.search(r'data-resend-in="\d+"', page.text)
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
    replay = binding.submit(code)  # Back to the code step and submit again
    assert replay.headers["location"] == binding.page  # only the new account's notice again
    assert counts(store) == (1, 1, 1)
    with store() as db:
        assert db.scalar(select(func.count()).select_from(OtpChallenge)) == 1


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
    assert bound.status_code == 303 and bound.headers["location"] == "/"  # no new account
    assert counts(store) == (1, 1, 1)


# --- the linking question: another name asks first ----------------------------------------------

WANGWU_PHONE = "+8613300132222"


def links(store: Store) -> list[tuple[str, str]]:
    with store() as db:
        return [(link.provider_user_id, link.user_id) for link in db.scalars(select(IdentityLink))]


def asked(front: WeComFront, store: Store) -> tuple[Binding, User]:
    """王芳 of 子公司A at /bind proves the phone of 王五: the page asks first."""
    wangwu = in_unit(store, users.create_user, "王五", WANGWU_PHONE)
    binding = Binding(front, "wangfang")
    binding.send_code(WANGWU_PHONE)
    answer = binding.submit(front.last_code(), WANGWU_PHONE)
    assert answer.status_code == 303 and answer.headers["location"] == binding.page
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")  # nobody signed in
    return binding, wangwu


def test_the_same_name_links_without_asking(wecom_front: WeComFront, store: Store) -> None:
    person = in_unit(store, users.create_user, "王芳", WANGWU_PHONE)
    binding = Binding(wecom_front, "wangfang")
    binding.send_code(WANGWU_PHONE)
    bound = binding.submit(wecom_front.last_code(), WANGWU_PHONE)
    assert bound.status_code == 303 and bound.headers["location"] == "/"
    assert links(store) == [(f"{CORP_A}/wangfang", person.id)]


def test_another_name_asks_first_and_links_nothing_before_the_answer(
    wecom_front: WeComFront, store: Store
) -> None:
    binding, wangwu = asked(wecom_front, store)
    page = wecom_front.client.get(binding.page)
    assert page.status_code == 200
    assert "Link 子公司A · 王芳 (wangfang) to 王五 (+86 133****2222)?" in page.text
    assert "The names differ: WeCom says 王芳, the account belongs to 王五." in page.text
    form = re.search(r'<form method="post" action="/bind/confirm".*?</form>', page.text, re.S)
    assert form, page.text
    assert 'name="csrf_token"' in form.group(0)
    assert re.search(r'<button type="submit" name="confirm"[^>]*>Link to 王五', form.group(0))
    assert re.search(r'<button type="submit" name="cancel"[^>]*>Cancel', form.group(0))
    chinese = wecom_front.client.get(binding.page + "&lang=zh-CN").text
    assert "将子公司A · 王芳（wangfang）绑定到王五（+86 133****2222）？" in chinese
    assert "姓名不一致" in chinese and ">取消" in chinese
    assert page.headers["cache-control"] == "no-store"

    assert links(store) == [] and counts(store) == (1, 0, 0)
    assert "link.created" not in event_names(store)
    with store() as db:
        assert db.scalars(select(OtpChallenge)).one().consumed_at is not None  # the code is spent
    # Back to the code step and the code again, or a new code: the question stays
    assert binding.submit(wecom_front.last_code(), WANGWU_PHONE).headers["location"] == binding.page
    assert binding.send_code(WANGWU_PHONE).headers["location"] == binding.page
    assert len(wecom_front.sms.messages()) == 1
    assert links(store) == []


def test_confirming_links_and_signs_in(wecom_front: WeComFront, store: Store) -> None:
    binding, wangwu = asked(wecom_front, store)
    confirmed = binding.confirm()
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/"
    assert SESSION_COOKIE in confirmed.headers["set-cookie"]
    assert links(store) == [(f"{CORP_A}/wangfang", wangwu.id)]
    with store() as db:
        sso = db.scalars(select(SsoSession)).one()
        link = db.scalars(select(IdentityLink)).one()
        created = db.scalars(select(AuditEvent).where(AuditEvent.event == "link.created")).one()
        assert db.scalars(select(PendingBinding)).all() == []
    assert (sso.user_id, sso.context_link_id) == (wangwu.id, link.id)
    assert created.detail["method"] == "sms"
    assert counts(store) == (1, 1, 1)

    replayed = binding.confirm()  # Back and confirm again
    assert replayed.status_code == 400
    assert "expired or belongs to another browser" in replayed.text
    assert counts(store) == (1, 1, 1)


def test_cancelling_links_nothing_and_drops_the_binding(
    wecom_front: WeComFront, store: Store
) -> None:
    binding, _ = asked(wecom_front, store)
    cancelled = binding.cancel()
    assert cancelled.status_code == 303 and cancelled.headers["location"] == "/"
    assert SESSION_COOKIE not in cancelled.headers.get("set-cookie", "")
    assert counts(store) == (1, 0, 0)
    with store() as db:
        assert db.scalars(select(PendingBinding)).all() == []
    assert binding.confirm().status_code == 400  # nothing left to confirm
    assert wecom_front.client.get(binding.page).status_code == 400
    assert counts(store) == (1, 0, 0)


def test_only_this_browser_can_answer_and_only_with_its_csrf_token(
    wecom_front: WeComFront, store: Store
) -> None:
    binding, wangwu = asked(wecom_front, store)
    with TestClient(wecom_front.client.app, base_url=ISSUER, follow_redirects=False) as other:
        assert other.get(binding.page).status_code == 400
        csrf = WeComFront(other, wecom_front.sms, wecom_front.simulator).csrf()
        stolen = {"csrf_token": csrf, "binding": binding.token}
        assert other.post("/bind/confirm", data=stolen).status_code == 400
        assert other.post("/bind/confirm", data={**stolen, "cancel": "1"}).status_code == 400
    plain = {"binding": binding.token, "confirm": "1"}
    assert wecom_front.client.post("/bind/confirm", data=plain).status_code == 403
    forged = {**plain, "csrf_token": "0" * 64}
    assert wecom_front.client.post("/bind/confirm", data=forged).status_code == 403
    assert counts(store) == (1, 0, 0)
    assert binding.confirm().status_code == 303  # still the rightful browser's question
    assert links(store) == [(f"{CORP_A}/wangfang", wangwu.id)]


def test_the_question_is_short_lived(
    wecom_front: WeComFront, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, accounts, rows)
    binding, _ = asked(wecom_front, store)
    clock.advance(minutes=6)
    assert wecom_front.client.get(binding.page).status_code == 400
    assert binding.confirm().status_code == 400
    assert counts(store) == (1, 0, 0)


def test_a_person_disabled_before_the_answer_is_not_linked(
    wecom_front: WeComFront, store: Store
) -> None:
    binding, _ = asked(wecom_front, store)
    with store() as db:
        db.execute(update(User).values(status="disabled"))
        db.commit()
    refused = binding.confirm()
    assert refused.status_code == 403
    assert counts(store) == (1, 0, 0)


def test_the_signed_in_person_who_asks_to_link_another_name_is_asked_first(
    wecom_front: WeComFront, store: Store
) -> None:
    """The linking offer: 王五, signed in, links WeCom's 王芳: the same question, and the answer
    needs 王五 still signed in in this browser."""
    wangwu = in_unit(store, users.create_user, "王五", WANGWU_PHONE)
    assert wecom_front.login(WANGWU_PHONE).status_code == 303
    started = wecom_front.client.get(f"/login/wecom/{CORP_A}", params={"link": "1"})
    came_back = wecom_front.client.get(wecom_front.pick(started, "wangfang"))
    assert came_back.status_code == 303 and came_back.headers["location"].startswith("/bind?")
    page = wecom_front.client.get(came_back.headers["location"])
    assert "Link 子公司A · 王芳 (wangfang) to 王五 (+86 133****2222)?" in page.text
    assert links(store) == []
    token = query_of(came_back.headers["location"])["binding"]
    csrf = wecom_front.csrf(came_back.headers["location"])
    confirmed = wecom_front.client.post(
        "/bind/confirm", data={"csrf_token": csrf, "binding": token, "confirm": "1"}
    )
    assert confirmed.status_code == 303 and confirmed.headers["location"] == "/"
    assert links(store) == [(f"{CORP_A}/wangfang", wangwu.id)]
    with store() as db:
        created = db.scalars(select(AuditEvent).where(AuditEvent.event == "link.created")).one()
        sso = db.scalars(select(SsoSession)).one()  # the same person's session, renewed
    assert created.detail["method"] == "session"
    assert sso.user_id == wangwu.id and sso.context_link_id is not None


def test_a_question_for_a_signed_in_person_needs_them_still_signed_in(
    wecom_front: WeComFront, store: Store
) -> None:
    in_unit(store, users.create_user, "王五", WANGWU_PHONE)
    assert wecom_front.login(WANGWU_PHONE).status_code == 303
    started = wecom_front.client.get(f"/login/wecom/{CORP_A}", params={"link": "1"})
    came_back = wecom_front.client.get(wecom_front.pick(started, "wangfang"))
    token = query_of(came_back.headers["location"])["binding"]
    csrf = wecom_front.csrf(came_back.headers["location"])
    wecom_front.client.cookies.delete(SESSION_COOKIE)  # signed out meanwhile
    refused = wecom_front.client.post(
        "/bind/confirm", data={"csrf_token": csrf, "binding": token, "confirm": "1"}
    )
    assert refused.status_code == 400
    assert links(store) == []
