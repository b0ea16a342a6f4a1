"""``flask demo``: demo accounts for trying Overread on one machine."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.auth import operations
from portal.auth.models import Role
from portal.extensions import db

DEMO_ACCOUNTS = (
    ("patient@demo.example.org", "Pat Demo", Role.PATIENT, "demo-patient-pass"),
    ("physician@demo.example.org", "Dr Phil Demo", Role.PHYSICIAN, "demo-physician-pass"),
    ("radiologist@demo.example.org", "Dr Rad Demo", Role.RADIOLOGIST, "demo-radiologist-pass"),
    ("admin@demo.example.org", "Ada Admin", Role.ADMIN, "demo-admin-pass"),
)


@click.command("demo")
@with_appcontext
def demo_command() -> None:
    """Create the demo accounts (once) and print their logins."""
    if current_app.config["ENV_NAME"] == "production":
        raise click.ClickException("demo accounts have published passwords; not in production")
    for email, name, role, password in DEMO_ACCOUNTS:
        if operations.find_user(email) is None:
            operations.create_user(email, name, role, password)
    db.session.commit()
    click.echo("Demo logins (radiologist and admin enrol an authenticator app at first sign-in):")
    for email, _, role, password in DEMO_ACCOUNTS:
        click.echo(f"  {role.value:<12} {email:<34} {password}")
