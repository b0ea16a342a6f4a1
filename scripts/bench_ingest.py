"""Ingest benchmark: STOW-RS (sequential and concurrent) and C-STORE, Overread beside Orthanc.

Generates a synthetic CT series (512x512, 16-bit, explicit VR little endian), starts
Overread under gunicorn on loopback with its own SQLite database and storage folder,
and reports instances/s, MB/s and the server's peak resident memory. STOW-RS runs
one instance per request (sequential, then concurrent clients) and then, as most
STOW-RS clients send a study, ``--per-request`` instances per request. When Debian's
``orthanc`` and ``orthanc-dicomweb`` are installed, Orthanc gets the same files over
the same transports in the same run.

    .venv/bin/python scripts/bench_ingest.py [--slices 300] [--clients 4] [--per-request 50]
        [--no-orthanc]

Only loopback addresses are used; every loop is bounded by the number of slices.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import requests
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.synthetic import ct_slice  # noqa: E402

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ORTHANC_PLUGINS = "/usr/share/orthanc/plugins"


# --- data -----------------------------------------------------------------------
def make_series(folder: Path, slices: int, size: int = 512) -> list[Path]:
    """Write ``slices`` CT files of one new study into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    base = (rng.normal(40, 300, (size, size))).astype(np.int16)
    paths = []
    for index in range(slices):
        path = folder / f"ct{index:05d}.dcm"
        hu = np.roll(base, index, axis=0)
        ds = ct_slice(
            hu,
            study=study,
            series=series,
            number=index + 1,
            PatientName="BENCH^SYNTHETIC",
            PatientID="BENCH-1",
            ImagePositionPatient=[0, 0, float(index)],
        )
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def fresh_copies(paths: list[Path], folder: Path) -> list[Path]:
    """Copy a series with new UIDs, so a second run is not all duplicates."""
    from pydicom import dcmread

    folder.mkdir(parents=True, exist_ok=True)
    study, series, copies = generate_uid(), generate_uid(), []
    for path in paths:
        ds = dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copies.append(folder / path.name)
        ds.save_as(copies[-1], enforce_file_format=True)
    return copies


