"""``flask storage verify``: check every instance blob against the study index."""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import with_appcontext

from portal.errors import StorageError
from portal.studies.verify import VerifyReport, verify_storage


@click.command("verify")
@click.option(
    "--repair-orphans",
    is_flag=True,
    help="Remove blobs no instance row points to (and nothing else).",
)
@click.option(
    "--grace-minutes",
    type=click.IntRange(min=0),
    default=60,
    show_default=True,
    help="Orphans younger than this may be ingests in flight: listed, left alone.",
)
@with_appcontext
def verify_command(repair_orphans: bool, grace_minutes: int) -> None:
    """Re-read every instance blob, check its SHA-256, and find orphaned blobs.

    Exits with status 1 when a blob is missing or corrupt, or an orphan remains.
    """
    try:
        report = verify_storage(
            repair_orphans=repair_orphans, grace=timedelta(minutes=grace_minutes)
        )
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_report(report, grace_minutes)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _print_report(report: VerifyReport, grace_minutes: int) -> None:
    for instance_id, key in report.missing:
        click.echo(f"missing: instance {instance_id} blob {key}")
    for instance_id, key in report.corrupt:
        click.echo(f"corrupt: instance {instance_id} blob {key} (SHA-256 differs)")
    removed = set(report.removed)
    for key in report.orphans:
        click.echo(f"orphan{' removed' if key in removed else ''}: {key}")
    for key in report.in_flight:
        click.echo(f"in flight (younger than {grace_minutes} min), left alone: {key}")
    click.echo(
        f"storage verify: {report.checked} instance blobs checked,"
        f" {len(report.missing)} missing, {len(report.corrupt)} corrupt,"
        f" {len(report.orphans)} orphaned ({len(report.removed)} removed)"
    )
