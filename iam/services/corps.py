"""WeCom corporations: each with its self-built app (agent id, secret encrypted at rest) and
the app's callback settings ("接收事件服务器": Token and EncodingAESKey, encrypted at rest too).

Every function that reads or writes takes the caller's session (`db`) and commits nothing: the
caller runs one unit of work per use case (`iam.db.unit`). The one exception is
`test_connection`, which calls WeCom between two units of its own (see there).

The checks below are the rules of a corporation's fields, for every way in (the admin API's
records call them too, and publish the patterns in the OpenAPI document).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iam.clock import utcnow
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
    login, and the token cache is keyed by a hash of the secret.

    `enabled=True` is an admin's explicit choice: it also shows on the login page a
    corporation its last connection test hid (`hidden_by_test`), even one enabled already."""
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
    if enabled and corp.hidden_by_test:  # enabled explicitly: shown although its test failed
        wanted["hidden_by_test"] = False
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


def list_corps(
    db: Session, *, enabled_only: bool = False, on_login_page: bool = False
) -> list[WeComCorp]:
    """Oldest first; `enabled_only`: the enabled ones (hidden or not: the directory sync);
    `on_login_page`: those the login page offers (enabled and not hidden by a failed
    connection test, see `shown_on_login_page`)."""
    statement = select(WeComCorp).order_by(WeComCorp.created_at, WeComCorp.corp_id)
    if enabled_only or on_login_page:
        statement = statement.where(WeComCorp.enabled.is_(True))
    if on_login_page:
        statement = statement.where(WeComCorp.hidden_by_test.is_(False))
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


# --- the connection test ----------------------------------------------------------------------
# What it finds wrong: each is a message-catalogue key (the admin's words, in both languages:
# what is wrong and what to do), with the values it names (`Problem.params`).

#: gettoken refused the corp id (40013 invalid corpid, 41002 none sent).
CORP_ID_WRONG = "admin.corp.problem.corp_id"
#: gettoken refused the secret (40001 invalid credential, 40091 secret invalid, 41004 none).
SECRET_WRONG = "admin.corp.problem.secret"
#: agent/get does not know the AgentId for this app's token (40056 invalid agentid; 60011 no
#: privilege: the Secret is another app's).
AGENT_WRONG = "admin.corp.problem.agent_id"
#: agent/get: the app is disabled ("close": 1).
APP_CLOSED = "admin.corp.problem.closed"
#: 60020: WeCom refused our server's address; {ip} is the one WeCom saw.
IP_NOT_TRUSTED = "admin.corp.problem.ip"
#: 60020 without an address in the errmsg.
IP_NOT_TRUSTED_UNSEEN = "admin.corp.problem.ip_unseen"
#: agent/get: the app's trusted domain ({domain}) is not the issuer's ({expected}).
DOMAIN_MISMATCH = "admin.corp.problem.domain"
#: agent/get: the app has no trusted domain at all.
DOMAIN_UNSET = "admin.corp.problem.domain_unset"
#: agent/get: nobody is in the app's visible range (no member, department or tag).
NOBODY_VISIBLE = "admin.corp.problem.visible_range"
#: WeCom is limiting or busy (45009, 45033, -1): try again in a minute.
BUSY = "admin.corp.problem.busy"
#: WeCom did not answer in time / could not be reached or answered something not WeCom's.
TIMEOUT = "admin.corp.problem.timeout"
UNAVAILABLE = "admin.corp.problem.unavailable"
#: Problems of the moment, not of the set-up: a test that found only these leaves the login
#: page as it was (a corporation is not hidden because WeCom was slow while an admin tested).
PASSING_PROBLEMS = frozenset({BUSY, TIMEOUT, UNAVAILABLE})
#: Any other refusal: WeCom's {api}, {errcode} and {errmsg}.
REFUSED = "admin.corp.problem.refused"
#: The reason given when the stored secret no longer decrypts (IAM_SECRET_KEY was changed).
SECRET_UNREADABLE = "admin.corp.secret_unreadable"

_BY_ERRCODE: Mapping[tuple[str, int], str] = {
    **{("gettoken", code): CORP_ID_WRONG for code in (40013, 41002)},
    **{("gettoken", code): SECRET_WRONG for code in (40001, 40091, 41004)},
    **{("agent/get", code): AGENT_WRONG for code in (40056, 60011)},
}
_BUSY_CODES = frozenset({45009, 45033, -1})
_IP_NOT_TRUSTED = 60020
_SEEN_IP = re.compile(r"from ip: ?([0-9A-Fa-f.:]{2,45})")


