"""The viewer's JSON manifest and rendered frames, under ``/viewer/<number>/``."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("viewer", __name__)
