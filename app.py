"""Entry point for ``flask --app app``: builds the Overread application with its bots."""

import bot
from portal import create_app

app = bot.init_app(create_app())
