"""WeCom as a callback connector: a login URL (in-WeCom OAuth or QR), and a callback turned into
an `Identity` through the server API (auth/getuserinfo, user/get, auth/getuserdetail and
department/get)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from iam.federation.connector import (
    CallbackConnector,
    CallbackRejectedError,
    Identity,
    LoginHints,
    MemberElsewhereError,
    NotAMemberError,
    UpstreamUnavailableError,
)
from iam.federation.wecom.client import (
    WeComApiError,
    WeComApp,
    WeComClient,
    WeComUnavailableError,
)

log = logging.getLogger("iam.wecom")

PROVIDER = "wecom"
#: The WeCom client's user agent carries this token (`wxwork/4.1.x`): log in inside the app.
IN_APP_MARKER = "wxwork"
#: Department names read for one member at most (each is one department/get call).
MAX_DEPARTMENTS = 10
#: State values WeCom accepts: `[a-zA-Z0-9]`, up to 128 bytes (wecom-api.md 2.1).
MAX_STATE = 128
#: auth/getuserinfo's answer to a code that is unknown, used, or older than 5 minutes.
INVALID_CODE = 40029
#: user/get's answer for a userid the corporation does not have (left, deleted, renamed).
NO_SUCH_MEMBER = 60111
#: user/get's `status` of a member who may not sign in: 2 disabled, 5 left the corporation.
GONE_STATUSES = (2, 5)


def subject_of(corp_id: str, userid: str) -> tuple[str, str]:
    """(subject as WeCom spells it, the unique key): WeCom userids are case-insensitive."""
    return f"{corp_id}/{userid}", f"{corp_id}/{userid.lower()}"


@dataclass(frozen=True)
class WeComConfig:
    """One corporation's self-built app, as stored (secret decrypted) plus where WeCom lives."""

    corp_id: str
    name: str
    agent_id: int
    secret: str
    trust_mobile: bool
    oauth_url: str
    qr_url: str

    def open(self, client: WeComClient) -> WeComConnector:
        return WeComConnector(self, client)


