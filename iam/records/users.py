"""Users: how the admin API and `iam users ... --json` show a person, their identity links and
their live sessions, and what a request may send (the status body, the search's parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from iam.db import models
from iam.records.base import (
    FROM_TEXT,
    Absent,
    Body,
    Record,
    Text,
    Timestamp,
    by_the_service,
    documented,
)
from iam.services import users

#: What a person or a link may be; a disabled one never signs in (or is never offered).
Status = Literal["active", "disabled"]
#: Rows per page, in the console and by default in the API; the API takes up to MAX_LIMIT.
PAGE_SIZE = 50
MAX_LIMIT = 200
#: Deep offsets are a scan; past this, narrow the search instead.
MAX_OFFSET = 100_000
#: Ids are uuid4 strings (`users.MAX_ID` characters at most).
USER_ID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid", "maxLength": users.MAX_ID}


class User(Record):
    """A person as the users list shows them: who, how to reach them, how many identities."""

    id: str = Field(
        description="the `sub` of the person's tokens",
        json_schema_extra={"format": "uuid", "maxLength": users.MAX_ID},
    )
    name: str
    phone: str | None = Field(description="E.164")
    email: str | None
    status: Status
    phone_verified_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    link_count: int = Field(ge=0)

    @classmethod
    def of(cls, user: models.User, link_count: int) -> User:
        return cls.from_row(user, link_count=link_count)


class Link(Record):
    """One identity of a person at an outside provider (a WeCom member)."""

    id: str
    provider: str = Field(examples=["wecom"])
    provider_user_id: str = Field(examples=["CORP_A/zhangsan_A"])
    status: Status
    metadata: dict[str, Any] = Field(
        description="as read from the provider: corp_name, userid, department, position, avatar..."
    )
    created_at: Timestamp
    updated_at: Timestamp
    last_login_at: Timestamp | None
    disabled_at: Timestamp | None = Field(description="when the link stopped working")
    disabled_reason: str | None = Field(
        description="why: `left` (the member left the corporation or was disabled there; a "
        "sign-in through WeCom brings the link back), `renamed` (the userid was renamed onto "
        "a link that already existed)",
        examples=["left"],
    )

    @classmethod
    def of(cls, link: models.IdentityLink) -> Link:
        return cls.from_row(link, metadata=dict(link.link_metadata or {}))


class Session(Record):
    """A live sign-in of the person (one browser), and the identity it acts as, if any."""

    id: str = Field(description="the `sid` of tokens from this session")
    started_at: Timestamp
    last_seen_at: Timestamp
    expires_at: Timestamp
    auth_time: Timestamp
    amr: list[str]
    ip: str | None
    user_agent: str | None
    context_link_id: str | None
    context: str | None = Field(description="provider_user_id of the context link")

    @classmethod
    def of(cls, sso: models.SsoSession, links: Mapping[str, models.IdentityLink]) -> Session:
        """`links` are the person's, by id: the context is named by its link's id."""
        context = links.get(sso.context_link_id) if sso.context_link_id else None
        return cls.from_row(
            sso,
            started_at=sso.created_at,
            amr=list(sso.amr or []),
            context=context.provider_user_id if context else None,
        )


class UserDetail(User):
    """A person with every link (oldest first) and their live sessions (newest first)."""

    links: list[Link]
    sessions: list[Session]

    @classmethod
    def found(cls, detail: users.UserDetail) -> UserDetail:
        by_id = {link.id: link for link in detail.links}
        return cls.from_row(
            detail.user,
            link_count=len(detail.links),
            links=[Link.of(link) for link in detail.links],
            sessions=[Session.of(sso, by_id) for sso in detail.sessions],
        )


class UserPage(Record):
    """One page of a search, and where the next one starts."""

    users: list[User]
    next_after: str | None = Field(
        description="`after` of the next page (a cursor: the same cost at any depth, and exact "
        "while people are added); null on the last one"
    )
    next_offset: int | None = Field(
        description="`offset` of the next page, for callers that page by offset; null on the "
        "last one, past the deepest offset, and when paging by `after`"
    )


class SessionsEnded(Record):
    """What signing a person out everywhere did."""

    ended: int = Field(ge=0, description="how many live sessions ended")


# --- what a request may send -----------------------------------------------------------------


class UserPatch(Body):
    """Enable or disable a person."""

    status: Status


# The bounds are inside the text's reading, so that the schema states them.
#: Rows per page.
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT), FROM_TEXT]
#: Rows skipped.
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET), FROM_TEXT]
#: Where a page starts: the `next_after` of the page before.
After = Annotated[
    Text,
    by_the_service(users.Cursor.read),
    documented(
        "the `next_after` of the page before",
        minLength=1,
        maxLength=users.MAX_CURSOR,
        pattern=f"^{users.CURSOR.pattern}$",
    ),
]


class UserQuery(Body):
    """The search's query parameters. `q` is matched literally (no wildcards),
    case-insensitively; empty means everyone. A page starts `after` the last row of the one
    before (its `next_after`) or, for older callers, at an `offset` (deep offsets cost a read of
    every row skipped; with `after`, the rows skipped after the cursor)."""

    q: Annotated[Text, Field(max_length=users.MAX_QUERY)] | Absent = None
    limit: Limit = PAGE_SIZE
    offset: Offset = 0
    after: After | Absent = None
