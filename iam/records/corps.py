"""WeCom corporations: how the admin API and `iam corps ... --json` show one (never its app
secret nor its callback settings, only whether they are set), what a connection test answers,
and the bodies that connect and change one.

The rules of each field are the service's (`iam.services.corps`): the validators below call
its checks, and the schema publishes its patterns, so the document, the API and the CLI agree.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

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


CALLBACK_DESCRIPTION = (
    "Whether the app's callback settings (Token and EncodingAESKey) are both set: WeCom's "
    "events to {issuer}/events/wecom/{corp_id} are received only then. The values are never "
    "returned."
)


PROBLEM_DESCRIPTION = (
    "One thing a connection test found wrong: `reason` is its message key (admin.corp.problem.*: "
    "corp_id, secret, agent_id, closed, ip, ip_unseen, domain, domain_unset, visible_range, busy, "
    "timeout, unavailable, refused; or admin.corp.secret_unreadable), `params` the values the "
    "message names (ip: the address WeCom saw; domain and expected: the app's trusted domain "
    "and the issuer's; api, errcode, errmsg: WeCom's refusal)."
)
ON_LOGIN_PAGE_DESCRIPTION = (
    "Whether the login page offers it: enabled, and not hidden by a failed connection test "
    "(never tested, passed its last test, or enabled explicitly since)."
)
HIDDEN_DESCRIPTION = (
    "Its last connection test failed, so the login page leaves it out until a test passes or "
    "an admin enables it explicitly (PATCH enabled: true)."
)


class CorpProblem(Record):
    __doc__ = PROBLEM_DESCRIPTION

    reason: str
    params: dict[str, str]


class Corp(Record):
    """A connected WeCom corporation and its self-built app (no secret, no callback values),
    and what its last connection test found."""

    corp_id: str = Field(
        description=CORP_ID_DESCRIPTION, json_schema_extra={"pattern": corps.CORP_ID_PATTERN}
    )
    name: str
    agent_id: int
    trust_mobile: bool
    enabled: bool
    callback: bool = Field(description=CALLBACK_DESCRIPTION)
    on_login_page: bool = Field(description=ON_LOGIN_PAGE_DESCRIPTION)
    hidden_by_test: bool = Field(description=HIDDEN_DESCRIPTION)
    last_tested_at: Timestamp | None = Field(description="When it was last tested (null: never).")
    last_test_ok: bool | None = Field(description="Whether its last test passed (null: never).")
    last_test_problems: list[CorpProblem] = Field(
        description="What its last test found wrong (empty: nothing, or never tested)."
    )
    created_at: Timestamp

    @classmethod
    def of(cls, corp: WeComCorp) -> Corp:
        """Every column but the sealed ones (the secret, the callback Token and EncodingAESKey):
        not even encrypted do they leave the server; `callback` says whether both are set."""
        return cls.from_row(
            corp,
            callback=corps.has_callback(corp),
            on_login_page=corps.shown_on_login_page(corp),
            last_test_problems=corp.last_test_problems or [],
        )


class ConnectionTest(Record):
    """What WeCom answered a live gettoken with the stored secret, then agent/get (the app's
    settings: closed, trusted domain, visible range; WeCom checks the caller's address for it).
    `problems` lists everything found wrong (empty when ok); `reason` is the first one's key,
    null when ok. A refusal has WeCom's `api`, `errcode` and `errmsg` (for 60020, `seen_ip` is
    the address WeCom saw: add it to the app's 企业可信IP); no answer in time, or none that is
    WeCom's, has errcode and errmsg null. After agent/get answered, errcode is 0 even when the
    app's settings have problems; `app_name` is the app's name in WeCom."""

    ok: bool
    errcode: int | None
    errmsg: str | None
    reason: str | None
    api: str | None = Field(description="The WeCom API that answered last (gettoken, agent/get).")
    problems: list[CorpProblem]
    seen_ip: str | None = Field(description="For 60020: the address WeCom saw the call from.")
    app_name: str | None

    @classmethod
    def of(cls, result: ConnectionResult) -> ConnectionTest:
        """Without `detail` (our own words for a failure, shown on the console page)."""
        return cls.from_row(result, problems=[problem.to_json() for problem in result.problems])


# --- what a body may hold ---------------------------------------------------------------------


SECRET_DESCRIPTION = "The app's Secret, as WeCom shows it. Stored encrypted; never returned."
CALLBACK_TOKEN_DESCRIPTION = (
    "The Token of the app's callback settings (接收事件服务器), as WeCom shows it. Stored "
    "encrypted; never returned."
)
AES_KEY_DESCRIPTION = (
    "The EncodingAESKey of the app's callback settings (接收事件服务器), as WeCom shows it. "
    "Stored encrypted; never returned."
)


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
CallbackToken = Annotated[
    Text,
    by_the_service(corps.checked_callback_token),
    _text(
        CALLBACK_TOKEN_DESCRIPTION,
        corps.MAX_CALLBACK_TOKEN,
        corps.CALLBACK_TOKEN_PATTERN,
        writeOnly=True,
    ),
]
EncodingAesKey = Annotated[
    Text,
    by_the_service(corps.checked_encoding_aes_key),
    documented(
        AES_KEY_DESCRIPTION,
        minLength=corps.AES_KEY_LENGTH,
        maxLength=corps.AES_KEY_LENGTH,
        pattern=corps.AES_KEY_PATTERN,
        writeOnly=True,
    ),
]
TrustMobile = Annotated[bool, Field(description=TRUST_MOBILE_DESCRIPTION)]
Enabled = Annotated[bool, Field(description="Whether people may sign in through it.")]


class CorpInput(Body):
    """A corporation to connect; it starts enabled. Its callback settings are given both or
    neither (they may also be set later, by a PATCH)."""

    # JSON Schema's way of saying "both or neither"; the service checks it (`add_corp`)
    model_config = ConfigDict(
        json_schema_extra={
            "dependentRequired": {
                "callback_token": ["encoding_aes_key"],
                "encoding_aes_key": ["callback_token"],
            }
        }
    )

    corp_id: CorpId
    name: Name
    agent_id: AgentId
    secret: Secret
    trust_mobile: TrustMobile = False
    callback_token: CallbackToken | Absent = None
    encoding_aes_key: EncodingAesKey | Absent = None


class CorpPatch(Body):
    """The fields to change; the others stay. `secret`, `callback_token` and `encoding_aes_key`
    replace what is stored (each may be sent alone)."""

    name: Name | Absent = None
    agent_id: AgentId | Absent = None
    secret: Secret | Absent = None
    trust_mobile: TrustMobile | Absent = None
    enabled: Enabled | Absent = None
    callback_token: CallbackToken | Absent = None
    encoding_aes_key: EncodingAesKey | Absent = None
