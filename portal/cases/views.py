"""Web pages of the cases package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("cases", __name__, url_prefix="/cases")


@bp.get("/")
def index():  # placeholder until the case pages land
    return "cases"


@bp.get("/queue")
def queue():  # placeholder until the admin queue lands
    return "queue"
