"""WeCom corporations: each with its self-built app (agent id, secret encrypted at rest) and
the app's callback settings ("接收事件服务器": Token and EncodingAESKey, encrypted at rest too).

Every function that reads or writes takes the caller's session (`db`) and commits nothing: the
caller runs one unit of work per use case (`iam.db.unit`). The one exception is
`test_connection`, which calls WeCom between two units of its own (see there).

The checks below are the rules of a corporation's fields, for every way in (the admin API's
records call them too, and publish the patterns in the OpenAPI document).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.db.models import WeComCorp
from iam.db.store import Store
from iam.db.unit import one_unit
from iam.errors import ConflictError, NotFoundError, ValidationError
from iam.federation.wecom.client import (
    WeComApiError,
    WeComApp,
    WeComClient,
    WeComUnavailableError,
)
from iam.federation.wecom.connector import WeComConfig
from iam.secretbox import SecretBox, SecretBoxError
from iam.services import audit
from iam.services.rows import found

MAX_NAME = 200
MAX_SECRET = 256
MAX_AGENT_ID = 2**63 - 1
#: The rules below are written so that the very same patterns hold in Python and in the admin
#: API's JSON Schema (ECMA-262 regexes): explicit character classes, `\uXXXX` escapes.
CORP_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
#: Whitespace as ECMA-262's `\s` knows it: what is stripped from around a name.
_SPACES = "".join(
    [
        "\t\n\v\f\r \xa0\u1680",
        *map(chr, range(0x2000, 0x200B)),
        "\u2028\u2029\u202f\u205f\u3000\ufeff",
    ]
)
_SPACE_CLASS = "".join(f"\\u{ord(char):04x}" for char in _SPACES)
_CONTROL_CLASS = r"\u0000-\u001f\u007f-\u009f"
#: A name: no control characters, and something besides whitespace.
NAME_PATTERN = rf"^[^{_CONTROL_CLASS}]*[^{_CONTROL_CLASS}{_SPACE_CLASS}][^{_CONTROL_CLASS}]*$"
#: An app secret as WeCom shows it: visible ASCII, no spaces.
SECRET_PATTERN = rf"^[!-~]{{1,{MAX_SECRET}}}$"
MAX_CALLBACK_TOKEN = 32
AES_KEY_LENGTH = 43
#: The callback Token of WeCom's "接收事件服务器" settings: 1 to 32 ASCII letters and digits.
CALLBACK_TOKEN_PATTERN = rf"^[A-Za-z0-9]{{1,{MAX_CALLBACK_TOKEN}}}$"
#: The EncodingAESKey beside it: exactly 43 ASCII letters and digits (a 32-byte AES key in
#: base64 without its `=`).
AES_KEY_PATTERN = rf"^[A-Za-z0-9]{{{AES_KEY_LENGTH}}}$"
_CORP_ID = re.compile(CORP_ID_PATTERN[1:-1], re.ASCII)
_NAME = re.compile(NAME_PATTERN[1:-1])
_SECRET = re.compile(SECRET_PATTERN[1:-1])
_CALLBACK_TOKEN = re.compile(CALLBACK_TOKEN_PATTERN[1:-1])
_AES_KEY = re.compile(AES_KEY_PATTERN[1:-1])


def is_corp_id(value: object) -> bool:
    return isinstance(value, str) and _CORP_ID.fullmatch(value) is not None


def checked_corp_id(corp_id: object) -> str:
    if not is_corp_id(corp_id):
        raise ValidationError("corp_id", f"Not a WeCom corp id: {corp_id!r}")
    return str(corp_id)


def checked_name(name: object) -> str:
    """The name without surrounding whitespace; 1 to MAX_NAME characters as given."""
    if not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise ValidationError(
            "name", f"A name of 1 to {MAX_NAME} characters (no control characters) is required."
        )
    return name.strip(_SPACES)


def checked_agent_id(agent_id: object) -> int:
    if isinstance(agent_id, bool) or not isinstance(agent_id, int):
        raise ValidationError("agent_id", "The agent id is the app's positive number.")
    if not 0 < agent_id <= MAX_AGENT_ID:
        raise ValidationError("agent_id", "The agent id is the app's positive number.")
    return agent_id


def _as_wecom_shows_it(value: object, pattern: re.Pattern[str], field: str, rule: str) -> str:
    """A value pasted from WeCom's admin console, in its exact form; else a `ValidationError`
    naming the field and the rule."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(field, f"{rule} (as WeCom shows it).")
    return value


def checked_secret(secret: object) -> str:
    return _as_wecom_shows_it(secret, _SECRET, "secret", "The app secret is required")


def checked_callback_token(token: object) -> str:
    rule = f"The callback Token is 1 to {MAX_CALLBACK_TOKEN} letters and digits"
    return _as_wecom_shows_it(token, _CALLBACK_TOKEN, "callback_token", rule)


def checked_encoding_aes_key(key: object) -> str:
    rule = f"The EncodingAESKey is exactly {AES_KEY_LENGTH} letters and digits"
    return _as_wecom_shows_it(key, _AES_KEY, "encoding_aes_key", rule)


