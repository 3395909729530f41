"""iam/services/accounts.py: outside identities and core users (find, hold, bind), on SQLite and
PostgreSQL, with the concurrent first logins of one member."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, update
from support.clocks import Clock
from support.constants import CORP_A, CORP_B, PHONE
from support.units import in_unit

from iam.db.models import AuditEvent, IdentityLink, PendingBinding, User
from iam.db.store import Store
from iam.errors import ForbiddenError, NotFoundError
from iam.federation.connector import Identity
from iam.federation.wecom.connector import subject_of
from iam.secretbox import SecretBox, digest
from iam.services import accounts, otp, rows, users
from iam.services.attempts import Attempt
from iam.services.sms import ConsoleSms
from iam.services.users import MAX_NAME

BROWSER = "browser-one"
OTHER_BROWSER = "browser-two"
ATTEMPT = Attempt(BROWSER)
NEW_PHONE = "+8613300133000"


def identity(
    userid: str = "zhangsan_A",
    corp_id: str = CORP_A,
    *,
    name: str = "张三",
    phone: str | None = None,
    trusted: bool = False,
    email: str | None = None,
    **metadata: Any,
) -> Identity:
    subject, key = subject_of(corp_id, userid)
    return Identity(
        provider="wecom",
        subject=subject,
        subject_key=key,
        display_name=name,
        email=email,
        phone=phone,
        phone_trusted=trusted,
        metadata={"corpid": corp_id, "userid": userid, "position": "销售经理", **metadata},
    )


def count(store: Store, model: type) -> int:
    with store() as db:
        return db.scalar(select(func.count()).select_from(model))


def audit(store: Store, event: str) -> list[AuditEvent]:
    with store() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def disable(store: Store, model: type) -> None:
    with store() as db:
        db.execute(update(model).values(status="disabled"))
        db.commit()


def run_together(calls: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(i)` in `calls` threads released at once; each result, or the exception raised."""
    barrier = threading.Barrier(calls)
    results: list[Any] = [None] * calls

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call(index)
        except Exception as error:  # noqa: BLE001 - reported to the test, which asserts on it
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# --- find_linked --------------------------------------------------------------------------------


def test_an_unbound_identity_has_no_link(store: Store) -> None:
    assert in_unit(store, accounts.find_linked, identity()) is None
    assert count(store, AuditEvent) == 0


def test_find_linked_refreshes_the_link_from_this_login(store: Store) -> None:
    bound = in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    later = replace(
        identity("ZhangSan_A", position="区域经理", department=["华东区"]),
        subject=f"{CORP_A}/ZhangSan_A",
    )
    assert later.subject_key == bound.link.provider_user_key  # the same member, another spelling

    found = in_unit(store, accounts.find_linked, later, ip="198.51.100.7")
    assert found is not None
    assert (found.user.id, found.link.id) == (bound.user.id, bound.link.id)
    with store() as db:
        link = db.get(IdentityLink, bound.link.id)
    assert link.provider_user_id == f"{CORP_A}/ZhangSan_A"
    assert link.link_metadata["position"] == "区域经理"
    assert link.link_metadata["department"] == ["华东区"]
    assert link.last_login_at >= bound.link.last_login_at
    [used] = audit(store, "link.used")
    assert (used.user_id, used.ip, used.detail["link_id"]) == (
        bound.user.id,
        "198.51.100.7",
        link.id,
    )


@pytest.mark.parametrize("model", [IdentityLink, User])
def test_a_disabled_link_or_user_is_forbidden(store: Store, model: type) -> None:
    in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    disable(store, model)
    with pytest.raises(ForbiddenError):
        in_unit(store, accounts.find_linked, identity(position="changed"))
    with store() as db:
        assert db.scalars(select(IdentityLink)).one().link_metadata["position"] == "销售经理"
    assert audit(store, "link.used") == []
    with pytest.raises(ForbiddenError):  # and binding it again does not get round it
        in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    with pytest.raises(ForbiddenError):
        in_unit(store, accounts.resolve_identity, identity(), None, attempt=ATTEMPT)


# --- holding an identity for binding ------------------------------------------------------------


def test_a_held_identity_is_found_by_its_token_in_its_browser_only(store: Store) -> None:
    held = identity(phone="13800138000", email="z@example.com", department=["销售部"])
    token = in_unit(store, accounts.hold_for_binding, BROWSER, held, "flow-1")
    pending = in_unit(store, accounts.pending_binding, token, BROWSER)
    assert pending.identity == held
    assert pending.flow_id == "flow-1"
    with store() as db:
        row = db.scalars(select(PendingBinding)).one()
    assert row.id == digest(token) and token not in row.id  # only its digest is stored
    for token_, browser in [
        (token, OTHER_BROWSER),
        ("", BROWSER),
        ("no-such-token", BROWSER),
        (token + "x" * 64, BROWSER),
    ]:
        with pytest.raises(NotFoundError):
            in_unit(store, accounts.pending_binding, token_, browser)