@dataclass(frozen=True)
class Problem:
    """One thing a connection test found wrong: its message key (`reason`) and the values the
    message names (`params`: the address WeCom saw, the domains, WeCom's errcode, ...)."""

    reason: str
    params: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "params": dict(self.params)}


@dataclass(frozen=True)
class ConnectionResult:
    """What a live gettoken and then agent/get (the app's settings) told about one
    corporation's app.

    - ok: both answered, and the app's settings let people sign in: `errcode` 0,
      `expires_in` the new token's lifetime, `app_name` the app's name in WeCom;
    - otherwise `problems` says everything found wrong (several at once when agent/get
      answered: closed *and* nobody visible), `reason` is the first one's key;
    - WeCom refused a call: `api` (gettoken or agent/get), its `errcode` and `errmsg` (secrets
      scrubbed); for 60020 `seen_ip` is the address WeCom saw (to add to 企业可信IP);
    - no usable answer (timeout, unreachable, not WeCom JSON): `errcode` and `errmsg` are None
      and `detail` says what happened.
    """

    ok: bool
    errcode: int | None = None
    errmsg: str | None = None
    reason: str | None = None
    detail: str | None = None
    expires_in: int | None = None
    problems: tuple[Problem, ...] = ()
    api: str | None = None
    seen_ip: str | None = None
    app_name: str | None = None


def _failed(*problems: Problem, **values: Any) -> ConnectionResult:
    return ConnectionResult(ok=False, reason=problems[0].reason, problems=problems, **values)


def issuer_domain(issuer: str) -> str:
    """The trusted domain an app needs for `issuer`'s redirect URIs: its host, with the port
    when it is not the scheme's default (wecom-api.md 4), in lower case."""
    parts = urlsplit(issuer)
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return host if port is None or port == default else f"{host}:{port}"


def _domain_of(value: object) -> str:
    """WeCom's redirect_domain, read leniently (a scheme or a trailing slash is dropped)."""
    text = str(value or "").strip().lower()
    text = text.split("://", 1)[-1]
    return text.rstrip("/")


def readable_errmsg(errmsg: str) -> str:
    """WeCom's errmsg for people: without its trailing help link ("..., more info at
    https://open.work.weixin.qq.com/devtool/query?e=60020"), which the errcode says as well and
    which no narrow page can wrap."""
    return re.split(r",? ?more info at ", errmsg, maxsplit=1)[0]


def seen_ip(errmsg: str) -> str | None:
    """The caller's address a 60020 errmsg names ("..., from ip: 1.2.3.4, more info at ...")."""
    match = _SEEN_IP.search(errmsg)
    if match is None:
        return None
    try:
        return str(ipaddress.ip_address(match.group(1)))
    except ValueError:
        return None


def test_connection(
    store: Store,
    box: SecretBox,
    client: WeComClient,
    corp_id: str,
    *,
    domain: str,
    actor: str = "cli",
) -> ConnectionResult:
    """Ask WeCom now whether this corporation can work: a live gettoken, past the token cache
    (a cached token would say nothing about a secret changed since), then agent/get, a data
    API that WeCom checks the caller's address for, whose answer says whether the app is
    closed, its trusted domain (it must be `domain`, the issuer's: `issuer_domain`) and its
    visible range. Disabled corporations may be tested too: that is how an admin checks a
    corporation before enabling it. The result is remembered on the corporation (a failed
    test hides it from the login page, a passing one shows it again) and audited.

    Unlike the other services here this takes the store and runs two units of work of its own,
    with the HTTP calls between them: `connection_target` reads the app (one unit), WeCom is
    asked with no transaction open, and `record_test` keeps and audits the answer (a second
    unit). A transaction held across the calls would keep a pooled connection (and, on
    SQLite, maybe a lock) for as long as WeCom takes to answer, up to its timeout. It blocks
    (database and HTTP): call it from a worker thread, never on the event loop."""
    target = one_unit(store, lambda db: connection_target(db, box, corp_id))
    if isinstance(target, ConnectionResult):
        result = target
    else:
        result = ask_wecom(client, target, domain=domain)
    one_unit(store, lambda db: record_test(db, corp_id, result, actor=actor))
    return result


def connection_target(db: Session, box: SecretBox, corp_id: str) -> WeComApp | ConnectionResult:
    """The app to ask WeCom about (secret decrypted), or, when the stored secret no longer
    decrypts, the failed result to report; `NotFoundError` for no such corporation."""
    corp = get_corp(db, corp_id)
    try:
        secret = box.decrypt(corp.secret_encrypted)
    except SecretBoxError as error:
        return _failed(Problem(SECRET_UNREADABLE), detail=str(error))
    return WeComApp(corp.corp_id, corp.agent_id, secret)


