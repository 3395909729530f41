"""iam/settings.py: defaults from the contract, `.env` reading, and a clear error per bad value."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest

from iam import settings as settings_module
from iam.settings import Settings, SettingsError, load

SECRET = "s" * 40


def _load(tmp_path: Path, env_file_text: str | None = None, **environ: str) -> Settings:
    """`load()` with only `environ` (IAM_ prefix added) and an optional `.env` in tmp_path."""
    env_file = tmp_path / ".env"
    if env_file_text is not None:
        env_file.write_text(env_file_text)
    values = {"IAM_SECRET_KEY": SECRET}
    values.update({f"IAM_{name}": value for name, value in environ.items()})
    return load(environ=values, env_file=env_file)


def _refused(tmp_path: Path, variable: str, **environ: str) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, **environ)
    assert variable in str(caught.value)
    return caught.value


# --- defaults ---------------------------------------------------------------------------


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    loaded = _load(tmp_path)
    assert loaded.issuer == "http://127.0.0.1:8000"
    assert loaded.database_url == "sqlite:///./var/iam.db"
    assert loaded.redis_url is None
    assert str(loaded.secret_key) == SECRET
    assert loaded.dev_mode is False
    assert loaded.wecom_api_base == "https://qyapi.weixin.qq.com"
    assert loaded.wecom_oauth_url == "https://open.weixin.qq.com/connect/oauth2/authorize"
    assert loaded.wecom_qr_url == "https://login.work.weixin.qq.com/wwlogin/sso/login"
    assert loaded.sms_backend == "console"
    assert loaded.sms_webhook_url is None
    assert loaded.admin_allow_cidrs == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert loaded.log_format == "text"


def test_secret_key_is_hidden_in_repr(tmp_path: Path) -> None:
    assert SECRET not in repr(_load(tmp_path))


def test_every_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        ISSUER="https://id.example.com",
        DATABASE_URL="postgresql+psycopg://iam@db/iam",
        REDIS_URL="redis://cache:6379/0",
        WECOM_API_BASE="https://wecom.example.com",
        WECOM_OAUTH_URL="https://oauth.example.com/authorize",
        WECOM_QR_URL="https://qr.example.com/login",
        SMS_BACKEND="webhook:https://sms.example.com/send",
        ADMIN_ALLOW_CIDRS="10.0.0.0/8, 192.168.1.0/24",
        LOG_FORMAT="json",
    )
    assert loaded.issuer == "https://id.example.com"
    assert loaded.issuer_is_https
    assert loaded.database_url == "postgresql+psycopg://iam@db/iam"
    assert loaded.redis_url == "redis://cache:6379/0"
    assert loaded.wecom_api_base == "https://wecom.example.com"
    assert loaded.wecom_oauth_url == "https://oauth.example.com/authorize"
    assert loaded.wecom_qr_url == "https://qr.example.com/login"
    assert loaded.sms_webhook_url == "https://sms.example.com/send"
    assert loaded.admin_allow_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.0/24"),
    )
    assert loaded.log_format == "json"


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "TRUE"])
def test_dev_mode_accepts_true_spellings(tmp_path: Path, value: str) -> None:
    assert _load(tmp_path, DEV_MODE=value).dev_mode is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", ""])
def test_dev_mode_accepts_false_spellings(tmp_path: Path, value: str) -> None:
    assert _load(tmp_path, DEV_MODE=value).dev_mode is False


def test_dev_mode_is_allowed_on_localhost_issuer(tmp_path: Path) -> None:
    loaded = _load(tmp_path, DEV_MODE="true", ISSUER="http://localhost:8000")
    assert loaded.dev_mode and loaded.issuer_is_loopback


def test_trailing_slash_of_issuer_is_stripped(tmp_path: Path) -> None:
    assert _load(tmp_path, ISSUER="https://id.example.com/").issuer == "https://id.example.com"
    assert (
        _load(tmp_path, ISSUER="https://id.example.com/iam/").issuer == "https://id.example.com/iam"
    )


# --- the .env file ----------------------------------------------------------------------


def test_env_file_is_read(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "IAM_LOG_FORMAT=json\nIAM_ISSUER=https://from-file.example.com\n")
    assert loaded.log_format == "json"
    assert loaded.issuer == "https://from-file.example.com"


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    loaded = _load(tmp_path, "IAM_LOG_FORMAT=json\n", LOG_FORMAT="text")
    assert loaded.log_format == "text"


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    loaded = load(environ={"IAM_SECRET_KEY": SECRET}, env_file=tmp_path / "absent.env")
    assert loaded.log_format == "text"


def test_bad_value_in_env_file_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IAM_LOG_FORMAT"):
        _load(tmp_path, "IAM_LOG_FORMAT=xml\n")


# --- bad values: each names its variable ------------------------------------------------


@pytest.mark.parametrize("issuer", ["ftp://id.example.com", "id.example.com", "https://"])
def test_issuer_must_be_http_or_https(tmp_path: Path, issuer: str) -> None:
    _refused(tmp_path, "IAM_ISSUER", ISSUER=issuer)


def test_http_issuer_on_a_public_host_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_ISSUER", ISSUER="http://id.example.com")


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:9000", "http://localhost", "http://[::1]:8"])
def test_http_issuer_on_loopback_is_allowed(tmp_path: Path, issuer: str) -> None:
    assert _load(tmp_path, ISSUER=issuer).issuer == issuer


def test_issuer_with_query_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_ISSUER", ISSUER="https://id.example.com?tenant=a")


def test_issuer_with_fragment_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_ISSUER", ISSUER="https://id.example.com#top")


def test_short_secret_key_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_SECRET_KEY", SECRET_KEY="x" * 31)


def test_secret_key_of_minimum_length_is_accepted(tmp_path: Path) -> None:
    assert str(_load(tmp_path, SECRET_KEY="x" * 32).secret_key) == "x" * 32


@pytest.mark.parametrize("url", ["mysql://iam@db/iam", "mysql+pymysql://iam@db/iam"])
def test_unknown_database_backend_is_refused(tmp_path: Path, url: str) -> None:
    _refused(tmp_path, "IAM_DATABASE_URL", DATABASE_URL=url)


def test_unparsable_database_url_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_DATABASE_URL", DATABASE_URL="not a url")


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://", "cache:6379"])
def test_bad_redis_url_is_refused(tmp_path: Path, url: str) -> None:
    _refused(tmp_path, "IAM_REDIS_URL", REDIS_URL=url)


@pytest.mark.parametrize(
    "backend", ["webhook:", "webhook", "carrier-pigeon", "webhook:ftp://sms.example.com"]
)
def test_bad_sms_backend_is_refused(tmp_path: Path, backend: str) -> None:
    _refused(tmp_path, "IAM_SMS_BACKEND", SMS_BACKEND=backend)


@pytest.mark.parametrize("cidrs", ["10.0.0.0/33", "127.0.0.0/8,nonsense", "300.1.1.1/32"])
def test_bad_cidr_is_refused(tmp_path: Path, cidrs: str) -> None:
    _refused(tmp_path, "IAM_ADMIN_ALLOW_CIDRS", ADMIN_ALLOW_CIDRS=cidrs)


def test_metrics_allow_cidrs_default_to_loopback(tmp_path: Path) -> None:
    assert _load(tmp_path).metrics_allow_cidrs == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_metrics_allow_cidrs_are_read_from_the_environment(tmp_path: Path) -> None:
    loaded = _load(tmp_path, METRICS_ALLOW_CIDRS="10.244.0.0/16, fd00::/8")
    assert loaded.metrics_allow_cidrs == (
        ipaddress.ip_network("10.244.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize("cidrs", ["10.0.0.0/33", "127.0.0.0/8,nonsense", "300.1.1.1/32"])
def test_bad_metrics_cidr_is_refused_naming_its_variable(tmp_path: Path, cidrs: str) -> None:
    refused = _refused(tmp_path, "IAM_METRICS_ALLOW_CIDRS", METRICS_ALLOW_CIDRS=cidrs)
    assert "IAM_ADMIN_ALLOW_CIDRS" not in str(refused)


def test_bad_log_format_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_LOG_FORMAT", LOG_FORMAT="xml")


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_bad_bool_for_dev_mode_is_refused(tmp_path: Path, value: str) -> None:
    _refused(tmp_path, "IAM_DEV_MODE", DEV_MODE=value)


def test_dev_mode_with_public_https_issuer_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_DEV_MODE", DEV_MODE="true", ISSUER="https://id.example.com")


def test_bad_wecom_url_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "IAM_WECOM_API_BASE", WECOM_API_BASE="qyapi.weixin.qq.com")


def test_settings_built_directly_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="IAM_ISSUER"):
        Settings(secret_key=SECRET, issuer="http://id.example.com")  # type: ignore[arg-type]


# --- the generated secret key file ------------------------------------------------------


def test_secret_key_file_is_generated_once_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = load(environ={}, env_file=tmp_path / ".env")
    key_file = tmp_path / "var" / "secret.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == str(first.secret_key)
    assert len(str(first.secret_key)) >= settings_module.MIN_SECRET_KEY_LENGTH


def test_secret_key_file_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = load(environ={}, env_file=tmp_path / ".env")
    key_file = tmp_path / "var" / "secret.key"
    written = key_file.stat().st_mtime_ns
    second = load(environ={}, env_file=tmp_path / ".env")
    assert str(second.secret_key) == str(first.secret_key)
    assert key_file.stat().st_mtime_ns == written


def test_secret_key_from_environment_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    load(environ={"IAM_SECRET_KEY": SECRET}, env_file=tmp_path / ".env")
    assert not (tmp_path / "var" / "secret.key").exists()


def test_the_timezone_is_asia_shanghai_unless_set_and_must_be_a_real_zone() -> None:
    assert load({"IAM_SECRET_KEY": "k" * 32}, env_file="/nonexistent").timezone == "Asia/Shanghai"
    assert (
        load({"IAM_SECRET_KEY": "k" * 32, "IAM_TIMEZONE": "UTC"}, env_file="/x").timezone == "UTC"
    )
    with pytest.raises(SettingsError, match="IAM_TIMEZONE"):
        load({"IAM_SECRET_KEY": "k" * 32, "IAM_TIMEZONE": "Mars/Olympus"}, env_file="/x")
