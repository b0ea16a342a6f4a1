"""``flask users ...``: scripted account set-up."""

from __future__ import annotations

import sys

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import AppGroup

from portal.auth import api_tokens, operations
from portal.auth.models import Role
from portal.errors import OverreadError
from portal.extensions import db

users_cli = AppGroup("users", help="Create accounts and API tokens.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default=None, help="Display name (defaults to the email's local part).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_command(email: str, role: str, name: str | None, password_stdin: bool) -> None:
    """Create an account with ROLE for EMAIL."""
    if not password_stdin:
        raise click.UsageError("pass --password-stdin and give the password on standard input")
    _check_email(email)
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = operations.create_user(email, name or email.split("@")[0], role, password)
    except OverreadError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created {user.role} {user.email} (id {user.id})")


def _check_email(email: str) -> None:
    """Apply the sign-in form's rule, so every account made here can sign in."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise click.BadParameter(
            f"{email!r} is not a valid email address: {exc}", param_hint="EMAIL"
        ) from None


@users_cli.command("token")
@click.argument("email")
@click.option("--name", default="command line", help="A label shown on the user's page.")
def token_command(email: str, name: str) -> None:
    """Issue an API token for EMAIL; the token alone is printed on the last line."""
    user = operations.find_user(email)
    if user is None or not user.active:
        raise click.ClickException(f"no active account for {email}")
    raw = api_tokens.issue_api_token(user, name)
    db.session.commit()
    click.echo(f"API token for {user.email} (shown once; revoke it on the account page):")
    click.echo(raw)