def checked_callback_pair(token: object, key: object) -> tuple[str, str] | None:
    """Both callback settings, or neither (None): a corporation is connected with both or
    without any. Each is then checked by its own rule."""
    if token is None and key is None:
        return None
    if key is None:
        raise ValidationError(
            "encoding_aes_key", "The EncodingAESKey is required with the callback Token."
        )
    if token is None:
        raise ValidationError(
            "callback_token", "The callback Token is required with the EncodingAESKey."
        )
    return checked_callback_token(token), checked_encoding_aes_key(key)


def _checked_flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"{field} is true or false.")
    return value


def has_callback(corp: WeComCorp) -> bool:
    """Whether both callback settings are stored (WeCom's events can then be received)."""
    return corp.callback_token_encrypted is not None and corp.encoding_aes_key_encrypted is not None


def add_corp(
    db: Session,
    box: SecretBox,
    corp_id: str,
    name: str,
    agent_id: int,
    secret: str,
    *,
    trust_mobile: bool = False,
    callback_token: str | None = None,
    encoding_aes_key: str | None = None,
    actor: str = "cli",
) -> WeComCorp:
    """Connect a corporation, in the caller's transaction; its id must be new. The row is
    written at once (flushed), so a corporation connected meanwhile by someone else is a
    `ConflictError` here, not an error at the caller's commit. The callback settings are given
    both or neither; like the secret they are stored encrypted, and audited only as set or not."""
    corp_id = checked_corp_id(corp_id)
    name = checked_name(name)
    agent_id = checked_agent_id(agent_id)
    secret = checked_secret(secret)
    trust_mobile = _checked_flag("trust_mobile", trust_mobile)
    callback = checked_callback_pair(callback_token, encoding_aes_key)
    taken = ConflictError(f"Corporation {corp_id} is already connected.")
    if db.get(WeComCorp, corp_id) is not None:
        raise taken
    corp = WeComCorp(
        corp_id=corp_id,
        name=name,
        agent_id=agent_id,
        secret_encrypted=box.encrypt(secret),
        callback_token_encrypted=None if callback is None else box.encrypt(callback[0]),
        encoding_aes_key_encrypted=None if callback is None else box.encrypt(callback[1]),
        trust_mobile=trust_mobile,
        enabled=True,
    )
    db.add(corp)
    try:
        db.flush()
    except IntegrityError:
        raise taken from None
    audit.record(
        db.connection(),
        "corp.added",
        actor=actor,
        corp_id=corp_id,
        trust_mobile=trust_mobile,
        callback=callback is not None,
    )
    return corp


def get_corp(db: Session, corp_id: str) -> WeComCorp:
    """One corporation, enabled or not; `NotFoundError` otherwise."""
    if not is_corp_id(corp_id):  # no such key can exist (and PostgreSQL refuses some)
        raise NotFoundError(f"No corporation {corp_id!r}.")
    return found(db, WeComCorp, corp_id, "corporation")


def update_corp(
    db: Session,
    box: SecretBox,
    corp_id: str,
    *,
    actor: str,
    name: str | None = None,
    agent_id: int | None = None,
    secret: str | None = None,
    trust_mobile: bool | None = None,
    enabled: bool | None = None,
    callback_token: str | None = None,
    encoding_aes_key: str | None = None,
) -> WeComCorp:
    """Change what is given (None: keep), in the caller's transaction. Every value is checked
    before anything changes, so a bad one beside good ones changes nothing. The secret, the
    callback Token and the EncodingAESKey are replaced only when a new one is given (each may
    be given alone), because they are never read back; the audit row names them, never their
    values. Logins see the change at once: connectors are opened from the stored row on each
    login, and the token cache is keyed by a hash of the secret."""
    wanted: dict[str, object] = {}
    if name is not None:
        wanted["name"] = checked_name(name)
    if agent_id is not None:
        wanted["agent_id"] = checked_agent_id(agent_id)
    if trust_mobile is not None:
        wanted["trust_mobile"] = _checked_flag("trust_mobile", trust_mobile)
    if enabled is not None:
        wanted["enabled"] = _checked_flag("enabled", enabled)
    # the values kept encrypted, by field: replaced when given, never compared
    sealed: dict[str, str] = {}
    if secret is not None:
        sealed["secret"] = checked_secret(secret)
    if callback_token is not None:
        sealed["callback_token"] = checked_callback_token(callback_token)
    if encoding_aes_key is not None:
        sealed["encoding_aes_key"] = checked_encoding_aes_key(encoding_aes_key)
    corp = get_corp(db, corp_id)
    changed = sorted(key for key, value in wanted.items() if getattr(corp, key) != value)
    for key in changed:
        setattr(corp, key, wanted[key])
    for key, value in sealed.items():
        setattr(corp, f"{key}_encrypted", box.encrypt(value))
        changed.append(key)
    if changed:
        audit.record(
            db.connection(),
            "corp.updated",
            actor=actor,
            corp_id=corp.corp_id,
            changed=changed,
            enabled=corp.enabled,
            trust_mobile=corp.trust_mobile,
            callback=has_callback(corp),
        )
    return corp


