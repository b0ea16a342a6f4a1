"""What one-instance STOW-RS could cost in Python: the durable work alone, under gunicorn.

Serves a bare WSGI app that does only what storing an instance durably needs
(SHA-256, create and write the file, read its header with ``dcmread``, fsync,
rename, fsync the folder, one SQLite insert) with nothing else: no Flask, no
token, no ORM, no audit row, no structural checks. It is not Overread and
stores nothing anyone reads; it sets the floor that Overread's own STOW-RS
(``bench_ingest.py``) is measured against. Prints instances/s, sequential and
from 4 clients, as ``bench_ingest.py`` sends them.

    .venv/bin/python scripts/bench_ingest_floor.py [--slices 300]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

import bench_ingest as bench
import pydicom

FLOOR_DIR = "OVERREAD_FLOOR_DIR"
_local = threading.local()


def _database(root: Path) -> sqlite3.Connection:
    if not hasattr(_local, "db"):
        db = sqlite3.connect(root / "index.db", isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS i (uid TEXT UNIQUE, sha256 TEXT, key TEXT)")
        _local.db = db
    return _local.db


def app(environ, start_response):
    """Store the one part of a STOW-RS body durably and answer its SOP Instance UID."""
    root = Path(os.environ[FLOOR_DIR])
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    boundary = environ["CONTENT_TYPE"].split("boundary=")[1].encode()
    start = body.index(b"\r\n\r\n") + 4
    data = memoryview(body)[start : body.index(b"\r\n--" + boundary, start)]
    digest = hashlib.sha256(data).hexdigest()
    spooled = root / "spool" / uuid.uuid4().hex
    fd = os.open(spooled, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(spooled, root / "blobs" / spooled.name)
    folder = os.open(root / "blobs", os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    db = _database(root)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO i VALUES (?, ?, ?)", (uid, digest, spooled.name))
    db.execute("COMMIT")
    answer = json.dumps({"00081199": {"vr": "SQ", "Value": [{"00081155": {"Value": [uid]}}]}})
    start_response("200 OK", [("Content-Type", "application/dicom+json")])
    return [answer.encode()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overread-floor-") as tmp:
        work = Path(tmp)
        for folder in ("spool", "blobs"):
            (work / "floor" / folder).mkdir(parents=True)
        series = bench.make_series(work / "series", args.slices)
        port = bench.free_port()
        web = bench.start_gunicorn(
            "bench_ingest_floor:app",
            port,
            cwd=Path(__file__).parent,
            env={**os.environ, FLOOR_DIR: str(work / "floor")},
        )
        try:
            bench.wait_or_stop([web], lambda: bench.wait_port(port))
            server = bench.Server("floor", f"http://127.0.0.1:{port}/studies", {}, 0, web)
            for clients in (1, 4):
                paths = bench.fresh_copies(series, work / f"clients-{clients}")
                started = time.perf_counter()
                bench.stow_all(server, paths, clients)
                rate = len(paths) / (time.perf_counter() - started)
                print(f"floor     STOW-RS {clients} client(s)  {rate:8.1f} inst/s", flush=True)
        finally:
            web.terminate()
            web.wait(30)


if __name__ == "__main__":
    main()
