"""Seed a migrated PostgreSQL database with many people for `bench/scale.py` (issue #17, scale).

    IAM_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/iam_scale \\
        .venv/bin/python bench/seed_scale.py --users 1000000 --events 10000000

N users (E.164 mainland phones, unique; names mostly Chinese; some emails), two WeCom links each
in two of a few corporations (userids as corporations spell them: pinyin, numbers, mixed case),
and M audit events over the past year (sign-ins, tokens, codes sent, admin changes; ids grow
with time as the application writes them). Rows go in with COPY in batches. The secondary
indexes of the three big tables are dropped before and made again after, each from its own
definition as the migrations made it (`pg_indexes.indexdef`), so the schema measured is the
real one; constraints (primary keys, the unique phone and links) stay and are checked.

The data are deterministic for a seed (`--seed`), so two runs seed the same rows.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
from sqlalchemy.engine import make_url

from iam.clock import utcnow

CORPS = [
    ("ww1a2b3c4d5e6f7081", "华东制造有限公司"),
    ("ww2b3c4d5e6f708192", "深圳云联科技"),
    ("ww3c4d5e6f7081920a", "北方物流集团"),
    ("ww4d5e6f7081920a1b", "Acme Trading (Shanghai)"),
]
CLIENTS = ["hr-portal", "expense", "wiki", "crm", "bi-dashboard", "mail-gateway"]
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁"
    "潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦"
    "邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
PINYIN = {
    "王": "wang", "李": "li", "张": "zhang", "刘": "liu", "陈": "chen", "杨": "yang",
    "黄": "huang", "赵": "zhao", "吴": "wu", "周": "zhou", "徐": "xu", "孙": "sun",
    "马": "ma", "朱": "zhu", "胡": "hu", "郭": "guo", "何": "he", "高": "gao", "林": "lin",
    "罗": "luo", "郑": "zheng", "梁": "liang", "谢": "xie", "宋": "song", "唐": "tang",
}  # fmt: skip
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国玉兰"
    "志强丹萍鹏辉玲飞宇浩然子轩梓涵欣怡雨桐思远嘉怡俊杰文博"
)
GIVEN_PINYIN = [
    "wei", "fang", "na", "xiu", "ying", "min", "jing", "li", "qiang", "lei", "jun", "yang",
    "yong", "yan", "jie", "juan", "tao", "ming", "chao", "hua", "hao", "yu", "xin", "bo",
]  # fmt: skip
LATIN_FIRST = ["Anna", "David", "Emma", "Lucas", "Mia", "Noah", "Olivia", "Peter", "Sofia", "Tom"]
LATIN_LAST = ["Smith", "Müller", "Martin", "Rossi", "Kim", "Nguyen", "Garcia", "Brown", "Wong"]
POSITIONS = ["工程师", "经理", "销售", "会计", "司机", "仓管", "HR", "设计师", "Engineer"]
#: (event, weight, outcome, who): the mix of a year of a company's trail.
EVENT_MIX = [
    ("token.issued", 40, "success", "user"),
    ("login.succeeded", 18, "success", "user"),
    ("session.started", 12, "success", "user"),
    ("otp.sent", 8, "success", "user"),
    ("link.used", 8, "success", "user"),
    ("session.renewed", 5, "success", "user"),
    ("login.failed", 3, "failure", "user"),
    ("otp.rejected", 2, "failure", "user"),
    ("token.failed", 1.5, "failure", "client"),
    ("session.ended", 1.5, "success", "user"),
    ("token.revoked", 0.5, "success", "user"),
    ("user.updated", 0.2, "success", "admin"),
    ("admin.login", 0.1, "success", "admin"),
    ("user.disabled", 0.05, "success", "admin"),
    ("client.updated", 0.02, "success", "admin"),
    ("key.rotated", 0.001, "success", "admin"),
]
PHONE_STEP = 387_420_489  # 3**18: coprime with 10**9, spreads consecutive users' numbers
BIG_TABLES = ("users", "identity_links", "audit_events")
#: (table, trigger) that keep users.search_text (migration 0018).
SEARCH_TRIGGERS = [("users", "users_search_text"), ("identity_links", "identity_links_search_text")]


def phone_of(index: int) -> str:
    """A unique mainland number for user `index` (index < 7 * 10**9)."""
    prefix, rest = divmod(index, 7)
    return f"+861{3 + rest}{(prefix * PHONE_STEP + 13_800_138) % 10**9:09d}"


def _escape(value: object) -> str:
    """One field of COPY's text format."""
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _line(*values: object) -> str:
    return "\t".join(_escape(value) for value in values) + "\n"