def ask_wecom(client: WeComClient, app: WeComApp, *, domain: str) -> ConnectionResult:
    """A live gettoken, then agent/get (no database): what is wrong, or that nothing is."""
    try:
        expires_in = client.fetch_token(app)
        agent = client.get_agent(app)
    except WeComApiError as refused:
        return _refusal(refused)
    except WeComUnavailableError as unavailable:
        problem = Problem(TIMEOUT if unavailable.reason == "wecom.timeout" else UNAVAILABLE)
        return _failed(problem, api=unavailable.api, detail=str(unavailable))
    problems = agent_problems(agent, domain=domain)
    name = agent.get("name")
    return ConnectionResult(
        ok=not problems,
        errcode=0,
        errmsg="ok",
        reason=problems[0].reason if problems else None,
        expires_in=expires_in,
        problems=problems,
        api="agent/get",
        app_name=name if isinstance(name, str) else None,
    )


def _refusal(refused: WeComApiError) -> ConnectionResult:
    """The problem a refusal of gettoken or agent/get means, and WeCom's own words."""
    code, api = refused.code, refused.api
    address = None
    if code == _IP_NOT_TRUSTED:
        address = seen_ip(refused.errmsg)
        if address is None:
            problem = Problem(IP_NOT_TRUSTED_UNSEEN)
        else:
            problem = Problem(IP_NOT_TRUSTED, {"ip": address})
    elif (api, code) in _BY_ERRCODE:
        problem = Problem(_BY_ERRCODE[api, code])
    elif code in _BUSY_CODES:
        problem = Problem(BUSY, {"errcode": str(code)})
    else:
        words = readable_errmsg(refused.errmsg)
        problem = Problem(REFUSED, {"api": api, "errcode": str(code), "errmsg": words})
    return _failed(problem, errcode=code, errmsg=refused.errmsg, api=api, seen_ip=address)


def agent_problems(agent: Mapping[str, Any], *, domain: str) -> tuple[Problem, ...]:
    """What an agent/get answer says is wrong with the app, all of it: closed, a trusted
    domain other than `domain`, nobody in its visible range."""
    problems: list[Problem] = []
    if agent.get("close") == 1:
        problems.append(Problem(APP_CLOSED))
    trusted = _domain_of(agent.get("redirect_domain"))
    if not trusted:
        problems.append(Problem(DOMAIN_UNSET, {"expected": domain}))
    elif trusted != domain.lower():
        problems.append(Problem(DOMAIN_MISMATCH, {"domain": trusted, "expected": domain}))
    if not _anyone_visible(agent):
        problems.append(Problem(NOBODY_VISIBLE))
    return tuple(problems)


def _anyone_visible(agent: Mapping[str, Any]) -> bool:
    """Whether the visible range names a member, a department or a tag."""
    ranges = (("allow_userinfos", "user"), ("allow_partys", "partyid"), ("allow_tags", "tagid"))
    for outer, inner in ranges:
        holder = agent.get(outer)
        listed = holder.get(inner) if isinstance(holder, dict) else None
        if isinstance(listed, list) and listed:
            return True
    return False


def record_test(db: Session, corp_id: str, result: ConnectionResult, *, actor: str) -> None:
    """Remember a connection test on the corporation and audit it (`corp.tested`), in the
    caller's transaction: a test that found a set-up problem hides the corporation from the
    login page, a passing one shows it again (`shown_on_login_page`); one that found only
    problems of the moment (`PASSING_PROBLEMS`) leaves it as it was."""
    corp = get_corp(db, corp_id)
    corp.last_tested_at = utcnow()
    corp.last_test_ok = result.ok
    corp.last_test_problems = [problem.to_json() for problem in result.problems]
    passing = bool(result.problems) and all(
        problem.reason in PASSING_PROBLEMS for problem in result.problems
    )
    if not passing:
        corp.hidden_by_test = not result.ok
    audit.record(
        db.connection(),
        "corp.tested",
        outcome="success" if result.ok else "failure",
        actor=actor,
        corp_id=corp_id,
        api=result.api,
        errcode=result.errcode,
        reason=result.reason,
        problems=[problem.reason for problem in result.problems],
        seen_ip=result.seen_ip,
        detail=result.detail,
    )


def shown_on_login_page(corp: WeComCorp) -> bool:
    """Whether the login page offers this corporation: enabled, and not hidden by a failed
    test (never tested, passed its last test, or enabled by an admin since it failed)."""
    return corp.enabled and not corp.hidden_by_test
