"""What one-instance STOW-RS costs in Python, and where Overread's time goes, under gunicorn.

Prints instances/s, sequential and from 4 clients, as ``bench_ingest.py`` sends
them, for two things:

* **The floor**: a bare WSGI app that does only what storing an instance
  durably needs (SHA-256, create and write the file, read its header with
  ``dcmread``, fsync, rename, fsync the folder, one SQLite insert) with nothing
  else: no Flask, no token, no ORM, no audit row, no structural checks. It is
  not Overread and stores nothing anyone reads.
* **The ladder**: Overread's own app with its STOW-RS view cut short after each
  stage of the ingest path, each stage adding one to the one before: the token
  check and the body read (``token``), the multipart parse into spool files
  (``spool``), the header checks (``check``), the blobs made durable
  (``durable``), and Overread as it is, whose index and audit transaction
  comes last (``full``). The stages short of ``full`` answer without indexing
  anything.

Orthanc gets the same requests in the same run when it is installed, as in
``bench_ingest.py``: this machine's speed drifts too much to compare across runs.

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
STAGE = "OVERREAD_BENCH_STAGE"
STAGES = ("token", "spool", "check", "durable", "full")
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


def staged_app():
    """Return Overread's app with its STOW-RS view cut short after the stage named by ``STAGE``."""
    from app import app as overread

    stage = os.environ[STAGE]
    if stage != "full":

        def store_instances(study_uid: str | None = None):
            return _stow_until(stage, study_uid)

        overread.view_functions["dicomweb.store_instances"] = store_instances
    return overread


def _stow_until(stage: str, study_uid: str | None = None):
    """Do the work of Overread's STOW-RS view up to ``stage``; index nothing."""
    from flask import Response, g, request
    from werkzeug.wsgi import get_input_stream

    from portal.dicomweb.multipart import boundary_of, spool_parts
    from portal.storage import get_storage
    from portal.studies.blobkeys import new_instance_key
    from portal.studies.ingest import current_limits
    from portal.studies.pipeline import check_spooled
    from portal.studies.sources import describe_upload

    body = get_input_stream(request.environ, max_content_length=None)
    limits = current_limits()
    if stage == "token":
        while body.read(2**20):
            pass
        return Response("{}", mimetype="application/dicom+json")
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    parts = spool_parts(body, boundary, limits.max_file_bytes, limits.spool_dir)
    try:
        files = [part.spooled for part in parts if part.spooled]
        if stage != "spool":
            get_storage().prepare_files([file.path for file in files])
            for file in files:
                check_spooled(file, describe_upload("part", g.api_user.id, limits))
        if stage == "durable":
            get_storage().put_files([(new_instance_key(), file.path) for file in files], move=True)
    finally:
        for part in parts:
            part.discard()
    return Response("{}", mimetype="application/dicom+json")


def send(server: bench.Server, series: list[Path], work: Path) -> None:
    """Send fresh copies of ``series`` from 1, then 4 clients; print instances/s."""
    for clients in (1, 4):
        paths = bench.fresh_copies(series, work / f"{server.name}-{clients}")
        started = time.perf_counter()
        bench.stow_all(server, paths, clients)
        rate = len(paths) / (time.perf_counter() - started)
        print(f"{server.name:<17} STOW-RS {clients} client(s) {rate:8.1f} inst/s", flush=True)


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
            floor = bench.Server("floor", f"http://127.0.0.1:{port}/studies", {}, 0, web)
            send(floor, series, work)
        finally:
            web.terminate()
            web.wait(30)
        for stage in STAGES:
            _run_stage(stage, series, work)
        if Path(bench.ORTHANC).exists():
            orthanc = bench.start_orthanc(work)
            try:
                send(orthanc, series, work)
            finally:
                orthanc.process.terminate()
                orthanc.process.wait(30)


def _run_stage(stage: str, series: list[Path], work: Path) -> None:
    env = {STAGE: stage, "PYTHONPATH": str(Path(__file__).parent)}
    server, listener = bench.start_overread(work / stage, "bench_ingest_floor:staged_app()", env)
    server.name = f"Overread {stage}"
    try:
        send(server, series, work)
    finally:
        for process in (server.process, listener):
            if process:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
