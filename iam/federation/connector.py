"""The seam to outside identity providers, in Dex's shape: a connector makes a login URL and turns
the provider's callback into an `Identity`. It never sees our clients, tokens, pages or database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Identity:
    """A person as an outside provider vouches for them, after one login.

    `subject` is the provider's user id as read (for WeCom `corpid/userid`); `subject_key` is the
    form that is unique (WeCom userids are case-insensitive). `phone` is an E.164-or-raw mobile
    number the provider gave, and `phone_trusted` says whether the provider may be believed about
    it (a WeCom corporation marked `trust_mobile`). `metadata` is what the link keeps and what the
    context claim and the selector are made of: corp name, name, departments, position, avatar.
    """

    provider: str
    subject: str
    subject_key: str
    display_name: str = ""
    email: str | None = None
    phone: str | None = None
    phone_trusted: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoginHints:
    """What a connector may know of the browser that starts a login.

    `want_private_info` asks the provider for the person's private data as well (for WeCom
    `snsapi_privateinfo`, a consent screen): the flows set it only for a second round, when that
    data is needed (a member not known yet, of a corporation trusted for mobiles)."""

    user_agent: str = ""
    lang: str = "en"
    want_private_info: bool = False


class ConnectorError(Exception):
    """A login at the provider did not give an identity.

    `reason` is a message-catalogue key for the page the person sees; `detail` is for the log
    and the audit trail (never shown: it may name internals); `code` is the provider's error
    code, when it gave one."""

    reason = "upstream.failed"

    def __init__(
        self, detail: str, *, reason: str | None = None, code: int | str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        if reason is not None:
            self.reason = reason


class UpstreamUnavailableError(ConnectorError):
    """The provider could not be reached or answered nonsense: timeout, HTTP error, bad JSON."""

    reason = "upstream.unavailable"


class UpstreamRefusedError(ConnectorError):
    """The provider answered with an error (for WeCom a non-zero `errcode`)."""

    reason = "upstream.refused"

    def __init__(self, detail: str, *, code: int | str, reason: str | None = None) -> None:
        super().__init__(detail, reason=reason, code=code)


class CallbackRejectedError(ConnectorError):
    """The callback itself is unusable: no code (the person declined), a bad or used code."""

    reason = "upstream.callback_rejected"


class NotAMemberError(ConnectorError):
    """The provider knows the person, but not as a member (WeCom: an `openid`, no `userid`)."""

    reason = "upstream.not_a_member"


class MemberElsewhereError(NotAMemberError):
    """The person came through this instance of the provider as a member of another instance
    (WeCom 企业互联/上下游: `CorpId/userid`). Where that instance is configured here, the flows
    ask it who `user_id` is (`look_up`), so the person is keyed as if they had signed in there."""

    reason = "upstream.member_elsewhere"

    def __init__(self, detail: str, *, connector_id: str, user_id: str) -> None:
        super().__init__(detail)
        self.connector_id = connector_id
        self.user_id = user_id


@runtime_checkable
class CallbackConnector(Protocol):
    """A provider that logs people in by redirecting to it and back (OAuth-like)."""

    provider: str

    def login_url(self, callback_url: str, state: str, hints: LoginHints) -> str:
        """Where to send the browser; the provider comes back to `callback_url` with `state`."""
        ...

    def handle_callback(self, callback_url: str, params: Mapping[str, str]) -> Identity:
        """The identity the callback's parameters prove, or a `ConnectorError`."""
        ...

    def private_round_helps(self, identity: Identity, hints: LoginHints) -> bool:
        """Whether a second login with `hints.want_private_info` (a consent screen) would give
        data this one lacked and binding could use (a trusted mobile)."""
        ...

    def look_up(self, user_id: str) -> Identity | None:
        """The member as the provider's directory shows them now; None when there is none."""
        ...