class WeComConnector:
    """Logs a member of one corporation in; knows nothing of our clients, tokens or database."""

    provider = PROVIDER

    def __init__(self, config: WeComConfig, client: WeComClient) -> None:
        self.config = config
        self.client = client
        self.app = WeComApp(config.corp_id, config.agent_id, config.secret)

    def login_url(self, callback_url: str, state: str, hints: LoginHints) -> str:
        """Inside the WeCom client: OAuth with `snsapi_base` (silent); with `snsapi_privateinfo`
        (a consent screen, and a user_ticket so the mobile can be read) only for a corporation
        trusted for mobiles, whose mobile binds a new member. In any other browser: the QR-code
        login page."""
        if len(state) > MAX_STATE or not (state.isascii() and state.isalnum()):
            raise ValueError("a WeCom state is at most 128 letters and digits")
        if IN_APP_MARKER in hints.user_agent.lower():
            query = urlencode(
                {
                    "appid": self.config.corp_id,
                    "redirect_uri": callback_url,
                    "response_type": "code",
                    "scope": self._scope(hints),
                    "state": state,
                    "agentid": str(self.config.agent_id),
                }
            )
            return f"{self.config.oauth_url}?{query}#wechat_redirect"
        query = urlencode(
            {
                "login_type": "CorpApp",
                "appid": self.config.corp_id,
                "agentid": str(self.config.agent_id),
                "redirect_uri": callback_url,
                "state": state,
                "lang": "zh" if hints.lang.startswith("zh") else "en",
            }
        )
        return f"{self.config.qr_url}?{query}"

    def _scope(self, hints: LoginHints) -> str:
        """`snsapi_base` (silent) unless the flows ask for private info (a second, consented
        round for a member we do not know yet) and the corporation is trusted for mobiles:
        nowhere else is the mobile of use."""
        private = hints.want_private_info and self.config.trust_mobile
        return "snsapi_privateinfo" if private else "snsapi_base"

    def private_round_helps(self, identity: Identity, hints: LoginHints) -> bool:
        """A consented round gives a mobile only inside the WeCom client (the QR login has no
        `snsapi_privateinfo`), only for a corporation trusted for mobiles, only for a member of
        this corporation (上下游 members come with no user_ticket), and only when this round
        gave none."""
        return (
            IN_APP_MARKER in hints.user_agent.lower()
            and self.config.trust_mobile
            and identity.metadata.get("corpid") == self.config.corp_id
            and not identity.phone
        )

    def handle_callback(self, callback_url: str, params: Mapping[str, str]) -> Identity:
        code = params.get("code") or ""
        if not code:
            raise CallbackRejectedError("WeCom came back without a code", reason="wecom.declined")
        if len(code) > 512:
            raise CallbackRejectedError("the WeCom code is longer than 512 bytes")
        try:
            info = self.client.get_user_info(self.app, code)
        except WeComApiError as error:
            if error.code == INVALID_CODE:  # bad, used or older than 5 minutes
                raise CallbackRejectedError(
                    error.detail, reason=error.reason, code=error.code
                ) from error
            raise
        userid = str(info.get("userid") or "")
        if not userid:
            if info.get("openid"):
                raise NotAMemberError(f"not a member of {self.config.corp_id} (an openid)")
            raise UpstreamUnavailableError("auth/getuserinfo answered neither userid nor openid")
        if "/" in userid:  # 企业互联/上下游: a member of another corporation, `CorpId/userid`
            corp_id, _, member_id = userid.partition("/")
            raise MemberElsewhereError(
                f"{userid} came through {self.config.corp_id} as a member of {corp_id}",
                connector_id=corp_id,
                user_id=member_id,
            )
        member = self.client.get_user(self.app, userid)
        detail = self._private_info(userid, str(info.get("user_ticket") or ""))
        return self._identity(str(member.get("userid") or userid), member, detail)

    def _private_info(self, userid: str, ticket: str) -> Mapping[str, Any]:
        """auth/getuserdetail, only with a ticket and only where the mobile is of use (a
        `trust_mobile` corporation). Its failure is "no mobile" (binding goes by SMS), not a
        failed login."""
        if not ticket or not self.config.trust_mobile:
            return {}
        try:
            return self.client.get_user_detail(self.app, ticket)
        except (WeComApiError, WeComUnavailableError) as error:
            log.warning(
                "WeCom getuserdetail failed for %s/%s, going on without the mobile: %s",
                self.config.corp_id,
                userid,
                error.detail,
            )
            return {}

    def look_up(self, userid: str) -> Identity | None:
        """The member as the directory shows them now (no mobile or email: user/get leaves
        them out for apps made after 2022-06-20); None when the corporation has no such member
        any more, or has disabled them, or they left. Other WeCom errors raise."""
        try:
            member = self.client.get_user(self.app, userid)
        except WeComApiError as error:
            if error.code == NO_SUCH_MEMBER:
                return None
            raise
        if int(member.get("status") or 1) in GONE_STATUSES:
            return None
        return self._identity(str(member.get("userid") or userid), member, {})

    def _identity(
        self, userid: str, member: Mapping[str, Any], detail: Mapping[str, Any]
    ) -> Identity:
        subject, key = subject_of(self.config.corp_id, userid)
        department_ids = [int(d) for d in member.get("department") or []][:MAX_DEPARTMENTS]
        mobile = str(detail.get("mobile") or member.get("mobile") or "") or None
        email = str(detail.get("email") or member.get("email") or "") or None
        name = str(member.get("name") or userid)
        return Identity(
            provider=PROVIDER,
            subject=subject,
            subject_key=key,
            display_name=name,
            email=email,
            phone=mobile,
            phone_trusted=self.config.trust_mobile,
            metadata={
                "provider": PROVIDER,
                "corpid": self.config.corp_id,
                "corp_name": self.config.name,
                "userid": userid,
                "name": name,
                "department": self._department_names(department_ids),
                "department_ids": department_ids,
                "position": str(member.get("position") or ""),
                # the account selector shows it (templates/flows/select.html)
                "avatar": str(detail.get("avatar") or member.get("avatar") or ""),
            },
        )

    def _department_names(self, department_ids: list[int]) -> list[str]:
        """Names where the app may read them; the id where WeCom says no privilege (60011)."""
        names = []
        for department_id in department_ids:
            try:
                names.append(self.client.department_name(self.app, department_id))
            except WeComApiError as error:
                if error.code not in (60011, 60003):
                    raise
                names.append(str(department_id))
        return names


if TYPE_CHECKING:
    _: type[CallbackConnector] = WeComConnector
