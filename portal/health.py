"""``GET /healthz``: is the database and the blob store answering?"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from portal.extensions import db, limiter

logger = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    checks = {"database": _check_database(), "storage": _check_storage()}
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks}
    return jsonify(body), 200 if healthy else 503


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as exc:  # any driver error means "down"
        logger.warning("health: database check failed: %s", exc.__class__.__name__)
        db.session.rollback()
        return "error"
    return "ok"


def _check_storage() -> str:
    try:
        current_app.extensions["overread_storage"].check()
    except Exception as exc:  # any backend error means "down"
        logger.warning("health: storage check failed: %s", exc.__class__.__name__)
        return "error"
    return "ok"
