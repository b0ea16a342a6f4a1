"""Entry point for ``flask --app app``: builds the Overread application."""

from portal import create_app

app = create_app()