# --- servers --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class PeakMemory:
    """Poll a process tree's resident memory (sum over processes) until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(0.05)


@dataclass
class Server:
    name: str
    stow_url: str
    headers: dict
    dicom_port: int | None
    process: subprocess.Popen
    ae_title: str = "OVERREAD"


def start_overread(
    work: Path, app: str = "app:app", env_extra: dict[str, str] | None = None
) -> tuple[Server, subprocess.Popen | None]:
    """Start Overread's web app (``app``, as gunicorn names it) and its DIMSE listener."""
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **(env_extra or {}),
        "OVERREAD_DATABASE_URL": f"sqlite:///{work / 'overread.db'}",
        "OVERREAD_STORAGE_URL": (work / "storage").as_uri(),
        "OVERREAD_SPOOL_DIR": str(work / "spool"),
        "OVERREAD_SECRET_KEY": uuid.uuid4().hex * 2,
        "FLASK_APP": "app",
    }
    flask = [str(Path(sys.executable).parent / "flask")]

    def run(*args, **kw):
        return subprocess.run(
            [*flask, *args],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            **kw,
        )

    run("db", "upgrade")
    run(
        "users",
        "create",
        "bench@example.org",
        "--role",
        "admin",
        "--password-stdin",
        input="bench password 123\n",
    )
    token = run("users", "token", "bench@example.org").stdout.strip().splitlines()[-1]
    run("dicom", "nodes", "add", "BENCHSCU", "--user", "bench@example.org")
    port = free_port()
    env["OVERREAD_BASE_URL"] = f"http://127.0.0.1:{port}"
    web = start_gunicorn(app, port, cwd=ROOT, env=env)
    wait_or_stop([web], lambda: wait_http(f"http://127.0.0.1:{port}/healthz"))
    dicom_port = free_port()
    listener = subprocess.Popen(
        [*flask, "dicom", "listen", "--port", str(dicom_port), "--ae-title", "OVERREAD"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_or_stop([listener, web], lambda: wait_port(dicom_port))
    server = Server(
        "Overread",
        f"http://127.0.0.1:{port}/dicomweb/studies",
        {"Authorization": f"Bearer {token}"},
        dicom_port,
        web,
    )
    return server, listener


def start_gunicorn(app: str, port: int, *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Serve the WSGI ``app`` ("module:name") on loopback: 2 workers x 4 threads, as benchmarked."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-w",
            "2",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "600",
            app,
        ],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_orthanc(work: Path) -> Server:
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(work / "orthanc"),
        "IndexDirectory": str(work / "orthanc"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [ORTHANC_PLUGINS],
        "DicomCheckCalledAet": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpBindAddress": "127.0.0.1",
        "DicomTcpNoDelay": True,
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [ORTHANC, str(work / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_or_stop([process], lambda: wait_http(f"http://127.0.0.1:{http_port}/system"))
    return Server(
        "Orthanc",
        f"http://127.0.0.1:{http_port}/dicom-web/studies",
        {},
        dicom_port,
        process,
        ae_title="ORTHANC",
    )


def wait_or_stop(processes: list[subprocess.Popen], wait: Callable[[], None]) -> None:
    """Wait for a server to answer; stop ``processes`` if it never does."""
    try:
        wait()
    except BaseException:
        for process in processes:
            process.terminate()
            process.wait(30)
        raise


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port}")


# --- transports -----------------------------------------------------------------
def stow_one(server: Server, paths: list[Path], session: requests.Session) -> None:
    """Send ``paths`` in one STOW-RS request."""
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + path.read_bytes()
            + b"\r\n"
            for path in paths
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {
        **server.headers,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
    }
    response = session.post(server.stow_url, data=body, headers=headers, timeout=600)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} STOW answered {response.status_code}")


def stow_all(server: Server, paths: list[Path], clients: int, per_request: int = 1) -> None:
    """Send ``paths`` from ``clients`` threads, ``per_request`` instances in each request."""
    chunks = [paths[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def worker(files: list[Path]) -> None:
        with requests.Session() as session:
            try:
                for start in range(0, len(files), per_request):
                    stow_one(server, files[start : start + per_request], session)
            except BaseException as exc:  # report after the run
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def cstore_all(server: Server, paths: list[Path]) -> None:
    from pydicom import dcmread
    from pynetdicom import AE

    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    if not assoc.is_established:
        raise RuntimeError(f"{server.name} refused the association")
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for path in paths:
            status = assoc.send_c_store(dcmread(path))
            if status.Status != 0:
                raise RuntimeError(f"{server.name} C-STORE status 0x{status.Status:04X}")
    finally:
        assoc.release()


def measure(label: str, server: Server, paths: list[Path], send: Callable) -> dict:
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    with PeakMemory(server.process.pid) as memory:
        started = time.perf_counter()
        send()
        seconds = time.perf_counter() - started
    row = {
        "server": server.name,
        "transport": label,
        "instances": len(paths),
        "seconds": round(seconds, 2),
        "instances_per_s": round(len(paths) / seconds, 1),
        "mb_per_s": round(megabytes / seconds, 1),
        "peak_rss_mb": round(memory.peak / 2**20),
    }
    print(
        f"{row['server']:<9} {label:<22} {row['instances_per_s']:>8} inst/s "
        f"{row['mb_per_s']:>7} MB/s  peak RSS {row['peak_rss_mb']} MB",
        flush=True,
    )
    return row


def bench_server(
    server: Server,
    series: list[Path],
    work: Path,
    clients: int,
    per_request: int,
    listener_pid: int | None,
) -> list[dict]:
    rows = []
    sequential = fresh_copies(series, work / f"{server.name}-seq")
    rows.append(
        measure("STOW-RS sequential", server, sequential, lambda: stow_all(server, sequential, 1))
    )
    parallel = fresh_copies(series, work / f"{server.name}-par")
    rows.append(
        measure(
            f"STOW-RS {clients} clients",
            server,
            parallel,
            lambda: stow_all(server, parallel, clients),
        )
    )
    if per_request > 1:
        batched = fresh_copies(series, work / f"{server.name}-batched")
        rows.append(
            measure(
                f"STOW-RS {per_request}/request",
                server,
                batched,
                lambda: stow_all(server, batched, 1, per_request),
            )
        )
    pushed = fresh_copies(series, work / f"{server.name}-cstore")
    target = (
        server
        if listener_pid is None
        else Server(
            server.name,
            server.stow_url,
            server.headers,
            server.dicom_port,
            psutil.Process(listener_pid),
            server.ae_title,
        )
    )  # type: ignore[arg-type]
    rows.append(measure("C-STORE (1 assoc.)", target, pushed, lambda: cstore_all(server, pushed)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--per-request",
        type=int,
        default=50,
        help="instances per STOW-RS request in the batched run (1: no batched run)",
    )
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overread-bench-") as tmp:
        work = Path(tmp)
        series = make_series(work / "series", args.slices)
        size = sum(p.stat().st_size for p in series) / 1e6
        print(f"{args.slices} CT slices, 512x512 16-bit, {size:.0f} MB per run", flush=True)
        rows = _run_overread(work, series, args.clients, args.per_request)
        if not args.no_orthanc and Path(ORTHANC).exists():
            rows += _run_orthanc(work, series, args.clients, args.per_request)
        elif not args.no_orthanc:
            print("Orthanc not installed (apt-get install orthanc orthanc-dicomweb): skipped")
        print(json.dumps(rows, indent=1))


def _run_overread(work: Path, series: list[Path], clients: int, per_request: int) -> list[dict]:
    server, listener = start_overread(work / "overread")
    try:
        return bench_server(server, series, work, clients, per_request, listener.pid)
    finally:
        for process in (server.process, listener):
            if process:
                process.terminate()
                process.wait(30)


def _run_orthanc(work: Path, series: list[Path], clients: int, per_request: int) -> list[dict]:
    server = start_orthanc(work)
    try:
        return bench_server(server, series, work, clients, per_request, None)
    finally:
        server.process.terminate()
        server.process.wait(30)


if __name__ == "__main__":
    main()
