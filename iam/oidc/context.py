"""Who the end user of a protocol request is (`Principal`), as Authlib's `request.user`.

(The request's unit of work, its transaction, lives in `iam.db.unit`.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iam.db.fastpath import UserView


@dataclass(frozen=True)
class Principal:
    """The signed-in person as tokens describe them: the user, how and when they signed in,
    in which SSO session, and the token family (the code) their tokens descend from."""

    user: UserView
    auth_time: datetime
    amr: tuple[str, ...]
    sid: str | None = None
    context_link_id: str | None = None
    family_id: str | None = None

    def get_user_id(self) -> str:
        return self.user.id
