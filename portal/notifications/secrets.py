"""Secrets made as a message is sent, so the outbox never stores them.

A row whose body holds ``{secret}`` and whose kind is listed here gets a
fresh secret from the maker just before each send attempt (a viewing link,
a phone verification code); the stored body keeps the placeholder. A maker
takes the row, writes what it must (a hashed link, a hashed code) and
commits; it returns the text to put in place of ``{secret}``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from portal.notifications.models import Notification

FILL_IN = "{secret}"

#: kind -> "module:function" taking the row and returning the secret text.
SECRET_MAKERS: dict[str, str] = {
    "case.link": "portal.links.operations:link_for_notification",
    "mobile.verify": "portal.oncall.profiles:code_for_notification",
}


def maker_for(kind: str) -> Callable[[Notification], str] | None:
    target = SECRET_MAKERS.get(kind)
    if target is None:
        return None
    module, name = target.split(":")
    return getattr(import_module(module), name)