def list_corps(db: Session, *, enabled_only: bool = False) -> list[WeComCorp]:
    """Oldest first."""
    statement = select(WeComCorp).order_by(WeComCorp.created_at, WeComCorp.corp_id)
    if enabled_only:
        statement = statement.where(WeComCorp.enabled.is_(True))
    return list(db.scalars(statement))


def wecom_config(
    db: Session, box: SecretBox, corp_id: str, *, oauth_url: str, qr_url: str
) -> WeComConfig:
    """What the WeCom connector needs for one enabled corporation (secret decrypted)."""
    corp = db.get(WeComCorp, corp_id) if is_corp_id(corp_id) else None
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


@dataclass(frozen=True)
class CallbackSettings:
    """What the event receiver needs to check and decrypt one corporation's WeCom callbacks
    (decrypted). Its repr leaves the two values out, so logging it shows neither."""

    corp_id: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)


def callback_settings(db: Session, box: SecretBox, corp_id: str) -> CallbackSettings | None:
    """The callback settings of one enabled corporation; None when it is unknown, disabled, or
    has not both of them. A stored value that no longer decrypts (IAM_SECRET_KEY was changed)
    raises `SecretBoxError`."""
    corp = db.get(WeComCorp, corp_id) if is_corp_id(corp_id) else None
    if corp is None or not corp.enabled:
        return None
    token, key = corp.callback_token_encrypted, corp.encoding_aes_key_encrypted
    if token is None or key is None:
        return None
    return CallbackSettings(corp.corp_id, box.decrypt(token), box.decrypt(key))


@dataclass(frozen=True)
class ConnectionResult:
    """What WeCom answered a live gettoken for one corporation's app.

    - ok: `errcode` 0, `expires_in` the new token's lifetime;
    - WeCom refused: its `errcode` and `errmsg` (secrets scrubbed), and our `reason` key;
    - no usable answer (timeout, unreachable, not WeCom JSON): `errcode` and `errmsg` are None,
      `reason` is `wecom.timeout` or `wecom.unavailable`, and `detail` says what happened.
    """

    ok: bool
    errcode: int | None = None
    errmsg: str | None = None
    reason: str | None = None
    detail: str | None = None
    expires_in: int | None = None


#: The reason given when the stored secret no longer decrypts (IAM_SECRET_KEY was changed).
SECRET_UNREADABLE = "admin.corp.secret_unreadable"


def test_connection(
    store: Store, box: SecretBox, client: WeComClient, corp_id: str, *, actor: str = "cli"
) -> ConnectionResult:
    """Ask WeCom for an access token now, past the token cache, so the answer is live (a cached
    token would say nothing about a secret changed since). Disabled corporations may be tested
    too: that is how an admin checks a corporation before enabling it. Audited.

    Unlike the other services here this takes the store and runs two units of work of its own,
    with the HTTP call between them: `connection_target` reads the app (one unit), WeCom is
    asked with no transaction open, and `record_test` audits the answer (a second unit). A
    transaction held across the call would keep a pooled connection (and, on SQLite, maybe a
    lock) for as long as WeCom takes to answer, up to its timeout. Nothing is lost by the
    split: the first unit only reads. It blocks (database and HTTP): call it from a worker
    thread, never on the event loop."""
    target = one_unit(store, lambda db: connection_target(db, box, corp_id))
    result = target if isinstance(target, ConnectionResult) else ask_wecom(client, target)
    one_unit(store, lambda db: record_test(db, corp_id, result, actor=actor))
    return result


def connection_target(db: Session, box: SecretBox, corp_id: str) -> WeComApp | ConnectionResult:
    """The app to ask WeCom about (secret decrypted), or, when the stored secret no longer
    decrypts, the failed result to report; `NotFoundError` for no such corporation."""
    corp = get_corp(db, corp_id)
    try:
        secret = box.decrypt(corp.secret_encrypted)
    except SecretBoxError as error:
        return ConnectionResult(ok=False, reason=SECRET_UNREADABLE, detail=str(error))
    return WeComApp(corp.corp_id, corp.agent_id, secret)


def ask_wecom(client: WeComClient, app: WeComApp) -> ConnectionResult:
    """A live gettoken (no database): WeCom's answer, or why there was none."""
    try:
        expires_in = client.fetch_token(app)
    except WeComApiError as refused:
        return ConnectionResult(
            ok=False, errcode=refused.code, errmsg=refused.errmsg, reason=refused.reason
        )
    except WeComUnavailableError as unavailable:
        return ConnectionResult(ok=False, reason=unavailable.reason, detail=str(unavailable))
    return ConnectionResult(ok=True, errcode=0, errmsg="ok", expires_in=expires_in)


def record_test(db: Session, corp_id: str, result: ConnectionResult, *, actor: str) -> None:
    """The audit row of a connection test (`corp.tested`), in the caller's transaction."""
    audit.record(
        db.connection(),
        "corp.tested",
        outcome="success" if result.ok else "failure",
        actor=actor,
        corp_id=corp_id,
        errcode=result.errcode,
        reason=result.reason,
        detail=result.detail,
    )
