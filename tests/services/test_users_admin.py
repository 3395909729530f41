"""iam/services/users.py, the admin's side: search, enable/disable, remove a link, end sessions;
and that a disabled person is refused at every door."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from support.constants import CORP_A, CORP_B, PHONE
from support.units import in_unit, signed_in

from iam.clock import utcnow
from iam.db.models import (
    AccessToken,
    AuditEvent,
    IdentityLink,
    RefreshToken,
    SsoSession,
    User,
)
from iam.db.store import Store
from iam.errors import ForbiddenError, NotFoundError, ValidationError
from iam.federation.connector import Identity
from iam.federation.wecom.connector import subject_of
from iam.secretbox import SecretBox
from iam.services import accounts, clients, directory, login, otp, sessions, users
from iam.services.attempts import Attempt
from iam.services.sms import ConsoleSms

ACTOR = "admin:root"

BROWSER = "the-browser-that-asked"
ATTEMPT = Attempt(BROWSER)


@pytest.fixture
def zhang(store: Store) -> User:
    user = in_unit(store, users.create_user, "张三 Zhang San", PHONE, "zhangsan@example.com")
    in_unit(store, users.link_wecom, user.id, CORP_A, "ZhangSan_A", {"corp_name": "Subsidiary A"})
    in_unit(store, users.link_wecom, user.id, CORP_B, "zs_b", {"corp_name": "Subsidiary B"})
    return user


@pytest.fixture
def li(store: Store) -> User:
    return in_unit(store, users.create_user, "李四 Li Si", "+8613900139000", "lisi@example.org")


@pytest.fixture
def client_id(store: Store) -> str:
    return in_unit(store, clients.create_client, "CRM", ["https://rp.example/cb"]).client.client_id


def _names(found: list[users.UserSummary]) -> list[str]:
    return [row.user.name for row in found]


def _search(store: Store, query: str | None, limit: int = 50, offset: int = 0) -> list[str]:
    return _names(in_unit(store, users.search_users, query, limit=limit, offset=offset))


def _start_session(store: Store, user: User, link_id: str | None = None) -> str:
    with store() as db:
        new = sessions.start(db, user, ["sms"], ip="198.51.100.7", context_link_id=link_id)
        db.commit()
    return new.session.id


def _add_tokens(store: Store, user: User, client_id: str, sid: str | None, name: str) -> None:
    """One refresh token and one access token of `user`, bound to `sid` (or to no session)."""
    now = utcnow()
    with store() as db:
        db.add(
            RefreshToken(
                token_hash=hashlib.sha256(name.encode()).hexdigest(),
                family_id=f"family-{name}",
                client_id=client_id,
                user_id=user.id,
                scope="openid",
                sid=sid,
                auth_time=now,
                amr=["sms"],
                issued_at=now,
                expires_at=now + timedelta(days=30),
            )
        )
        db.add(
            AccessToken(
                jti=f"jti-{name}",
                client_id=client_id,
                user_id=user.id,
                sid=sid,
                scope="openid",
                issued_at=now,
                expires_at=now + timedelta(minutes=10),
            )
        )
        db.commit()


def _revoked(store: Store) -> dict[str, bool]:
    """Every token, by name, and whether it is revoked."""
    with store() as db:
        refresh = {
            row.family_id.removeprefix("family-"): row.revoked_at is not None
            for row in db.scalars(select(RefreshToken))
        }
        access = {
            row.jti.removeprefix("jti-"): row.revoked_at is not None
            for row in db.scalars(select(AccessToken))
        }
    assert refresh == access
    return refresh


def _sessions_of(store: Store, user: User) -> list[SsoSession]:
    with store() as db:
        return list(db.scalars(select(SsoSession).where(SsoSession.user_id == user.id)))


def _audit(store: Store, event_name: str) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    with store() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.event == event_name)).all()
        return [(row.user_id, row.actor, dict(row.detail)) for row in rows]


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    """The statements that read or write rows (a `SET LOCAL` of the unit's planning reads none)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("SET LOCAL "):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


# --- search ----------------------------------------------------------------------------------


KEYS = [
    "zhang san",  # name, any case
    "张三",
    PHONE,  # phone as stored
    "13800138000",  # as typed: an 11-digit mainland number
    "138 0013 8000",  # with spaces, read as +86
    "ZHANGSAN@EXAMPLE",  # email, any case
    "zhangsan_a",  # a WeCom userid in another letter case
    "ZS_B",
    f"{CORP_A}/zhangsan_A",  # the whole provider id
]


def test_search_finds_a_person_by_each_key(store: Store, zhang: User, li: User) -> None:
    for query in KEYS:
        assert _search(store, query) == [zhang.name], query


def test_search_counts_links_in_one_statement(store: Store, zhang: User, li: User) -> None:
    with _statements(store) as seen:
        found = in_unit(store, users.search_users, "", limit=50, offset=0)
    assert [(row.user.name, row.link_count) for row in found] == [(zhang.name, 2), (li.name, 0)]
    assert len(seen) == 1
    with _statements(store) as seen:
        in_unit(store, users.search_users, "zs_b", limit=50, offset=0)
    assert len(seen) == 1


def test_search_matches_percent_and_underscore_literally(store: Store, zhang: User) -> None:
    percent = in_unit(store, users.create_user, "100% Wang", "+8613700137000")
    underscore = in_unit(store, users.create_user, "Zhao_Liu", "+8613600136000")
    assert _search(store, "%") == [percent.name]
    assert _search(store, "0%") == [percent.name]
    assert _search(store, "o_l") == [underscore.name]
    assert _search(store, "_") == [zhang.name, underscore.name]  # zhang: via ZhangSan_A, zs_b
    assert _search(store, "%wang") == []


def test_search_pages_oldest_first(store: Store, zhang: User, li: User) -> None:
    wang = in_unit(store, users.create_user, "王五", "+8613700137000")
    assert _search(store, None, limit=2) == [zhang.name, li.name]
    assert _search(store, None, limit=2, offset=2) == [wang.name]
    assert _search(store, None, limit=2, offset=3) == []


def _pages(store: Store, query: str | None, size: int, *, between: Any = None) -> list[str]:
    """Every name of a search, page by page by cursor (`between(number)` runs after each)."""
    seen: list[str] = []
    after = None
    for number in range(100):
        found = in_unit(store, users.search_users, query, limit=size, after=after)
        seen += _names(found)
        if len(found) < size:
            return seen
        after = users.Cursor.of(found[-1].user)
        if between is not None:
            between(number)
    raise AssertionError("the pages never ended")


def test_search_pages_by_cursor_each_row_once(store: Store, zhang: User, li: User) -> None:
    made = [in_unit(store, users.create_user, f"Page {n}", f"+86137{n:08d}").name for n in range(7)]
    assert _pages(store, None, 2) == [zhang.name, li.name, *made]
    assert _pages(store, "page", 3) == made
    assert _pages(store, "nobody", 3) == []


def test_search_pages_by_cursor_lose_no_row_when_people_are_added(
    store: Store, zhang: User, li: User
) -> None:
    """People added while an admin pages come last (the order is oldest first): each row is
    seen once, the new ones on the last pages, none lost."""
    added: list[str] = []

    def add(number: int) -> None:
        if number < 3:  # after each of the first three pages
            person = in_unit(store, users.create_user, f"New {number}", f"+86136{number:08d}")
            added.append(person.name)

    seen = _pages(store, None, 1, between=add)
    assert len(added) == 3
    assert len(seen) == len(set(seen))
    assert set(seen) == {zhang.name, li.name, *added}


def test_search_pages_back_before_a_cursor(store: Store, zhang: User, li: User) -> None:
    made = [in_unit(store, users.create_user, f"Back {n}", f"+86135{n:08d}") for n in range(4)]
    last = users.Cursor.of(made[-1])
    found = in_unit(store, users.search_users, None, limit=2, before=last)
    assert _names(found) == [made[1].name, made[2].name]  # oldest first, as every page
    first = in_unit(store, users.search_users, None, limit=5, before=users.Cursor.of(li))
    assert _names(first) == [zhang.name]


def test_a_cursor_reads_back_and_refuses_anything_else(zhang: User) -> None:
    cursor = users.Cursor.of(zhang)
    assert users.Cursor.read(cursor.text) == cursor
    forged = [
        "",
        "not a cursor",
        "%%%",
        "123",  # no id
        "_" + zhang.id,  # no time
        "12345678901234567_" + zhang.id,  # past 2286
        "-5_" + zhang.id,
        f"123_{'a' * 37}",  # no id is that long
        "123_a b",
        "123_a\x00b",
        "MjAyNi0xMi0wNnxub3BlCg",
    ]
    for text in forged:
        with pytest.raises(ValidationError) as refused:
            users.Cursor.read(text, "before")
        assert refused.value.field == "before", text


def test_counting_stops_at_the_cap_and_says_so(
    store: Store, zhang: User, li: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(users, "COUNT_CAP", 1)
    assert in_unit(store, users.count_users, "zhang") == users.Total(1)
    assert in_unit(store, users.count_users, "i") == users.Total(1, "more_than")  # both
    if store.engine.dialect.name == "sqlite":
        assert in_unit(store, users.count_users, None) == users.Total(2)  # counted, all
    else:  # PostgreSQL's estimate of the table, as ANALYZE left it
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE users")
        assert in_unit(store, users.count_users, None) == users.Total(2, "about")


def test_search_refuses_a_long_query_and_finds_nothing_for_nul(store: Store, zhang: User) -> None:
    with pytest.raises(ValidationError) as refused:
        in_unit(store, users.search_users, "x" * 201, limit=10, offset=0)
    assert refused.value.field == "q"
    assert _search(store, "zhang\x00") == []


def test_search_finds_nothing_that_does_not_match(store: Store, zhang: User) -> None:
    assert _search(store, "nobody") == []
    assert _search(store, CORP_B + "/zhangsan") == []


def test_the_search_follows_every_change_of_its_keys(store: Store, zhang: User) -> None:
    """The keys are kept in `users.search_text` by the database: a rename, a new email or
    phone, a new, renamed or removed link are found (and what was is not) at once, short
    needles and long alike."""
    in_unit(
        store,
        users.update_user,
        zhang.id,
        name="王伟 Wang Wei",
        phone="+8613700137000",
        email="wangwei@example.net",
        actor=ACTOR,
    )
    for now in (
        "王伟",
        "王",
        "wang wei",
        "wangwei@example.net",
        "13700137000",
        "zs_b",
        "zhangsan_a",
    ):
        assert _search(store, now) == ["王伟 Wang Wei"], now
    for before in ("张三", "zhang san", "zhangsan@example.com", "13800138000"):
        assert _search(store, before) == [], before
    detail = in_unit(store, users.user_detail, zhang.id)
    by_userid = {link.provider_user_id: link for link in detail.links}
    in_unit(store, users.remove_link, zhang.id, by_userid[f"{CORP_B}/zs_b"].id, actor=ACTOR)
    assert _search(store, "zs_b") == []

    def rename(db: Any) -> None:
        link = db.get(IdentityLink, by_userid[f"{CORP_A}/ZhangSan_A"].id)
        directory.rekey_link(db, link, CORP_A, "Wei.Wang", actor=ACTOR)

    in_unit(store, rename)
    assert _search(store, "wei.wang") == ["王伟 Wang Wei"]
    assert _search(store, "zhangsan_a") == []
    in_unit(store, users.link_wecom, zhang.id, CORP_B, "WW_b", {"corp_name": "Subsidiary B"})
    assert _search(store, "ww_b") == ["王伟 Wang Wei"]
    # across two keys, over the separator: the name's end and the email's start
    assert _search(store, "wei\x1fwangwei") == []


def test_a_short_search_never_rescans_the_links_for_each_person(store: Store) -> None:
    """A search under three characters finds no trigram. When its link key was an `id IN
    (links)` beside the other keys, PostgreSQL rescanned a list of the matching links for every
    person once they outgrew work_mem: at a million people "li" ran for hours. Asked here with
    the smallest work_mem, so a few thousand matching links are enough."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("the planner's choice is PostgreSQL's")
    now = utcnow()
    people = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(3000)]
    with store.engine.begin() as connection:
        connection.execute(
            User.__table__.insert(),
            [
                {"id": p, "name": f"Person {p}", "status": "active", "created_at": now}
                for p in people
            ],
        )
        connection.execute(
            IdentityLink.__table__.insert(),
            [
                {
                    "id": f"link-{i:05d}",
                    "user_id": p,
                    "provider": "wecom",
                    "provider_user_id": f"{CORP_A}/li{i}",
                    "provider_user_key": f"{CORP_A}/li{i}",
                    "link_metadata": {},
                    "status": "active",
                    "created_at": now,
                }
                for i, p in enumerate(people)
            ],
        )
        connection.exec_driver_sql("ANALYZE users")
        connection.exec_driver_sql("ANALYZE identity_links")
    sent: list[tuple[str, Any]] = []

    def capture(_conn: object, _cursor: object, sql: str, params: Any, *_: object) -> None:
        sent.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        assert len(in_unit(store, users.search_users, "li", limit=50)) == 50
        assert in_unit(store, users.count_users, "li") == users.Total(3000)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    searches = [(sql, params) for sql, params in sent if "search_text" in sql]
    assert len(searches) == 2
    with store.engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL work_mem = '64kB'")
        connection.exec_driver_sql("SET LOCAL hash_mem_multiplier = 1")
        for sql, params in searches:
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, params))
            assert "Materialize" not in plan, plan


# --- detail ----------------------------------------------------------------------------------


def test_user_detail_has_links_and_only_live_sessions(store: Store, zhang: User) -> None:
    live = _start_session(store, zhang)
    expired = _start_session(store, zhang)
    with store() as db:
        row = db.get(SsoSession, expired)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    found = in_unit(store, users.user_detail, zhang.id)
    assert [link.provider_user_id for link in found.links] == [
        f"{CORP_A}/ZhangSan_A",
        f"{CORP_B}/zs_b",
    ]
    assert [sso.id for sso in found.sessions] == [live]


def test_unknown_user_ids_are_not_found(store: Store) -> None:
    for user_id in ["no-such-user", "x" * 37, "a\x00b", ""]:
        with pytest.raises(NotFoundError):
            in_unit(store, users.user_detail, user_id)
        with pytest.raises(NotFoundError):
            in_unit(store, users.set_user_status, user_id, False, actor=ACTOR)
        with pytest.raises(NotFoundError):
            in_unit(store, users.end_user_sessions, user_id, actor=ACTOR)


# --- disabling -------------------------------------------------------------------------------


def test_disabling_ends_sessions_and_revokes_every_token(
    store: Store, zhang: User, li: User, client_id: str
) -> None:
    sid = _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, sid, "session")
    _add_tokens(store, zhang, client_id, None, "unbound")  # e.g. from a session that ended
    other_sid = _start_session(store, li)
    _add_tokens(store, li, client_id, other_sid, "other")

    user = in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR, ip="127.0.0.1")

    assert user.status == "disabled" and not user.is_active
    assert _sessions_of(store, zhang) == []
    assert _revoked(store) == {"session": True, "unbound": True, "other": False}
    assert [sso.id for sso in _sessions_of(store, li)] == [other_sid]
    assert _audit(store, "user.disabled") == [(zhang.id, ACTOR, {"sessions_ended": 1})]


def test_enabling_again_and_setting_the_same_status_twice(store: Store, zhang: User) -> None:
    in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    # no change, nothing recorded:
    in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    assert len(_audit(store, "user.disabled")) == 1
    user = in_unit(store, users.set_user_status, zhang.id, True, actor="client:ops")
    assert user.status == "active"
    assert _audit(store, "user.enabled") == [(zhang.id, "client:ops", {})]


def test_a_disabled_person_cannot_sign_in_with_a_phone(
    store: Store, box: SecretBox, sms: ConsoleSms, zhang: User
) -> None:
    # sent while still active
    in_unit(store, otp.request_code, box, sms, PHONE, "login", attempt=ATTEMPT)
    code = sms.messages()[0].code
    in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    with pytest.raises(otp.OtpError):
        login.sign_in_with_phone(store, box, PHONE, code, attempt=ATTEMPT)
    assert _sessions_of(store, zhang) == []


def test_a_disabled_person_cannot_sign_in_through_a_link(store: Store, zhang: User) -> None:
    subject, key = subject_of(CORP_A, "zhangsan_a")
    member = Identity(provider="wecom", subject=subject, subject_key=key)
    assert in_unit(store, accounts.find_linked, member) is not None
    in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    with pytest.raises(ForbiddenError):
        in_unit(store, accounts.find_linked, member)


def test_a_session_cookie_dies_with_the_disabling(store: Store, zhang: User) -> None:
    with store() as db:
        new = sessions.start(db, zhang, ["sms"])
        db.commit()
    assert signed_in(store, new.cookie_value) is not None
    in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    assert signed_in(store, new.cookie_value) is None


# --- links -----------------------------------------------------------------------------------


def test_removing_a_link_clears_the_context_of_its_sessions(store: Store, zhang: User) -> None:
    link_a, link_b = in_unit(store, users.user_detail, zhang.id).links
    with_a = _start_session(store, zhang, link_a.id)
    with_b = _start_session(store, zhang, link_b.id)

    in_unit(store, users.remove_link, zhang.id, link_a.id, actor=ACTOR, ip="127.0.0.1")

    assert [link.id for link in in_unit(store, users.user_detail, zhang.id).links] == [link_b.id]
    contexts = {sso.id: sso.context_link_id for sso in _sessions_of(store, zhang)}
    assert contexts == {with_a: None, with_b: link_b.id}
    assert _audit(store, "link.removed") == [
        (
            zhang.id,
            ACTOR,
            {
                "link_id": link_a.id,
                "provider": "wecom",
                "subject": f"{CORP_A}/ZhangSan_A",
                "sessions_cleared": 1,
            },
        )
    ]
    # the member is free again: a new login of it is unbound
    subject, key = subject_of(CORP_A, "ZhangSan_A")
    assert in_unit(store, accounts.find_linked, Identity("wecom", subject, key)) is None


def test_a_link_of_someone_else_or_unknown_is_not_found(
    store: Store, zhang: User, li: User
) -> None:
    link = in_unit(store, users.user_detail, zhang.id).links[0]
    for user_id, link_id in [(li.id, link.id), (zhang.id, "no-such-link"), (zhang.id, "\x00")]:
        with pytest.raises(NotFoundError):
            in_unit(store, users.remove_link, user_id, link_id, actor=ACTOR)
    assert len(in_unit(store, users.user_detail, zhang.id).links) == 2
    assert _audit(store, "link.removed") == []


# --- sessions --------------------------------------------------------------------------------


def test_ending_sessions_revokes_their_tokens_and_counts(
    store: Store, zhang: User, li: User, client_id: str
) -> None:
    first, second = _start_session(store, zhang), _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, first, "first")
    _add_tokens(store, zhang, client_id, second, "second")
    other = _start_session(store, li)

    assert in_unit(store, users.end_user_sessions, zhang.id, actor=ACTOR) == 2

    assert _sessions_of(store, zhang) == []
    assert [sso.id for sso in _sessions_of(store, li)] == [other]
    assert _revoked(store) == {"first": True, "second": True}
    assert in_unit(store, users.user_detail, zhang.id).user.is_active  # still allowed to sign in
    assert in_unit(store, users.end_user_sessions, zhang.id, actor=ACTOR) == 0
    assert [detail for _, _, detail in _audit(store, "user.sessions_ended")] == [
        {"count": 2},
        {"count": 0},
    ]


def test_ending_one_session_keeps_the_others(
    store: Store, zhang: User, li: User, client_id: str
) -> None:
    first, second = _start_session(store, zhang), _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, first, "first")
    _add_tokens(store, zhang, client_id, second, "second")
    other = _start_session(store, li)

    in_unit(store, users.end_user_session, zhang.id, first, actor=ACTOR, ip="192.0.2.9")

    assert [sso.id for sso in _sessions_of(store, zhang)] == [second]
    assert _revoked(store) == {"first": True, "second": False}
    assert _audit(store, "user.session_ended") == [(zhang.id, ACTOR, {"sid": first})]
    for user, sid in [(zhang, first), (zhang, other), (li, second), (zhang, "x" * 37)]:
        with pytest.raises(NotFoundError):  # gone, someone else's, or no id at all
            in_unit(store, users.end_user_session, user.id, sid, actor=ACTOR)
    assert [sso.id for sso in _sessions_of(store, li)] == [other]
    assert len(_audit(store, "user.session_ended")) == 1


# --- creating and editing a person -------------------------------------------------------------


def test_an_admin_creates_a_person_and_is_named_in_the_trail(store: Store, li: User) -> None:
    wang = in_unit(
        store, users.create_user, " 王五 ", "133 3333 3333", "", actor=ACTOR, ip="192.0.2.9"
    )
    assert (wang.name, wang.phone, wang.email) == ("王五", "+8613333333333", None)
    assert _audit(store, "user.created")[-1] == (wang.id, ACTOR, {})
    with pytest.raises(users.PhoneTakenError) as taken:
        in_unit(store, users.create_user, "Another", "13900139000", actor=ACTOR)
    assert taken.value.user_id == li.id
    assert in_unit(store, users.count_users, None) == users.Total(2)


def test_editing_changes_only_what_differs_and_names_the_fields(
    store: Store, zhang: User, li: User
) -> None:
    with store() as db:
        users.mark_phone_verified(db, db.get(User, zhang.id))
        db.commit()
    same = in_unit(
        store,
        users.update_user,
        zhang.id,
        name=zhang.name,
        phone="138 0013 8000",  # the same number, as typed
        email="zhangsan@example.com",
        actor=ACTOR,
    )
    assert same == []
    assert _audit(store, "user.updated") == []

    changed = in_unit(
        store,
        users.update_user,
        zhang.id,
        name="张三",
        phone="+8613300133000",
        email="",
        actor=ACTOR,
        ip="192.0.2.9",
    )
    assert changed == ["name", "phone", "email"]
    user = in_unit(store, users.get_user, zhang.id)
    assert (user.name, user.phone, user.email) == ("张三", "+8613300133000", None)
    assert user.phone_verified_at is None  # nobody has shown they hold the new number
    assert _audit(store, "user.updated") == [
        (zhang.id, ACTOR, {"fields": ["name", "phone", "email"]})
    ]


@pytest.mark.parametrize(
    ("details", "error"),
    [
        ({"name": " "}, ValidationError),
        ({"phone": "12345"}, ValidationError),
        ({"email": "not an address"}, ValidationError),
        ({"phone": "13900139000"}, users.PhoneTakenError),  # 李四's
    ],
)
def test_an_edit_that_is_refused_changes_nothing(
    store: Store, zhang: User, li: User, details: dict[str, str], error: type[Exception]
) -> None:
    wanted = {"name": "New name", "phone": PHONE, "email": "new@example.com", **details}
    with pytest.raises(error):
        in_unit(store, users.update_user, zhang.id, **wanted, actor=ACTOR)
    user = in_unit(store, users.get_user, zhang.id)
    assert (user.name, user.phone, user.email) == (zhang.name, PHONE, "zhangsan@example.com")
    assert _audit(store, "user.updated") == []


def test_invalid_details_names_every_bad_field() -> None:
    assert users.invalid_details("", "123", "x@", phone_required=True) == [
        "name",
        "phone",
        "email",
    ]
    assert users.invalid_details("A", "", "", phone_required=False) == []
    assert users.invalid_details("A", "", "", phone_required=True) == ["phone"]


def test_counting_finds_what_the_search_finds(store: Store, zhang: User, li: User) -> None:
    for query in [None, "", "zhang", "li si", "nobody", "%", "\x00"]:
        assert in_unit(store, users.count_users, query) == users.Total(
            len(_search(store, query))
        ), query
    with pytest.raises(ValidationError):
        in_unit(store, users.count_users, "x" * 201)


# --- linking by hand ---------------------------------------------------------------------------


def _member(corp_id: str, userid: str) -> Identity:
    subject, key = subject_of(corp_id, userid)
    return Identity(
        provider="wecom",
        subject=subject,
        subject_key=key,
        display_name="李四",
        metadata={"corpid": corp_id, "userid": userid, "name": "李四"},
    )


def test_an_admin_links_a_member_the_directory_knows(store: Store, zhang: User, li: User) -> None:
    link = in_unit(store, users.link_member, li.id, _member(CORP_A, "lisi"), actor=ACTOR)
    assert (link.user_id, link.provider_user_id, link.provider_user_key) == (
        li.id,
        f"{CORP_A}/lisi",
        f"{CORP_A}/lisi",
    )
    assert link.link_metadata == {"corpid": CORP_A, "userid": "lisi", "name": "李四"}
    assert _audit(store, "link.created")[-1] == (li.id, ACTOR, {"link": f"{CORP_A}/lisi"})
    for owner in (li, zhang):  # a member is linked to one person only
        with pytest.raises(users.LinkTakenError) as taken:
            in_unit(store, users.link_member, owner.id, _member(CORP_A, "LiSi"), actor=ACTOR)
        assert taken.value.user_id == li.id
    with pytest.raises(NotFoundError):
        in_unit(store, users.link_member, "nobody", _member(CORP_B, "x"), actor=ACTOR)
    assert len(in_unit(store, users.user_detail, li.id).links) == 1


# --- all or nothing: a change and its audit row are one unit ---------------------------------


class AuditDown(Exception):
    """The audit trail cannot be written."""


#: The admin actions' events; others (a session started) are written as usual.
ADMIN_EVENTS = (
    "user.disabled",
    "link.removed",
    "user.sessions_ended",
    "user.session_ended",
    "user.updated",
    "user.created",
    "link.created",
)


@pytest.fixture
def audit_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing an admin action's audit row fails: the change it would record must not happen
    either."""
    record = users.audit.record

    def refuse(session: Any, event_name: str, **kwargs: Any) -> None:
        if event_name in ADMIN_EVENTS:
            raise AuditDown
        record(session, event_name, **kwargs)

    monkeypatch.setattr(users.audit, "record", refuse)


def test_no_disabling_without_its_audit_row(
    store: Store, zhang: User, client_id: str, audit_down: None
) -> None:
    sid = _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, sid, "session")
    with pytest.raises(AuditDown):
        in_unit(store, users.set_user_status, zhang.id, False, actor=ACTOR)
    assert in_unit(store, users.user_detail, zhang.id).user.status == "active"
    assert [sso.id for sso in _sessions_of(store, zhang)] == [sid]
    assert _revoked(store) == {"session": False}


def test_no_link_removal_without_its_audit_row(store: Store, zhang: User, audit_down: None) -> None:
    link_a, _ = in_unit(store, users.user_detail, zhang.id).links
    with_a = _start_session(store, zhang, link_a.id)
    with pytest.raises(AuditDown):
        in_unit(store, users.remove_link, zhang.id, link_a.id, actor=ACTOR)
    assert len(in_unit(store, users.user_detail, zhang.id).links) == 2
    assert {sso.id: sso.context_link_id for sso in _sessions_of(store, zhang)} == {
        with_a: link_a.id
    }


def test_no_sessions_end_without_their_audit_row(
    store: Store, zhang: User, client_id: str, audit_down: None
) -> None:
    sid = _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, sid, "session")
    with pytest.raises(AuditDown):
        in_unit(store, users.end_user_sessions, zhang.id, actor=ACTOR)
    assert [sso.id for sso in _sessions_of(store, zhang)] == [sid]
    assert _revoked(store) == {"session": False}


