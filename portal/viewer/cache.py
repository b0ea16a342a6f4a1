"""A disk cache of rendered images, named by the hash of what was asked, capped in size.

Entries are written under a temporary name and renamed into place, so a reader
sees a whole file or none, from any worker. A hit refreshes the entry's mtime
(at most once a minute); when the folder grows past its cap the least recently
used entries, by mtime, are removed until it is back under nine tenths of it.
The cache holds PHI (pixels): it lives in the instance folder, not in /tmp.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
TOUCH_AFTER_SECONDS = 60
_TMP_PREFIX = ".tmp-"


class RenderCache:
    """Rendered outputs under ``root``, at most about ``max_bytes`` of them."""

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._written_since_check = 0
        self._lock = threading.Lock()

    def _path(self, key: str, extension: str) -> Path:
        return self.root / key[:2] / f"{key}.{extension}"

    def get(self, key: str, extension: str) -> bytes | None:
        """Return the cached bytes for ``key``, or ``None``."""
        path = self._path(key, extension)
        try:
            with open(path, "rb") as handle:
                body = handle.read()
                mtime = os.fstat(handle.fileno()).st_mtime
        except OSError:
            return None
        if time.time() - mtime > TOUCH_AFTER_SECONDS:
            with contextlib.suppress(OSError):  # evicted meanwhile: still a hit
                os.utime(path)
        return body

    def put(self, key: str, extension: str, body: bytes) -> None:
        """Store ``body`` for ``key``; a failure to write is logged, never raised."""
        path = self._path(key, extension)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.warning("render cache: could not write an entry: %s", exc.strerror)
            return
        self._note_written(len(body))

    def _note_written(self, size: int) -> None:
        with self._lock:
            self._written_since_check += size
            due = self._written_since_check > self.max_bytes // 20
            if due:
                self._written_since_check = 0
        if due:
            self.evict()

    def evict(self) -> int:
        """Remove least recently used entries until under 90% of the cap; return how many."""
        entries = sorted(self._entries(), key=lambda entry: entry[0])
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= self.max_bytes * 0.9:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("render cache: could not evict an entry: %s", exc.strerror)
                continue
            total -= size
            removed += 1
        return removed

    def _entries(self) -> Iterator[tuple[float, int, Path]]:
        """Yield (mtime, size, path) of every entry (stale temporary files count too)."""
        try:
            folders = list(os.scandir(self.root))
        except OSError:
            return
        for folder in folders:
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                if entry.name.startswith(_TMP_PREFIX) and time.time() - stat.st_mtime < 3600:
                    continue  # being written now
                yield stat.st_mtime, stat.st_size, Path(entry.path)

    def size(self) -> int:
        """Bytes held now."""
        return sum(size for _, size, _ in self._entries())

    def clear(self) -> None:
        """Remove every entry (benchmarks measure cold renders with this)."""
        for _, _, path in self._entries():
            path.unlink(missing_ok=True)
