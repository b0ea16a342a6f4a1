"""The ``/dicomweb`` blueprint: bearer tokens only, no cookies, no CSRF."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from portal.audit.operations import record_now
from portal.auth.api_tokens import authenticate_api_token
from portal.extensions import csrf

bp = Blueprint("dicomweb", __name__, url_prefix="/dicomweb")
csrf.exempt(bp)


@bp.before_request
def authenticate_bearer():
    """Resolve ``Authorization: Bearer <token>`` to a user, or answer 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = authenticate_api_token(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        record_now(
            "api.auth_failed",
            target=request.path[:200],
            reason="no token" if not token else "unknown or revoked token",
        )
        response = jsonify(
            error="Unauthorized",
            message="Send Authorization: Bearer <token>; make one with "
            "`flask --app app users token EMAIL`.",
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="overread"'
        return response
    g.api_user = user
    return None
