"""``flask audit ...``: check the audit chain."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from portal.audit.operations import verify_chain

audit_cli = AppGroup("audit", help="Check the audit log.")


@audit_cli.command("verify")
def verify_command() -> None:
    """Re-hash the whole chain and report the first broken link."""
    report = verify_chain()
    if report.ok:
        click.echo(f"audit chain ok: {report.checked} events")
        return
    raise click.ClickException(
        f"audit chain broken at event {report.broken_seq}: {report.reason} "
        f"({report.checked} events before it are intact)"
    )
