"""Blobs in a local folder, written atomically and fsynced."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from portal.errors import StorageError
from portal.storage.base import BlobNotFound, BlobStorage, check_key

_TMP = ".tmp"


class LocalStorage(BlobStorage):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / _TMP).mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomically(target, path)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"could not store blob {key!r}: {exc.strerror}") from exc

    def _write_atomically(self, target: Path, path: Path) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self.root / _TMP)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no blob {key!r}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_file():
            path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if (
                path.is_file()
                and not relative.startswith(_TMP + "/")
                and relative.startswith(prefix)
            ):
                yield relative

    def check(self) -> None:
        try:  # a probe of its own, so concurrent checks never trip over each other
            with tempfile.NamedTemporaryFile(dir=self.root / _TMP, prefix="healthz-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            raise StorageError(f"storage folder is not writable: {exc.strerror}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
