"""Configuration read from ``OVERREAD_*`` environment variables."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from portal.errors import ConfigError

PREFIX = "OVERREAD_"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name)
    return value if value not in (None, "") else default


def _int_env(name: str, default: int, maximum: int | None = None) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{PREFIX}{name} must not be negative, got {raw!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{PREFIX}{name} must be at most {maximum}, got {raw!r}")
    return value


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlparse(value).scheme.split("+")[0]
    if scheme not in schemes:
        raise ConfigError(
            f"{PREFIX}{name} must start with one of {', '.join(s + '://' for s in schemes)};"
            f" got {value!r}"
        )
    return value


def _sla_minutes() -> dict[str, timedelta]:
    """Return the SLA of each urgency (defaults: STAT 1 h, urgent 4 h, routine 48 h)."""
    defaults = {"stat": 60, "urgent": 240, "routine": 48 * 60}
    windows = {}
    for urgency, default in defaults.items():
        minutes = _int_env(f"SLA_{urgency.upper()}_MINUTES", default)
        if minutes == 0:
            raise ConfigError(f"{PREFIX}SLA_{urgency.upper()}_MINUTES must be at least 1")
        windows[urgency] = timedelta(minutes=minutes)
    return windows


def _check_database_url(value: str) -> str:
    _check_url("DATABASE_URL", value, ("sqlite", "postgresql", "postgres"))
    try:
        make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"{PREFIX}DATABASE_URL is malformed: {exc}") from None
    return value


def _check_storage_url(value: str) -> str:
    url = urlparse(_check_url("STORAGE_URL", value, ("file", "s3")))
    if url.scheme == "s3" and not url.netloc:
        raise ConfigError(f"{PREFIX}STORAGE_URL must name a bucket: s3://bucket/prefix")
    if url.scheme == "file" and (
        url.netloc not in ("", "localhost") or not url.path.startswith("/")
    ):
        raise ConfigError(f"{PREFIX}STORAGE_URL must be file:///absolute/path, got {value!r}")
    return value


def _s3_encryption() -> str | None:
    value = _env("S3_SERVER_SIDE_ENCRYPTION", "AES256")
    return None if value.lower() == "none" else value


def load_config(instance_path: str, overrides: dict | None = None) -> dict:
    """Build the Flask configuration from the environment and ``overrides``.

    :param instance_path: the app's instance folder, home of the embedded defaults.
    :param overrides: values that win over the environment (tests use this).
    :raise ConfigError: a setting is missing or malformed; the message names it.
    """
    instance = Path(instance_path)
    production = _env("ENV", "development") == "production"
    secret_key = _env("SECRET_KEY")
    if secret_key is None:
        if production:
            raise ConfigError(f"{PREFIX}SECRET_KEY is required when {PREFIX}ENV=production")
        secret_key = _embedded_secret_key(instance)
    elif len(secret_key) < 32:
        raise ConfigError(f"{PREFIX}SECRET_KEY must be at least 32 characters long")

    database_url = _env("DATABASE_URL") or f"sqlite:///{instance / 'overread.db'}"
    _check_database_url(database_url)
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]
    storage_url = _env("STORAGE_URL") or (instance / "storage").as_uri()
    _check_storage_url(storage_url)
    base_url = _env("BASE_URL", "http://127.0.0.1:5000")
    _check_url("BASE_URL", base_url, ("http", "https"))
    if production and not base_url.startswith("https://"):
        raise ConfigError(f"{PREFIX}BASE_URL must be https:// when {PREFIX}ENV=production")

    config = {
        "ENV_NAME": "production" if production else "development",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STORAGE_URL": storage_url,
        "S3_ENDPOINT_URL": _env("S3_ENDPOINT_URL"),
        "S3_SERVER_SIDE_ENCRYPTION": _s3_encryption(),
        "BASE_URL": base_url.rstrip("/"),
        "PROXY_COUNT": _int_env("PROXY_COUNT", 0),
        "MAX_CONTENT_LENGTH": _int_env("MAX_REQUEST_MB", 64) * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": base_url.startswith("https://"),
        "SESSION_IDLE_TIMEOUT": timedelta(minutes=_int_env("SESSION_IDLE_MINUTES", 30)),
        "SESSION_ABSOLUTE_TIMEOUT": timedelta(hours=_int_env("SESSION_ABSOLUTE_HOURS", 12)),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_int_env("SESSION_ABSOLUTE_HOURS", 12)),
        "LOGIN_MAX_FAILURES": _int_env("LOGIN_MAX_FAILURES", 5),
        "LOGIN_LOCKOUT": timedelta(minutes=_int_env("LOGIN_LOCKOUT_MINUTES", 15)),
        "LOGIN_RATE_LIMIT": _env("LOGIN_RATE_LIMIT", "20 per minute"),
        "RATELIMIT_STORAGE_URI": _env("RATELIMIT_STORAGE_URL", "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "INVITE_LIFETIME": timedelta(hours=_int_env("INVITE_HOURS", 72)),
        "RESET_LIFETIME": timedelta(minutes=_int_env("RESET_MINUTES", 60)),
        "SMTP_HOST": _env("SMTP_HOST"),
        "SMTP_PORT": _int_env("SMTP_PORT", 25, maximum=65535),
        "SMTP_USERNAME": _env("SMTP_USERNAME"),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD"),
        "SMTP_STARTTLS": _env("SMTP_STARTTLS", "false").lower() in ("1", "true", "yes"),
        "MAIL_FROM": _env("MAIL_FROM", "Overread <no-reply@overread.invalid>"),
        "DISPATCH_BATCH": _int_env("DISPATCH_BATCH", 50),
        "DISPATCH_MAX_ATTEMPTS": _int_env("DISPATCH_MAX_ATTEMPTS", 6),
        "DISPATCH_BACKOFF_SECONDS": _int_env("DISPATCH_BACKOFF_SECONDS", 30),
        "ARGON2_TIME_COST": _int_env("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _int_env("ARGON2_MEMORY_KIB", 65536),
        "WTF_CSRF_TIME_LIMIT": None,
        "SLA_MINUTES": _sla_minutes(),
        "SLA_AT_RISK_PERCENT": _int_env("SLA_AT_RISK_PERCENT", 25, maximum=100),
        "ATTACHMENT_MAX_MB": _int_env("ATTACHMENT_MAX_MB", 20),
        "SHARE_DAYS": _int_env("SHARE_DAYS", 14),
        "SPOOL_DIR": _env("SPOOL_DIR") or str(instance / "spool"),
        "RENDER_CACHE_DIR": _env("RENDER_CACHE_DIR") or str(instance / "render-cache"),
        "RENDER_CACHE_MAX_MB": _int_env("RENDER_CACHE_MAX_MB", 512),
        "INGEST_MAX_FILE_MB": _int_env("INGEST_MAX_FILE_MB", 1024),
        "STOW_MAX_REQUEST_MB": _int_env("STOW_MAX_REQUEST_MB", 8192),
        "INGEST_MAX_PIXELS": _int_env("INGEST_MAX_PIXELS", 1_000_000_000),
        "INGEST_MAX_INFLATE_MB": _int_env("INGEST_MAX_INFLATE_MB", 256),
        "INGEST_ZIP_MAX_MEMBERS": _int_env("INGEST_ZIP_MAX_MEMBERS", 20_000),
        "INGEST_ZIP_MAX_TOTAL_MB": _int_env("INGEST_ZIP_MAX_TOTAL_MB", 4096),
        "INGEST_MAX_DEID_MB": _int_env("INGEST_MAX_DEID_MB", 1024),
        **_paging_config(),
    }
    config.update(overrides or {})
    return config


def _paging_config() -> dict:
    """Slack, Twilio, viewing links and the dispatcher's channel fallback."""
    slack_api = _env("SLACK_API_URL", "https://slack.com/api/")
    twilio_api = _env("TWILIO_API_URL", "https://api.twilio.com")
    _check_url("SLACK_API_URL", slack_api, ("http", "https"))
    _check_url("TWILIO_API_URL", twilio_api, ("http", "https"))
    link_minutes = _int_env("LINK_MINUTES", 15, maximum=15)
    if link_minutes == 0:
        raise ConfigError(f"{PREFIX}LINK_MINUTES must be between 1 and 15")
    return {
        "SLACK_BOT_TOKEN": _env("SLACK_BOT_TOKEN"),
        "SLACK_SIGNING_SECRET": _env("SLACK_SIGNING_SECRET"),
        "SLACK_API_URL": slack_api.rstrip("/") + "/",
        "SLACK_TIMEOUT_SECONDS": _int_env("SLACK_TIMEOUT_SECONDS", 10),
        "TWILIO_ACCOUNT_SID": _env("TWILIO_ACCOUNT_SID"),
        "TWILIO_AUTH_TOKEN": _env("TWILIO_AUTH_TOKEN"),
        "TWILIO_FROM": _env("TWILIO_FROM"),
        "TWILIO_API_URL": twilio_api.rstrip("/"),
        "TWILIO_TIMEOUT_SECONDS": _int_env("TWILIO_TIMEOUT_SECONDS", 10),
        "LINK_LIFETIME": timedelta(minutes=link_minutes),
        "VIEWER_IDLE_TIMEOUT": timedelta(minutes=_int_env("VIEWER_IDLE_MINUTES", 20)),
        "VIEWER_ABSOLUTE_TIMEOUT": timedelta(hours=_int_env("VIEWER_ABSOLUTE_HOURS", 4)),
        "MOBILE_CODE_LIFETIME": timedelta(minutes=_int_env("MOBILE_CODE_MINUTES", 10)),
        "DISPATCH_FALLBACK_AFTER": _int_env("DISPATCH_FALLBACK_AFTER", 2),
    }


def _embedded_secret_key(instance: Path) -> str:
    """Return the development secret key kept in the instance folder, making it once."""
    instance.mkdir(parents=True, exist_ok=True)
    key_file = instance / "secret_key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()
