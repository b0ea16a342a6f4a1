"""Blob storage: a local folder or any S3 API, chosen by ``OVERREAD_STORAGE_URL``."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlparse

from flask import Flask

from portal.errors import ConfigError
from portal.storage.base import BlobStorage


def _local(url, config: dict) -> BlobStorage:
    from portal.storage.local import LocalStorage

    return LocalStorage(unquote(url.path))


def _s3(url, config: dict) -> BlobStorage:
    from portal.storage.s3 import S3Storage

    if not url.netloc:
        raise ConfigError("OVERREAD_STORAGE_URL must name a bucket: s3://bucket/prefix")
    return S3Storage(
        bucket=url.netloc,
        prefix=url.path.strip("/"),
        endpoint_url=config.get("S3_ENDPOINT_URL"),
        encryption=config.get("S3_SERVER_SIDE_ENCRYPTION", "AES256"),
    )


BACKENDS: dict[str, Callable[..., BlobStorage]] = {"file": _local, "s3": _s3}


def open_storage(storage_url: str, config: dict) -> BlobStorage:
    """Return the backend ``storage_url`` names.

    :raise ConfigError: the scheme is unknown.
    """
    url = urlparse(storage_url)
    try:
        factory = BACKENDS[url.scheme]
    except KeyError:
        raise ConfigError(f"OVERREAD_STORAGE_URL: unknown scheme {url.scheme!r}") from None
    return factory(url, config)


def init_app(app: Flask) -> None:
    app.extensions["overread_storage"] = open_storage(app.config["STORAGE_URL"], app.config)


def get_storage() -> BlobStorage:
    """Return the current app's blob store."""
    from flask import current_app

    return current_app.extensions["overread_storage"]
