"""Turn errors into pages (or JSON for API clients) in one place."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal.errors import OverreadError
from portal.extensions import db

logger = logging.getLogger(__name__)
API_PREFIXES = ("/dicomweb", "/healthz", "/slack", "/sms")


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES) or (
        request.accept_mimetypes.best == "application/json"
    )


def _render(status: int, title: str, message: str):
    if _wants_json():
        return jsonify(error=title, message=message), status
    return render_template("error.html", status=status, title=title, message=message), status


def _size(count: int) -> str:
    """Return ``count`` bytes in the largest unit it fills, such as ``64 MB`` or ``1.5 KB``."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= scale:
            return f"{round(count / scale, 1):g} {unit}"
    return f"{count} bytes"


def init_app(app: Flask) -> None:
    @app.errorhandler(OverreadError)
    def overread_error(error: OverreadError):
        db.session.rollback()
        return _render(error.status_code, error.title, str(error))

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render(
            400,
            "Form expired",
            "This form was missing its security token or it expired. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(413)
    def too_large(error):
        limit = request.max_content_length  # this request's cap: STOW-RS has its own
        message = (
            f"Requests are limited to {_size(limit)}."
            if limit
            else "This request is larger than the server accepts."
        )
        return _render(413, "Too large", message)

    @app.errorhandler(429)
    def too_many(error):
        return _render(
            429,
            "Too many attempts",
            "Too many requests in a short time. Wait a minute and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _render(error.code or 500, error.name, error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return _render(
            500,
            "Something went wrong",
            "The error was logged. Nothing you had already saved is lost.",
        )
