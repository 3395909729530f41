"""WeCom corporations: each with its self-built app (agent id, secret encrypted at rest)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from iam.db.models import WeComCorp
from iam.db.store import Store
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.federation.wecom.connector import WeComConfig
from iam.secretbox import SecretBox
from iam.services import audit

_CORP_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$", re.ASCII)
MAX_NAME = 200
MAX_SECRET = 256


def add_corp(
    store: Store,
    box: SecretBox,
    corp_id: str,
    name: str,
    agent_id: int,
    secret: str,
    *,
    trust_mobile: bool = False,
    actor: str = "cli",
) -> WeComCorp:
    """Connect a corporation; its id must be new."""
    if not _CORP_ID.match(corp_id or ""):
        raise ValidationError("corp_id", f"Not a WeCom corp id: {corp_id!r}")
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError("name", f"A name of 1 to {MAX_NAME} characters is required.")
    if not isinstance(agent_id, int) or not 0 < agent_id < 2**63:
        raise ValidationError("agent_id", "The agent id is the app's positive number.")
    if not secret or len(secret) > MAX_SECRET or secret != secret.strip():
        raise ValidationError("secret", "The app secret is required (as WeCom shows it).")
    corp = WeComCorp(
        corp_id=corp_id,
        name=name,
        agent_id=agent_id,
        secret_encrypted=box.encrypt(secret),
        trust_mobile=trust_mobile,
        enabled=True,
    )
    taken = ConflictError(f"Corporation {corp_id} is already connected.")
    with store() as db:
        if db.get(WeComCorp, corp_id) is not None:
            raise taken
        db.add(corp)
        audit.record(db, "corp.added", actor=actor, corp_id=corp_id, trust_mobile=trust_mobile)
        try:
            db.commit()
        except IntegrityError:
            raise taken from None
    return corp


def list_corps(store: Store, *, enabled_only: bool = False) -> list[WeComCorp]:
    with store() as db:
        statement = select(WeComCorp).order_by(WeComCorp.created_at, WeComCorp.corp_id)
        if enabled_only:
            statement = statement.where(WeComCorp.enabled.is_(True))
        return list(db.scalars(statement))


def wecom_config(
    store: Store, box: SecretBox, corp_id: str, *, oauth_url: str, qr_url: str
) -> WeComConfig:
    """What the WeCom connector needs for one enabled corporation (secret decrypted)."""
    with store() as db:
        corp = db.get(WeComCorp, corp_id) if _CORP_ID.match(corp_id or "") else None
        if corp is None or not corp.enabled:
            raise NotFoundError(f"No corporation {corp_id!r}.")
        return WeComConfig(
            corp_id=corp.corp_id,
            name=corp.name,
            agent_id=corp.agent_id,
            secret=box.decrypt(corp.secret_encrypted),
            trust_mobile=corp.trust_mobile,
            oauth_url=oauth_url,
            qr_url=qr_url,
        )
