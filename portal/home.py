"""The landing page."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    return render_template("home.html")


@bp.app_context_processor
def template_globals() -> dict:
    from portal import clock

    return {"now": clock.now}