def test_no_session_ends_without_its_audit_row(
    store: Store, zhang: User, client_id: str, audit_down: None
) -> None:
    sid = _start_session(store, zhang)
    _add_tokens(store, zhang, client_id, sid, "session")
    with pytest.raises(AuditDown):
        in_unit(store, users.end_user_session, zhang.id, sid, actor=ACTOR)
    assert [sso.id for sso in _sessions_of(store, zhang)] == [sid]
    assert _revoked(store) == {"session": False}


def test_no_edit_creation_or_link_without_its_audit_row(
    store: Store, zhang: User, audit_down: None
) -> None:
    with pytest.raises(AuditDown):
        in_unit(store, users.update_user, zhang.id, name="X", phone="", email="", actor=ACTOR)
    with pytest.raises(AuditDown):
        in_unit(store, users.create_user, "王五", "+8613333333333", actor=ACTOR)
    with pytest.raises(AuditDown):
        in_unit(store, users.link_member, zhang.id, _member(CORP_A, "lisi"), actor=ACTOR)
    user = in_unit(store, users.get_user, zhang.id)
    assert (user.name, user.phone) == (zhang.name, PHONE)
    assert in_unit(store, users.count_users, None) == users.Total(1)
    assert len(in_unit(store, users.user_detail, zhang.id).links) == 2