def test_a_held_identity_expires_after_ten_minutes_and_is_swept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock().install(monkeypatch, accounts, rows)
    token = in_unit(store, accounts.hold_for_binding, BROWSER, identity(), None)
    clock.advance(minutes=9, seconds=59)
    assert in_unit(store, accounts.pending_binding, token, BROWSER).flow_id is None
    clock.advance(seconds=1)
    with pytest.raises(NotFoundError):
        in_unit(store, accounts.pending_binding, token, BROWSER)
    in_unit(store, accounts.hold_for_binding, BROWSER, identity("lisi"), None)
    assert count(store, PendingBinding) == 1  # the expired one was swept


# --- bind_with_code -----------------------------------------------------------------------------


def bind_with_code(
    store: Store, box: SecretBox, token: str, browser: str, phone: str, code: str
) -> tuple[accounts.Linked, str | None]:
    """`accounts.bind_with_code` in a unit of work of its own, when it binds: (link, flow id)."""
    bound = in_unit(
        store, accounts.bind_with_code, box, token, phone, code, attempt=Attempt(browser)
    )
    assert isinstance(bound, accounts.Bound), bound
    return bound.linked, bound.pending.flow_id


def _code(store: Store, box: SecretBox, sms: ConsoleSms, phone: str = PHONE) -> str:
    in_unit(store, otp.request_code, box, sms, phone, "bind", attempt=ATTEMPT)
    return sms.messages()[0].code


