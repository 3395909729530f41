"""iam/services/audit.py: reading the trail back, newest first, filtered, paged by id."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from support.units import in_unit

from iam.db.models import AuditEvent
from iam.db.store import Store
from iam.errors import ValidationError
from iam.services import audit, users

T0 = datetime(2026, 5, 1, 8, 0, 0)
EVENTS = 65  # more than one page of 50
USERS = ("user-a", "user-b", None)
KINDS = ("login.succeeded", "login.failed", "token.issued", "loginx.odd", "a_b.c", "axb.c")


def _seed(store: Store, count: int = EVENTS) -> None:
    """`count` events, a minute apart from T0: user, app and kind cycle so each filter has
    something to find and something to leave out."""
    with store() as db:
        for index in range(count):
            db.add(
                AuditEvent(
                    occurred_at=T0 + timedelta(minutes=index),
                    event=KINDS[index % len(KINDS)],
                    outcome="success",
                    user_id=USERS[index % len(USERS)],
                    client_id="crm" if index % 2 else "lms",
                    detail={"n": index},
                )
            )
        db.commit()


def _numbers(events: list[AuditEvent]) -> list[int]:
    return [event.detail["n"] for event in events]


def _all(store: Store, **filters: Any) -> list[int]:
    """Every matching event, page after page of 7."""
    seen: list[int] = []
    before = None
    while True:
        page = in_unit(store, audit.search, limit=7, before=before, **filters)
        seen += _numbers(page.events)
        if page.next_before is None:
            return seen
        before = page.next_before


def test_newest_first_and_paged_without_gaps_or_repeats(store: Store) -> None:
    _seed(store)
    first = in_unit(store, audit.search)
    assert _numbers(first.events) == list(range(EVENTS - 1, EVENTS - 51, -1))
    assert first.next_before == first.events[-1].id
    second = in_unit(store, audit.search, before=first.next_before)
    assert _numbers(second.events) == list(range(EVENTS - 51, -1, -1))
    assert second.next_before is None
    assert _all(store) == list(range(EVENTS - 1, -1, -1))


def test_an_exactly_full_last_page_has_no_next(store: Store) -> None:
    _seed(store, 10)
    page = in_unit(store, audit.search, limit=10)
    assert (len(page.events), page.next_before) == (10, None)


def test_new_events_do_not_shift_the_pages(store: Store) -> None:
    _seed(store, 20)
    first = in_unit(store, audit.search, limit=10)
    _seed(store, 5)  # arrive while the admin reads
    second = in_unit(store, audit.search, limit=10, before=first.next_before)
    assert _numbers(second.events) == list(range(9, -1, -1))


def test_search_returns_the_events_of_the_page(store: Store) -> None:
    _seed(store, 5)
    assert _numbers(in_unit(store, audit.search, limit=2).events) == [4, 3]


FILTERS = [
    ({"user_id": "user-a"}, lambda kind, user, app: user == "user-a"),
    ({"client_id": "crm"}, lambda kind, user, app: app == "crm"),
    ({"event": "login.failed"}, lambda kind, user, app: kind == "login.failed"),
    ({"event": "login."}, lambda kind, user, app: kind.startswith("login.")),
    ({"event": "a_b."}, lambda kind, user, app: kind == "a_b.c"),  # _ is no wildcard
    ({"event": "login"}, lambda kind, user, app: False),  # a name is exact
    (
        {"user_id": "user-b", "event": "login.", "client_id": "lms"},
        lambda kind, user, app: user == "user-b" and kind.startswith("login.") and app == "lms",
    ),
]


def test_filters(store: Store) -> None:
    _seed(store)
    for filters, expected in FILTERS:
        wanted = [
            n
            for n in range(EVENTS - 1, -1, -1)
            if expected(KINDS[n % len(KINDS)], USERS[n % len(USERS)], "crm" if n % 2 else "lms")
        ]
        assert _all(store, **filters) == wanted, filters


def test_since_is_inclusive_and_until_exclusive(store: Store) -> None:
    _seed(store, 10)
    since, until = T0 + timedelta(minutes=3), T0 + timedelta(minutes=6)
    assert _all(store, since=since, until=until) == [5, 4, 3]
    assert _all(store, since=T0 + timedelta(minutes=8)) == [9, 8]
    assert _all(store, until=T0 + timedelta(minutes=1)) == [0]
    assert _all(store, since=until, until=since) == []


def test_a_nul_in_a_filter_finds_nothing(store: Store) -> None:
    _seed(store, 3)
    for name in ("user_id", "client_id", "event"):
        assert in_unit(store, audit.search, **{name: "user-a\x00"}).events == []


def test_out_of_range_paging_is_refused(store: Store) -> None:
    for options, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"before": 0}, "before"),
        ({"before": 2**63}, "before"),
    ]:
        with pytest.raises(ValidationError) as refused:
            in_unit(store, audit.search, **options)
        assert refused.value.field == field


def test_the_trail_stays_append_only(store: Store) -> None:
    _seed(store, 1)
    with store() as db, pytest.raises(DBAPIError):
        db.execute(text("UPDATE audit_events SET outcome = 'forged'"))


def test_the_person_filter_matches_names_and_phones_literally(store: Store) -> None:
    """`%` and `_` are letters in a name, not patterns; a NUL finds nothing (PostgreSQL would
    refuse it); a number finds its owner however it is written, and by its last digits."""
    percent = in_unit(store, users.create_user, "100% 王_五", "+8613700137000")
    other = in_unit(store, users.create_user, "100 王A五", "+8613800138000")
    with store() as db:
        for person in (percent, other):
            audit.record(db.connection(), "session.started", user_id=person.id)
        db.commit()

    def found(person: str) -> set[str]:
        page = in_unit(store, audit.search, event="session.started", person=person)
        return {event.user_id for event in page.events if event.user_id}

    assert found("0%") == {percent.id}
    assert found("王_") == {percent.id}
    assert found("\x00") == set()
    assert found("１３７ ００１３ ７０００") == {percent.id}  # full-width, as input methods type
    assert found("38000") == {other.id}
    assert found("000") == set()  # too few digits to mean a number, in no name
    assert found("8000") == {other.id}


def test_names_are_read_in_one_query_a_kind(store: Store) -> None:
    person = in_unit(store, users.create_user, "王五", "+8613700137000")
    events = [
        AuditEvent(event="x.y", user_id=person.id, client_id="gone", detail={"corp_id": "ww1"}),
        AuditEvent(event="x.y", user_id="gone", detail={"corp_id": 7}),
    ]
    names = in_unit(store, audit.names_of, events)
    assert names == audit.Names(users={person.id: "王五"}, clients={}, corps={})
    assert in_unit(store, audit.names_of, []) == audit.Names()


# --- time ranges: an id range first (issue #17) ---------------------------------------------

#: Seconds after T0 of events in id order: a minute apart, except some written a little out of
#: order (a later clock reading inserted first, by less than `audit.CLOCK_MARGIN`), and a gap
#: of two hours after the last of the first ten.
DISORDERED = [
    0, 60, 150, 120, 180, 240, 290, 300, 360, 420,  # 150 before 120; 290 a hair before 300
    7_620, 7_680, 7_740, 7_800, 7_860, 7_910, 7_880, 7_900, 7_980, 8_040,  # 7910 before 7880
]


def _seed_at(store: Store, seconds: list[int]) -> None:
    with store() as db:
        for index, second in enumerate(seconds):
            db.add(
                AuditEvent(
                    occurred_at=T0 + timedelta(seconds=second),
                    event="x.y",
                    user_id=USERS[index % len(USERS)],
                    detail={"n": index},
                )
            )
        db.commit()


def _in_range(since: int | None, until: int | None, user_id: str | None = None) -> list[int]:
    """What a range must return, worked out by hand: newest (highest id) first."""
    return [
        n
        for n in range(len(DISORDERED) - 1, -1, -1)
        if (since is None or DISORDERED[n] >= since)
        and (until is None or DISORDERED[n] < until)
        and (user_id is None or USERS[n % len(USERS)] == user_id)
    ]


def _at(second: int | None) -> datetime | None:
    return None if second is None else T0 + timedelta(seconds=second)


def test_a_time_range_finds_exactly_its_events_even_out_of_id_order(store: Store) -> None:
    """Every boundary on, just before and just after an event (and in the gap), alone and with
    a person: the id range only narrows the search, the times decide."""
    _seed_at(store, DISORDERED)
    edges = sorted({e + d for e in DISORDERED for d in (-1, 0, 1)} | {-3_600, 3_000, 99_999})
    for since in [None, *edges[::4]]:
        for until in [None, *edges[2::4]]:
            assert _all(store, since=_at(since), until=_at(until)) == _in_range(since, until), (
                since,
                until,
            )
    for since, until in [(120, 7_900), (150, 7_880), (121, 7_881), (None, 7_890), (130, None)]:
        got = _all(store, since=_at(since), until=_at(until), user_id="user-b")
        assert got == _in_range(since, until, "user-b"), (since, until)


def test_paging_a_time_range_loses_and_repeats_nothing(store: Store) -> None:
    seconds = [second + copy * 10_000 for copy in range(4) for second in DISORDERED]
    _seed_at(store, seconds)  # 80 events, each ten a little out of order: pages of 7, and of 50
    since, until = _at(150), _at(37_900)
    every = [n for n in range(79, -1, -1) if 150 <= seconds[n] < 37_900]
    assert 50 < len(every) < 80
    seen: list[int] = []
    before = None
    for _ in range(len(every)):
        page = in_unit(store, audit.search, limit=7, before=before, since=since, until=until)
        seen += _numbers(page.events)
        if page.next_before is None:
            break
        assert page.next_before == page.events[-1].id
        before = page.next_before
    assert seen == every
    first = in_unit(store, audit.search, since=since, until=until)
    assert _numbers(first.events) == every[:50]
    rest = in_unit(store, audit.search, since=since, until=until, before=first.next_before)
    assert (_numbers(rest.events), rest.next_before) == (every[50:], None)


def test_an_empty_time_range_is_an_empty_page(store: Store) -> None:
    """Nothing in the range: an empty last page; when the range or its id range holds nothing,
    without the page's query."""
    _seed_at(store, DISORDERED)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        for since, until in [(300, 300), (7_000, 60), (1_000, 5_000), (50_000, 60_000)]:
            statements.clear()
            page = in_unit(store, audit.search, since=_at(since), until=_at(until))
            assert (page.events, page.next_before) == ([], None), (since, until)
            pages = [s for s in statements if "ORDER BY audit_events.id DESC" in s]
            if since >= until or since == 1_000:  # nothing to read, or ids 10 and 11 around it
                assert pages == [], (since, until, statements)
        statements.clear()
        last = in_unit(store, audit.search, since=_at(0), until=_at(7_700), before=1)
        assert last.events == []
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert _all(store, since=_at(-7_200), until=_at(-60)) == []
    assert _all(store, since=_at(9_000)) == []
    assert _all(store, until=_at(-1)) == []


def test_the_ends_of_the_calendar_are_ranges_too(store: Store) -> None:
    """A range from or to the first or last instant (what the console clamps a far date to)
    leaves room for no margin: it is open on that side."""
    _seed_at(store, DISORDERED[:5])
    assert _all(store, since=datetime.min, until=datetime.max) == [4, 3, 2, 1, 0]
    assert _all(store, since=datetime.min, until=_at(150)) == [3, 1, 0]
    assert _all(store, since=_at(150), until=datetime.max) == [4, 2]
    assert _all(store, since=datetime.max) == []
    assert _all(store, until=datetime.min) == []
