"""WeCom corporations: how the admin API and `iam corps ... --json` show one (never its app
secret), what a connection test answers, and the bodies that connect and change one.

The rules of each field are the service's (`iam.services.corps`): the validators below call
its checks, and the schema publishes its patterns, so the document, the API and the CLI agree.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from iam.db.models import WeComCorp
from iam.records.base import (
    Absent,
    Body,
    Record,
    Text,
    Timestamp,
    WholeNumber,
    by_the_service,
    documented,
)
from iam.services import corps
from iam.services.corps import ConnectionResult

CORP_ID_DESCRIPTION = "The WeCom corp id (letters, digits, `_` and `-`)."
TRUST_MOBILE_DESCRIPTION = (
    "A mobile number read from this corporation's directory may bind a member without an SMS "
    "code, to a new person or to the person with that number who has no active identity in "
    "another corporation (or at another provider); anyone who has one still proves the number "
    "by SMS code at /bind (audited as link.trusted_mobile_refused)."
)


class Corp(Record):
    """A connected WeCom corporation and its self-built app (no secret)."""

    corp_id: str = Field(
        description=CORP_ID_DESCRIPTION, json_schema_extra={"pattern": corps.CORP_ID_PATTERN}
    )
    name: str
    agent_id: int
    trust_mobile: bool
    enabled: bool
    created_at: Timestamp

    @classmethod
    def of(cls, corp: WeComCorp) -> Corp:
        """Every column but the secret: not even encrypted does it leave the server."""
        return cls.from_row(corp)


class ConnectionTest(Record):
    """What WeCom answered a live gettoken with the stored secret. A refusal has WeCom's
    errcode and errmsg; no answer in time, or none that is WeCom's, has errcode and errmsg
    null. `reason` is our message key (e.g. wecom.misconfigured, wecom.busy, wecom.timeout,
    wecom.unavailable), null when ok."""

    ok: bool
    errcode: int | None
    errmsg: str | None
    reason: str | None

    @classmethod
    def of(cls, result: ConnectionResult) -> ConnectionTest:
        """Without `detail` (our own words for a failure, shown on the console page)."""
        return cls.from_row(result)


# --- what a body may hold ---------------------------------------------------------------------


SECRET_DESCRIPTION = "The app's Secret, as WeCom shows it. Stored encrypted; never returned."


def _text(description: str, most: int, pattern: str, **keywords: Any) -> Any:
    """A text field's rule as the schema states it: 1 to `most` characters in `pattern`."""
    return documented(description, minLength=1, maxLength=most, pattern=pattern, **keywords)


CorpId = Annotated[
    Text,
    by_the_service(corps.checked_corp_id),
    documented(CORP_ID_DESCRIPTION, pattern=corps.CORP_ID_PATTERN),
]
Name = Annotated[
    Text,
    by_the_service(corps.checked_name),
    _text(
        "Shown to people signing in; surrounding whitespace is dropped.",
        corps.MAX_NAME,
        corps.NAME_PATTERN,
    ),
]
AgentId = Annotated[
    WholeNumber,
    by_the_service(corps.checked_agent_id),
    documented("The self-built app's AgentId.", minimum=1, maximum=corps.MAX_AGENT_ID),
]
Secret = Annotated[
    Text,
    by_the_service(corps.checked_secret),
    _text(SECRET_DESCRIPTION, corps.MAX_SECRET, corps.SECRET_PATTERN, writeOnly=True),
]
TrustMobile = Annotated[bool, Field(description=TRUST_MOBILE_DESCRIPTION)]
Enabled = Annotated[bool, Field(description="Whether people may sign in through it.")]


class CorpInput(Body):
    """A corporation to connect; it starts enabled."""

    corp_id: CorpId
    name: Name
    agent_id: AgentId
    secret: Secret
    trust_mobile: TrustMobile = False


class CorpPatch(Body):
    """The fields to change; the others stay. `secret` replaces the secret."""

    name: Name | Absent = None
    agent_id: AgentId | Absent = None
    secret: Secret | Absent = None
    trust_mobile: TrustMobile | Absent = None
    enabled: Enabled | Absent = None