class People:
    """Deterministic people: user `i` is the same person in every run of the same seed."""

    def __init__(self, seed: int, users: int, now: datetime) -> None:
        self.random = random.Random(seed)  # noqa: S311 - made-up people, no secret
        self.users = users
        self.now = now
        self.start = now - timedelta(days=3 * 365)
        self.ids: list[str] = []

    def name(self, index: int) -> tuple[str, str]:
        """(name, pinyin-ish login) of user `index`."""
        pick = self.random
        if pick.random() < 0.12:
            first, last = pick.choice(LATIN_FIRST), pick.choice(LATIN_LAST)
            return f"{first} {last}", f"{first}.{last}".lower().replace("ü", "ue")
        surname = pick.choice(SURNAMES)
        given = "".join(pick.choice(GIVEN) for _ in range(pick.choice((1, 2, 2))))
        spelled = PINYIN.get(surname, "x") + "".join(
            GIVEN_PINYIN[GIVEN.index(char) % len(GIVEN_PINYIN)] for char in given
        )
        return surname + given, spelled

    def rows(self, first: int, count: int) -> tuple[str, str]:
        """COPY text of users [first, first+count) and of their two links each."""
        users, links = io.StringIO(), io.StringIO()
        pick = self.random
        span = (self.now - self.start).total_seconds()
        for index in range(first, first + count):
            user_id = str(uuid.UUID(int=pick.getrandbits(128), version=4))
            self.ids.append(user_id)
            name, login = self.name(index)
            # Created in order over three years (an import at the start, then a steady trickle).
            created = self.start + timedelta(seconds=span * index / self.users)
            email = f"{login}{index}@example.com" if pick.random() < 0.3 else None
            phone = phone_of(index) if pick.random() < 0.97 else None
            verified = created if phone and pick.random() < 0.8 else None
            status = "disabled" if pick.random() < 0.03 else "active"
            users.write(_line(user_id, name, email, phone, verified, status, created, created))
            for corp_id, corp_name in pick.sample(CORPS, 2):
                style = pick.random()
                if style < 0.6:
                    userid = f"{login}{index}"
                elif style < 0.8:
                    userid = f"{login.title()}{index}"
                else:
                    userid = f"{100000 + index}"
                metadata = {
                    "corp_name": corp_name,
                    "userid": userid,
                    "department": [pick.randint(1, 40)],
                    "position": pick.choice(POSITIONS),
                }
                links.write(
                    _line(
                        str(uuid.UUID(int=pick.getrandbits(128), version=4)),
                        user_id,
                        "wecom",
                        f"{corp_id}/{userid}",
                        f"{corp_id}/{userid.lower()}",
                        json.dumps(metadata, ensure_ascii=False),
                        "active",
                        created,
                        created,
                        created + timedelta(days=pick.randint(0, 300)),
                        None,
                        None,
                    )
                )
        return users.getvalue(), links.getvalue()


