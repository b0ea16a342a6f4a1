"""``flask storage ...``: look after the blob store."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from portal.errors import StorageError
from portal.storage import get_storage

storage_cli = AppGroup("storage", help="Check the blob store.")


@storage_cli.command("check")
def check_command() -> None:
    """Check that the blob store answers (a folder must be writable, a bucket must exist)."""
    try:
        get_storage().check()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("storage ok")
