"""Viewing links: redeem ``/l/<code>`` with a PIN or TOTP code into a viewer session."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("links", __name__)