def _events(people: People, count: int, batch: int) -> Iterator[str]:
    """COPY text of `count` events over the past year, oldest first, `batch` at a time."""
    pick = people.random
    names = [name for name, *_ in EVENT_MIX]
    weights = [weight for _, weight, *_ in EVENT_MIX]
    kinds = {name: (outcome, who) for name, _, outcome, who in EVENT_MIX}
    year = timedelta(days=365).total_seconds()
    begin = people.now - timedelta(days=365)
    # A few people sign in a lot (the active 20% make most of the trail).
    active = people.ids[: max(1, len(people.ids) // 5)]
    buffer = io.StringIO()
    for number in range(count):
        event = pick.choices(names, weights)[0]
        outcome, who = kinds[event]
        pool = active if pick.random() < 0.8 else people.ids
        user_id = pool[pick.randrange(len(pool))] if who == "user" else None
        client_id = pick.choice(CLIENTS) if event.startswith("token.") or who == "client" else None
        actor = "admin:ops" if who == "admin" else None
        ip = f"10.{pick.randint(0, 255)}.{pick.randint(0, 255)}.{pick.randint(1, 254)}"
        detail = {"amr": ["sms"]} if event == "login.succeeded" else {}
        occurred = begin + timedelta(seconds=year * number / count)
        buffer.write(
            _line(occurred, event, outcome, user_id, client_id, actor, ip, json.dumps(detail))
        )
        if (number + 1) % batch == 0:
            yield buffer.getvalue()
            buffer = io.StringIO()
    if buffer.tell():
        yield buffer.getvalue()


def _secondary_indexes(connection: psycopg.Connection) -> list[tuple[str, str]]:
    """(name, definition) of the big tables' indexes that back no constraint."""
    return list(
        connection.execute(
            """
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
            ORDER BY i.indexname
            """,
            (list(BIG_TABLES),),
        )
    )


def _copy(connection: psycopg.Connection, table: str, columns: str, text: str) -> None:
    with connection.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write(text)


def seed(url: str, users: int, events: int, *, seed: int = 17, batch: int = 50_000) -> None:
    """Seed the migrated, empty database at `url` (an SQLAlchemy URL of PostgreSQL)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
    now = utcnow().replace(microsecond=0)  # naive UTC, as the app stores times
    people = People(seed, users, now)
    started = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        taken = connection.execute("SELECT count(*) FROM users").fetchone()
        if taken and taken[0]:
            raise SystemExit("the database has users already: seed an empty, migrated one")
        indexes = _secondary_indexes(connection)
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        # users.search_text (migration 0018) is filled once at the end, not per row by the
        # triggers while the links' index is gone.
        for table, trigger in SEARCH_TRIGGERS:
            connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for corp_id, corp_name in CORPS:
            connection.execute(
                "INSERT INTO wecom_corps (corp_id, name, agent_id, secret_encrypted, trust_mobile,"
                " enabled, hidden_by_test, created_at, updated_at)"
                " VALUES (%s, %s, 1000002, 'not-a-secret', false, true, false, %s, %s)",
                (corp_id, corp_name, now, now),
            )
        for first in range(0, users, batch):
            user_text, link_text = people.rows(first, min(batch, users - first))
            with connection.transaction():
                _copy(
                    connection,
                    "users",
                    "id, name, email, phone, phone_verified_at, status, created_at, updated_at",
                    user_text,
                )
                _copy(
                    connection,
                    "identity_links",
                    "id, user_id, provider, provider_user_id, provider_user_key, metadata,"
                    " status, created_at, updated_at, last_login_at, disabled_at,"
                    " disabled_reason",
                    link_text,
                )
            _progress("users", first + min(batch, users - first), users, started)
        done = 0
        for text in _events(people, events, batch * 4):
            _copy(
                connection,
                "audit_events",
                "occurred_at, event, outcome, user_id, client_id, actor, ip, detail",
                text,
            )
            done += text.count("\n")
            _progress("events", done, events, started)
        searching = [(name, sql) for name, sql in indexes if name.startswith("ix_users_search")]
        for name, definition in [index for index in indexes if index not in searching]:
            _progress(f"index {name}", 0, 0, started)
            connection.execute(definition)
        _progress("search text", 0, 0, started)
        for table, trigger in SEARCH_TRIGGERS:
            connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
        connection.execute("UPDATE users SET search_text = ''")  # the trigger writes each
        for name, definition in searching:
            _progress(f"index {name}", 0, 0, started)
            connection.execute(definition)
        for table in BIG_TABLES:
            connection.execute(f"VACUUM ANALYZE {table}")
    _progress("done", users, users, started)


def _progress(what: str, done: int, total: int, started: float) -> None:
    print(f"[{time.monotonic() - started:7.1f}s] {what} {done:,}/{total:,}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--url", default=os.environ.get("IAM_DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.url or not args.url.startswith("postgresql"):
        parser.error("IAM_DATABASE_URL (or --url) must name a migrated PostgreSQL database")
    seed(args.url, args.users, args.events, seed=args.seed, batch=args.batch)


if __name__ == "__main__":
    main()
