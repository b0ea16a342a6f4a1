"""The blob store interface every backend implements."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from portal.errors import StorageError

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class BlobNotFound(StorageError):
    """No blob is stored under this key."""

    status_code = 404
    title = "Not found"


def check_key(key: str) -> str:
    """:raise StorageError: ``key`` is not a plain relative path of safe characters."""
    if len(key) > 512 or not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"unsafe storage key {key!r}")
    return key


class BlobStorage(ABC):
    """Where file bytes live; keys are opaque, PHI-free relative paths."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``; durable once this returns."""

    def put_files(self, blobs: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        """Store each ``(key, path)`` pair; every one is durable once this returns.

        A backend may make a batch durable at less cost than one file at a time
        (one folder sync for many files). When this raises, some of the blobs
        may be stored: the caller removes them by key.

        :param move: the files may be moved into the store rather than copied;
            whether each ``path`` still exists afterwards is then up to the backend.
        """
        for key, path in blobs:
            self.put_file(key, path)

    def prepare_files(self, paths: Sequence[Path]) -> None:  # noqa: B027 - a hint: no-op by default
        """Start, in the background, what storing these files with ``move`` will take.

        A hint that lets the caller's own work (checking the files, say)
        overlap with the store's; :meth:`put_files` works with or without it.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Return a readable binary stream of the blob; :raise BlobNotFound:."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob if it exists."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Tell whether a blob is stored under ``key``."""

    @abstractmethod
    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key under ``prefix``."""

    @abstractmethod
    def check(self) -> None:
        """:raise StorageError: the store cannot be reached or written."""
