"""On-call pages: who is on call, schedules and policies (admins), paging profiles."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("oncall", __name__)
