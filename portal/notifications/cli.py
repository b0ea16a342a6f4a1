"""``flask dispatch``: the outbox worker."""

from __future__ import annotations

import logging
import signal
import threading

import click
from flask.cli import with_appcontext

from portal.notifications.dispatcher import dispatch_once, run_forever

logger = logging.getLogger(__name__)


@click.command("dispatch")
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--poll", default=0.5, show_default=True, help="Seconds between passes.")
@with_appcontext
def dispatch_command(once: bool, poll: float) -> None:
    """Deliver due notifications until stopped."""
    if once:
        click.echo(f"dispatched {dispatch_once()} notifications")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logger.info("dispatcher started")
    run_forever(stop, poll)
    logger.info("dispatcher stopped")
