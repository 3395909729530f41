"""Settings from the environment (prefix ``IAM_``) and a ``.env`` file, checked once at start.

The only module that reads the environment; everything else receives a `Settings`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from starlette.config import Config
from starlette.datastructures import Secret

DEFAULT_ISSUER = "http://127.0.0.1:8000"
DEFAULT_DATABASE_URL = "sqlite:///./var/iam.db"
DEFAULT_SECRET_FILE = Path("var/secret.key")
DEFAULT_TIMEZONE = "Asia/Shanghai"
MIN_SECRET_KEY_LENGTH = 32
LOOPBACK_CIDRS = "127.0.0.0/8,::1/128"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting has a value the server cannot run with; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the server, validated. Build with `load()` or directly in tests."""

    secret_key: Secret
    issuer: str = DEFAULT_ISSUER
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    dev_mode: bool = False
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wecom_oauth_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    wecom_qr_url: str = "https://login.work.weixin.qq.com/wwlogin/sso/login"
    sms_backend: str = "console"
    admin_allow_cidrs: tuple[IpNetwork, ...] = field(
        default_factory=lambda: (
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        )
    )
    #: Who may read `/metrics` (request and sign-in counts): the Prometheus scraper's network.
    metrics_allow_cidrs: tuple[IpNetwork, ...] = field(
        default_factory=lambda: _parse_cidrs("IAM_METRICS_ALLOW_CIDRS", LOOPBACK_CIDRS)
    )
    log_format: str = "text"
    #: Overrides of the rate-limit table, `action[.key|.ip]=N/SECONDS,...` (checked by the
    #: rate-limit service when the app is built).
    rate_limits: str = ""
    #: The time zone the admin console shows times in (an IANA name); stored times are UTC.
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "issuer", _check_issuer(self.issuer))
        _check_secret_key(str(self.secret_key))
        _check_database_url(self.database_url)
        if self.redis_url is not None:
            _check_url("IAM_REDIS_URL", self.redis_url, ("redis", "rediss", "unix"))
        _check_timezone(self.timezone)
        _check_url("IAM_WECOM_API_BASE", self.wecom_api_base, ("http", "https"))
        _check_url("IAM_WECOM_OAUTH_URL", self.wecom_oauth_url, ("http", "https"))
        _check_url("IAM_WECOM_QR_URL", self.wecom_qr_url, ("http", "https"))
        _check_sms_backend(self.sms_backend)
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"IAM_LOG_FORMAT must be 'text' or 'json', not {self.log_format!r}")
        if self.dev_mode and not self.issuer_is_loopback:
            raise SettingsError(
                "IAM_DEV_MODE is refused when IAM_ISSUER is not a loopback URL "
                f"(it is {self.issuer!r}): dev mode shows SMS codes to anyone"
            )

    @property
    def issuer_is_https(self) -> bool:
        return self.issuer.startswith("https://")

    @property
    def issuer_is_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.issuer).hostname or "")

    @property
    def sms_webhook_url(self) -> str | None:
        """The URL of a ``webhook:<url>`` SMS backend, None for ``console``."""
        return self.sms_backend.partition(":")[2] if self.sms_backend != "console" else None


def load(environ: Mapping[str, str] | None = None, env_file: str | Path = ".env") -> Settings:
    """Read ``IAM_*`` from `environ` (default: the process environment) and `env_file`."""
    environ = os.environ if environ is None else environ
    path = Path(env_file)
    config = Config(path if path.is_file() else None, environ=dict(environ), env_prefix="IAM_")

    def text(name: str, default: str | None = None) -> str | None:
        value: str | None = config(name, default=default)
        return None if value is None else str(value).strip()

    secret = text("SECRET_KEY") or _secret_from_file(DEFAULT_SECRET_FILE)
    redis_url = text("REDIS_URL") or None
    return Settings(
        secret_key=Secret(secret),
        issuer=text("ISSUER", DEFAULT_ISSUER) or DEFAULT_ISSUER,
        database_url=text("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
        redis_url=redis_url,
        dev_mode=_parse_bool("IAM_DEV_MODE", text("DEV_MODE", "false") or "false"),
        wecom_api_base=text("WECOM_API_BASE", Settings.wecom_api_base) or "",
        wecom_oauth_url=text("WECOM_OAUTH_URL", Settings.wecom_oauth_url) or "",
        wecom_qr_url=text("WECOM_QR_URL", Settings.wecom_qr_url) or "",
        sms_backend=text("SMS_BACKEND", "console") or "console",
        admin_allow_cidrs=_parse_cidrs(
            "IAM_ADMIN_ALLOW_CIDRS", text("ADMIN_ALLOW_CIDRS", LOOPBACK_CIDRS) or ""
        ),
        metrics_allow_cidrs=_parse_cidrs(
            "IAM_METRICS_ALLOW_CIDRS", text("METRICS_ALLOW_CIDRS", LOOPBACK_CIDRS) or ""
        ),
        log_format=text("LOG_FORMAT", "text") or "text",
        rate_limits=text("RATE_LIMITS", "") or "",
        timezone=text("TIMEZONE", DEFAULT_TIMEZONE) or DEFAULT_TIMEZONE,
    )


def _check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"IAM_TIMEZONE must be an IANA time zone such as Asia/Shanghai or UTC, not {name!r}"
        ) from None


def _secret_from_file(path: Path) -> str:
    """The generated-once secret key: created with mode 0600 on first start, then reused."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback address: where http and dev mode are allowed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_issuer(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"IAM_ISSUER must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise SettingsError(f"IAM_ISSUER must not have a query or fragment: {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(
            "IAM_ISSUER must use https:// (http:// is allowed only on a loopback address): "
            f"{value!r}"
        )
    return value.rstrip("/")


def _check_secret_key(value: str) -> None:
    if len(value) < MIN_SECRET_KEY_LENGTH:
        raise SettingsError(
            f"IAM_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters long"
        )


def _check_database_url(value: str) -> None:
    try:
        url = make_url(value)
    except ArgumentError:
        raise SettingsError(f"IAM_DATABASE_URL is not a database URL: {value!r}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"IAM_DATABASE_URL must be SQLite or PostgreSQL, not {url.get_backend_name()!r}"
        )


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (parts.scheme != "unix" and not parts.netloc):
        raise SettingsError(f"{name} must be a {'/'.join(schemes)} URL, not {value!r}")


def _check_sms_backend(value: str) -> None:
    if value == "console":
        return
    kind, _, url = value.partition(":")
    if kind != "webhook" or not url:
        raise SettingsError(f"IAM_SMS_BACKEND must be 'console' or 'webhook:<url>', not {value!r}")
    _check_url("IAM_SMS_BACKEND webhook", url, ("http", "https"))


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _parse_cidrs(name: str, value: str) -> tuple[IpNetwork, ...]:
    networks = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{name} has an invalid network: {item!r}") from None
    return tuple(networks)


def refuse_console_sms(settings: Settings) -> None:
    """`console` writes every code and full phone number to the log: dev mode only."""
    if settings.sms_backend == "console" and not settings.dev_mode:
        raise SettingsError(
            "IAM_SMS_BACKEND=console writes every code and phone number to the log and is "
            "refused unless IAM_DEV_MODE is on: set IAM_SMS_BACKEND=webhook:<url>"
        )
