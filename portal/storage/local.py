"""Blobs in a local folder, written atomically and fsynced.

A blob is copied to a temporary file (or, when the caller allows it, the file
itself is taken), fsynced, renamed into place, and its folder fsynced: it is
durable, and whole, once ``put_file`` returns. A batch (``put_files``) fsyncs
each file, and each folder once.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from portal.errors import StorageError
from portal.storage.base import BlobNotFound, BlobStorage, check_key

_TMP = ".tmp"
SYNC_THREADS = 8  # files of a batch fsynced at once
_AHEAD = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="blob-sync-ahead")


class LocalStorage(BlobStorage):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / _TMP).mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, path: Path) -> None:
        self.put_files([(key, path)])

    def put_files(self, blobs: Sequence[tuple[str, Path]], *, move: bool = False) -> None:
        """Store each file durably; with ``move``, rename it into place unless that needs a copy.

        Files to move are fsynced side by side first: the file system writes
        them out together, and no name points to a file before its data is down.
        """
        targets = [(key, path, self._path(key)) for key, path in blobs]
        if move:
            _sync_files(targets)
        changed: set[Path] = set()  # folders whose entries must reach the disk
        for key, path, target in targets:
            try:
                changed |= _make_folder(target.parent)
                if not (move and _rename_into_place(path, target)):
                    self._write_atomically(target, path)
            except OSError as exc:
                raise StorageError(f"could not store blob {key!r}: {exc.strerror}") from exc
        try:
            for folder in sorted(changed):
                _fsync_dir(folder)
        except OSError as exc:
            raise StorageError(f"could not sync the storage folder: {exc.strerror}") from exc

    def prepare_files(self, paths: Sequence[Path]) -> None:
        """Write the files' data to disk (fsync) in the background, while the caller goes on.

        :meth:`put_files` syncs each file again (which waits for any sync
        still under way, and costs little once the data is down) and reports
        any failure.
        """
        for path in paths:
            _AHEAD.submit(_sync_ahead, path)

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


def _make_folder(folder: Path) -> set[Path]:
    """Make ``folder`` if need be; return the folders whose entries it changes."""
    if folder.is_dir():
        return {folder}
    missing = [folder, *(parent for parent in folder.parents if not parent.is_dir())]
    folder.mkdir(parents=True, exist_ok=True)
    return {folder, *(made.parent for made in missing)}


def _sync_files(targets: list[tuple[str, Path, Path]]) -> None:
    """Make each file private (mode 0600, as ``mkstemp`` makes a copy) and fsync it.

    Several at once: each ``fsync`` waits for the disk without the GIL, and
    the file system commits their metadata together.

    :raise StorageError: naming the blob whose file could not be synced.
    """
    if len(targets) == 1:
        _sync_file(*targets[0])
        return
    with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="blob-sync") as pool:
        for done in [pool.submit(_sync_file, *target) for target in targets]:
            done.result()


def _sync_file(key: str, path: Path, target: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            if os.fstat(fd).st_mode & 0o777 != 0o600:
                os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"could not store blob {key!r}: {exc.strerror}") from exc


def _sync_ahead(path: Path) -> None:
    """Write a file's data to disk if it can; failures are for :func:`_sync_file` to report."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rename_into_place(path: Path, target: Path) -> bool:
    """Rename the synced file at ``path`` to ``target``; ``False`` if that needs a copy.

    A rename cannot cross file systems (the spool folder may be on another one).
    """
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
