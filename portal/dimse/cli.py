"""``flask dicom ...``: run the DIMSE listener and manage the remote nodes allowed to push."""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from portal.dimse import nodes
from portal.dimse.listener import DicomListener
from portal.errors import OverreadError
from portal.extensions import db

dicom_cli = AppGroup("dicom", help="Receive studies over DICOM (C-ECHO, C-STORE).")
nodes_cli = AppGroup("nodes", help="Calling AE titles allowed to push, and their owners.")
dicom_cli.add_command(nodes_cli)


def _ae_title(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return nodes.normalise_ae_title(value)
    except OverreadError as exc:
        raise click.BadParameter(str(exc)) from None


@dicom_cli.command("listen")
@click.option("--port", type=click.IntRange(0, 65535), default=11112, show_default=True)
@click.option("--ae-title", default="OVERREAD", show_default=True, callback=_ae_title)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 for every interface.",
)
def listen_command(port: int, ae_title: str, host: str) -> None:
    """Answer C-ECHO and C-STORE until SIGINT or SIGTERM; ingest what arrives."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    spool_dir = Path(app.config["SPOOL_DIR"])
    spool_dir.mkdir(parents=True, exist_ok=True)
    # pynetdicom writes each incoming data set to a temporary file: let it land
    # in the spool folder, so moving it there for ingest is a rename.
    tempfile.tempdir = str(spool_dir)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # a line per PDU otherwise
    listener = DicomListener(app, ae_title)
    try:
        bound_host, bound_port = listener.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    click.echo(f"{ae_title} listening on {bound_host}:{bound_port}", err=True)
    signum = _wait_for_stop_signal()
    click.echo(f"{signal.Signals(signum).name}: stopping", err=True)
    listener.stop()


def _wait_for_stop_signal() -> int:
    """Block until SIGINT or SIGTERM arrives; return which."""
    received: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]


@nodes_cli.command("add")
@click.argument("ae_title", callback=_ae_title)
@click.option("--user", "email", required=True, help="The account pushed studies belong to.")
@click.option("--case", "case_number", help="Also attach what it sends to this case of the user's.")
@click.option("--description", default="", help="Where the node is, what it is.")
def add_command(ae_title: str, email: str, case_number: str | None, description: str) -> None:
    """Let AE_TITLE push studies, ingested for the account --user (and its case --case)."""
    try:
        node = nodes.add_node(ae_title, email, description, case_number=case_number)
    except OverreadError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    to_case = f", case {node.case.number}" if node.case is not None else ""
    click.echo(f"added {node.ae_title}: pushes go to {node.owner.email}{to_case}")


@nodes_cli.command("list")
def list_command() -> None:
    """List the registered nodes."""
    for node in nodes.list_nodes():
        state = "active" if node.active else "inactive"
        case = f"case {node.case.number}" if node.case is not None else ""
        line = f"{node.ae_title:<16}  {node.owner.email}  {state}  {case}".rstrip()
        click.echo(f"{line}  {node.description}".rstrip())


@nodes_cli.command("remove")
@click.argument("ae_title")
def remove_command(ae_title: str) -> None:
    """Stop accepting associations from AE_TITLE (what it sent stays)."""
    try:
        nodes.remove_node(ae_title)
    except OverreadError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"removed {ae_title.strip()}")
