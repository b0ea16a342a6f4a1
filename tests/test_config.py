"""Configuration from ``OVERREAD_*`` environment variables."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from portal.config import load_config
from portal.errors import ConfigError

SECRET = "a-production-secret-key-of-enough-length-0123"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OVERREAD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def env(monkeypatch):
    """``env(NAME=value, ...)`` sets ``OVERREAD_NAME``."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"OVERREAD_{name}", value)

    return set_env


def config_error(tmp_path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path), None)
    return str(caught.value)


# --- defaults -----------------------------------------------------------------
def test_defaults_live_under_the_instance_folder(tmp_path):
    config = load_config(str(tmp_path), None)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'overread.db'}"
    assert config["STORAGE_URL"] == (tmp_path / "storage").as_uri()
    assert config["ENV_NAME"] == "development"
    assert config["SMTP_HOST"] is None and config["S3_ENDPOINT_URL"] is None


def test_development_secret_key_is_made_once_and_kept_private(tmp_path):
    first = load_config(str(tmp_path), None)["SECRET_KEY"]
    assert len(first) >= 32
    assert load_config(str(tmp_path), None)["SECRET_KEY"] == first
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_overrides_win_over_the_environment(tmp_path, env):
    env(SMTP_HOST="mail.example.org")
    assert load_config(str(tmp_path), {"SMTP_HOST": "other"})["SMTP_HOST"] == "other"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/overread", "postgresql+psycopg://u:p@db:5432/overread"),
        ("postgresql://u:p@db/overread", "postgresql+psycopg://u:p@db/overread"),
        (
            "postgresql+psycopg://u@/overread?host=/run",
            "postgresql+psycopg://u@/overread?host=/run",
        ),
        ("sqlite:////var/lib/overread.db", "sqlite:////var/lib/overread.db"),
    ],
)
def test_database_url_gets_the_psycopg_driver(tmp_path, env, given, expected):
    env(DATABASE_URL=given)
    assert load_config(str(tmp_path), None)["SQLALCHEMY_DATABASE_URI"] == expected


@pytest.mark.parametrize("url", ["s3://bucket", "s3://bucket/some/prefix", "file:///srv/blobs"])
def test_storage_urls_accepted(tmp_path, env, url):
    env(STORAGE_URL=url)
    assert load_config(str(tmp_path), None)["STORAGE_URL"] == url


def test_environment_is_read(tmp_path, env):
    env(
        SMTP_HOST="mail.example.org",
        SMTP_PORT="2525",
        SMTP_STARTTLS="yes",
        DISPATCH_MAX_ATTEMPTS="3",
        S3_ENDPOINT_URL="http://127.0.0.1:8333",
        BASE_URL="https://overread.example.org/",
    )
    config = load_config(str(tmp_path), None)
    assert (config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_STARTTLS"]) == (
        "mail.example.org",
        2525,
        True,
    )
    assert config["DISPATCH_MAX_ATTEMPTS"] == 3
    assert config["S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert config["BASE_URL"] == "https://overread.example.org"
    assert config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(("value", "expected"), [("none", None), ("aws:kms", "aws:kms")])
def test_s3_encryption_can_be_chosen_or_turned_off(tmp_path, env, value, expected):
    assert load_config(str(tmp_path), None)["S3_SERVER_SIDE_ENCRYPTION"] == "AES256"
    env(S3_SERVER_SIDE_ENCRYPTION=value)
    assert load_config(str(tmp_path), None)["S3_SERVER_SIDE_ENCRYPTION"] == expected


# --- production -----------------------------------------------------------------
def test_production_needs_a_secret_key(tmp_path, env):
    env(ENV="production", BASE_URL="https://overread.example.org")
    assert "OVERREAD_SECRET_KEY" in config_error(tmp_path)
    assert not (tmp_path / "secret_key").exists()


def test_production_needs_https(tmp_path, env):
    env(ENV="production", SECRET_KEY=SECRET, BASE_URL="http://overread.example.org")
    assert "OVERREAD_BASE_URL" in config_error(tmp_path)


def test_production_config(tmp_path, env):
    env(ENV="production", SECRET_KEY=SECRET, BASE_URL="https://overread.example.org")
    config = load_config(str(tmp_path), None)
    assert (config["ENV_NAME"], config["SECRET_KEY"]) == ("production", SECRET)


# --- malformed values ------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "too-short"),
        ("DATABASE_URL", "mysql://u@db/overread"),
        ("DATABASE_URL", "overread.db"),
        ("DATABASE_URL", "postgresql://u@db:notaport/overread"),
        ("STORAGE_URL", "/srv/blobs"),
        ("STORAGE_URL", "ftp://blobs.example.org/x"),
        ("STORAGE_URL", "s3://"),
        ("STORAGE_URL", "file://srv/blobs"),
        ("STORAGE_URL", "file:blobs"),
        ("BASE_URL", "overread.example.org"),
        ("SMTP_PORT", "twenty-five"),
        ("SMTP_PORT", "-1"),
        ("SMTP_PORT", "70000"),
        ("DISPATCH_BATCH", "1.5"),
    ],
)
def test_malformed_values_are_named(tmp_path, env, name, value):
    env(**{name: value})
    assert f"OVERREAD_{name}" in config_error(tmp_path)


def test_instance_folder_needs_no_existing_files(tmp_path):
    instance = Path(tmp_path, "fresh", "instance")
    load_config(str(instance), None)
    assert (instance / "secret_key").is_file()
