"""Web pages of the shares package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("shares", __name__)