def test_bind_with_code_links_and_spends_the_binding(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    token = in_unit(store, accounts.hold_for_binding, BROWSER, identity(), "flow-7")
    code = _code(store, box, sms)
    linked, flow_id = bind_with_code(store, box, token, BROWSER, "13800138000", code)
    assert flow_id == "flow-7"
    assert linked.user.phone == PHONE
    assert linked.link.provider_user_id == f"{CORP_A}/zhangsan_A"
    # a new person: the binding stays, past its phone step, as the new account's notice
    assert count(store, PendingBinding) == 1
    with pytest.raises(NotFoundError):
        bind_with_code(store, box, token, BROWSER, PHONE, code)


def test_bind_with_a_wrong_code_binds_nothing_and_keeps_the_binding(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    token = in_unit(store, accounts.hold_for_binding, BROWSER, identity(), None)
    code = _code(store, box, sms)
    with pytest.raises(otp.OtpError) as refused:
        bind_with_code(
            store, box, token, BROWSER, PHONE, "000000" if code != "000000" else "111111"
        )
    assert refused.value.tries_left == 4
    assert (count(store, User), count(store, IdentityLink)) == (0, 0)
    linked, _ = bind_with_code(store, box, token, BROWSER, PHONE, code)
    assert linked.user.phone == PHONE


def test_bind_with_code_of_another_browser_does_not_spend_the_code(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    token = in_unit(store, accounts.hold_for_binding, BROWSER, identity(), None)
    code = _code(store, box, sms)
    with pytest.raises(NotFoundError):
        bind_with_code(store, box, token, OTHER_BROWSER, PHONE, code)
    bind_with_code(store, box, token, BROWSER, PHONE, code)
    assert count(store, IdentityLink) == 1


# --- bind and bind_trusted_mobile ---------------------------------------------------------------


def test_bind_links_the_person_with_that_phone(store: Store) -> None:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE)
    assert user.phone_verified_at is None
    linked = in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip="203.0.113.9")
    assert linked.user.id == user.id
    assert linked.link.user_id == user.id
    assert linked.link.status == "active"
    with store() as db:
        assert db.get(User, user.id).phone_verified_at is not None
        assert db.get(User, user.id).name == "张三 Zhang San"
    [created] = audit(store, "link.created")
    assert (created.ip, created.detail["method"], created.detail["subject"]) == (
        "203.0.113.9",
        "sms",
        f"{CORP_A}/zhangsan_A",
    )
    assert len(audit(store, "user.created")) == 1  # create_user's own


def test_bind_makes_the_person_from_the_identity(store: Store) -> None:
    long_name = "名" * (MAX_NAME + 50)
    linked = in_unit(
        store,
        accounts.bind,
        identity(name=long_name, email="zs@example.com"),
        NEW_PHONE,
        method="sms",
        ip=None,
    )
    assert linked.user.name == long_name[:MAX_NAME]
    assert (linked.user.phone, linked.user.email) == (NEW_PHONE, "zs@example.com")
    assert linked.user.phone_verified_at is not None
    [created] = audit(store, "user.created")
    assert (created.user_id, created.detail["via"]) == (linked.user.id, "wecom")

    nameless = replace(identity("lisi"), display_name="", email="x" * 321)
    other = in_unit(store, accounts.bind, nameless, "+8613900139000", method="sms", ip=None)
    assert other.user.name == f"{CORP_A}/lisi"
    assert other.user.email is None


def test_one_person_may_hold_several_links(store: Store) -> None:
    a = in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    b = in_unit(store, accounts.bind, identity("zs_b", CORP_B), PHONE, method="sms", ip=None)
    assert a.user.id == b.user.id and a.link.id != b.link.id
    assert (count(store, User), count(store, IdentityLink)) == (1, 2)


def test_bind_of_a_bound_identity_returns_its_link(store: Store) -> None:
    first = in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    again = in_unit(store, accounts.bind, identity("ZHANGSAN_A"), NEW_PHONE, method="sms", ip=None)
    assert (again.user.id, again.link.id) == (first.user.id, first.link.id)
    assert (count(store, User), count(store, IdentityLink)) == (1, 1)


def test_bind_refuses_a_disabled_person(store: Store) -> None:
    in_unit(store, users.create_user, "张三", PHONE)
    disable(store, User)
    with pytest.raises(ForbiddenError):
        in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    assert count(store, IdentityLink) == 0
    assert audit(store, "link.created") == []


def test_bind_trusted_mobile_declines_without_a_usable_trusted_mobile(store: Store) -> None:
    for given in [
        {"phone": "13800138000", "trusted": False},  # the corporation is not trusted for it
        {"phone": None, "trusted": True},  # no mobile was read
        {"phone": "", "trusted": True},
        {"phone": "0123", "trusted": True},  # not a phone number we can use
    ]:
        assert in_unit(store, accounts.bind_trusted_mobile, identity(**given)) is None, given
    assert (count(store, User), count(store, IdentityLink)) == (0, 0)


def test_bind_trusted_mobile_binds_without_a_code(store: Store) -> None:
    user = in_unit(store, users.create_user, "张三", PHONE)
    linked = in_unit(
        store,
        accounts.bind_trusted_mobile,
        identity(phone="13800138000", trusted=True),
        ip="192.0.2.1",
    )
    assert linked is not None and linked.user.id == user.id
    [created] = audit(store, "link.created")
    assert created.detail["method"] == "trusted_mobile"


# --- a trusted mobile never takes over a person known through another source --------------------


def refusals(store: Store) -> list[AuditEvent]:
    return audit(store, "link.trusted_mobile_refused")


def test_trusted_mobile_refuses_a_person_with_an_active_link_in_another_corporation(
    store: Store,
) -> None:
    """A subsidiary's WeCom admin who sets a member's mobile to someone else's number must not
    get that person's account: a person known through another corporation proves the phone."""
    person = in_unit(store, users.create_user, "张三", PHONE)
    in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    intruder = identity("mallory", phone="13800138000", trusted=True)

    assert in_unit(store, accounts.bind_trusted_mobile, intruder, ip="192.0.2.66") is None
    assert (count(store, User), count(store, IdentityLink)) == (1, 1)
    [refused] = refusals(store)
    assert (refused.outcome, refused.user_id, refused.ip) == ("failure", person.id, "192.0.2.66")
    assert refused.detail == {
        "subject": f"{CORP_A}/mallory",
        "phone": "+86138****8000",
        "reason": "active_link_elsewhere",
        "linked_elsewhere": [f"{CORP_B}/zs_b"],
        "next": "sms",
    }


def test_a_refused_trusted_mobile_holds_the_identity_until_the_phone_is_proven(
    store: Store, box: SecretBox, sms: ConsoleSms
) -> None:
    person = in_unit(store, users.create_user, "张三", PHONE)
    in_unit(store, users.link_wecom, person.id, CORP_B, "zs_b")
    intruder = identity("mallory", phone="13800138000", trusted=True)

    held = in_unit(store, accounts.resolve_identity, intruder, "flow-1", attempt=ATTEMPT)
    assert isinstance(held, accounts.NeedsBinding)
    assert count(store, IdentityLink) == 1
    assert len(refusals(store)) == 1

    linked, flow_id = bind_with_code(store, box, held.token, BROWSER, PHONE, _code(store, box, sms))
    assert (linked.user.id, flow_id) == (person.id, "flow-1")
    assert audit(store, "link.created")[-1].detail["method"] == "sms"


def test_a_link_at_another_provider_also_needs_the_sms_step(store: Store) -> None:
    person = in_unit(store, users.create_user, "张三", PHONE)
    with store() as db:
        db.add(
            IdentityLink(
                user_id=person.id,
                provider="dingtalk",
                provider_user_id="corp9/zs",
                provider_user_key="corp9/zs",
                status="active",
            )
        )
        db.commit()
    intruder = identity("mallory", phone="13800138000", trusted=True)
    assert in_unit(store, accounts.bind_trusted_mobile, intruder) is None
    assert refusals(store)[0].detail["linked_elsewhere"] == ["corp9/zs"]


@pytest.mark.parametrize(
    "elsewhere",
    [
        [],  # a person known only here by phone (core login)
        [(CORP_B, "zs_b", "disabled")],  # left the other corporation
        [(CORP_A, "zhangsan_old", "active")],  # another identity in this same corporation
    ],
)
def test_trusted_mobile_binds_a_person_with_no_active_link_elsewhere(
    store: Store, elsewhere: list[tuple[str, str, str]]
) -> None:
    person = in_unit(store, users.create_user, "张三", PHONE)
    for corp_id, userid, status in elsewhere:
        link = in_unit(store, users.link_wecom, person.id, corp_id, userid)
        with store() as db:
            db.execute(update(IdentityLink).where(IdentityLink.id == link.id).values(status=status))
            db.commit()
    linked = in_unit(
        store, accounts.bind_trusted_mobile, identity(phone="13800138000", trusted=True)
    )
    assert linked is not None and linked.user.id == person.id
    assert linked.link.provider_user_id == f"{CORP_A}/zhangsan_A"
    assert refusals(store) == []


def test_trusted_mobile_still_makes_a_new_person(store: Store) -> None:
    linked = in_unit(
        store, accounts.bind_trusted_mobile, identity(phone="13300133000", trusted=True)
    )
    assert linked is not None and linked.user.phone == NEW_PHONE
    assert (count(store, User), count(store, IdentityLink)) == (1, 1)
    assert refusals(store) == []


# --- resolve_identity ---------------------------------------------------------------------------


def test_resolve_identity_finds_binds_trusted_or_holds(store: Store) -> None:
    held = in_unit(store, accounts.resolve_identity, identity(), "flow-1", attempt=ATTEMPT)
    assert isinstance(held, accounts.NeedsBinding)
    assert in_unit(store, accounts.pending_binding, held.token, BROWSER).flow_id == "flow-1"

    trusted = in_unit(
        store,
        accounts.resolve_identity,
        identity(phone="13800138000", trusted=True),
        None,
        attempt=ATTEMPT,
    )
    assert isinstance(trusted, accounts.Linked)
    found = in_unit(store, accounts.resolve_identity, identity(), None, attempt=ATTEMPT)
    assert isinstance(found, accounts.Linked) and found.link.id == trusted.link.id
    assert count(store, IdentityLink) == 1


# --- concurrent first logins --------------------------------------------------------------------


@pytest.mark.parametrize("threads", [2, 8])
@pytest.mark.parametrize("existing_user", [False, True])
def test_concurrent_binds_of_one_member_make_one_link(
    store: Store, threads: int, existing_user: bool
) -> None:
    if existing_user:
        in_unit(store, users.create_user, "张三", PHONE)
    results = run_together(
        threads, lambda _i: in_unit(store, accounts.bind, identity(), PHONE, method="sms", ip=None)
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert len({r.link.id for r in results}) == 1
    assert len({r.user.id for r in results}) == 1
    assert (count(store, User), count(store, IdentityLink)) == (1, 1)
    assert len(audit(store, "link.created")) == 1
    assert len(audit(store, "user.created")) == 1


@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_binds_by_one_new_phone_make_one_person(store: Store, threads: int) -> None:
    members = [identity(f"member{i}") for i in range(threads)]
    results = run_together(
        threads,
        lambda i: in_unit(store, accounts.bind, members[i], NEW_PHONE, method="sms", ip=None),
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert len({r.user.id for r in results}) == 1
    assert len({r.link.id for r in results}) == threads
    assert (count(store, User), count(store, IdentityLink)) == (1, threads)
    assert len(audit(store, "user.created")) == 1


def test_a_bind_that_loses_two_races_in_a_row_ends_with_the_link(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    linked = in_unit(store, accounts.bind, identity(), NEW_PHONE, method="sms", ip=None)
    assert linked.link.provider_user_key == f"{CORP_A}/zhangsan_a"
    assert linked.user.phone == NEW_PHONE
    assert (count(store, User), count(store, IdentityLink)) == (1, 1)
