"""Sessions, access checks and the security headers on every response."""

from __future__ import annotations

from datetime import datetime
from functools import wraps

from flask import Flask, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal import clock
from portal.audit.operations import record_now
from portal.auth.models import User
from portal.errors import PermissionDenied
from portal.extensions import db, login_manager

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.user_loader(load_user)
    app.before_request(enforce_session_timeouts)
    app.after_request(set_security_headers)


def load_user(session_id: str) -> User | None:
    """Return the user for a session id, or ``None`` once it was ended."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def start_session(user: User) -> None:
    """Sign ``user`` in on a fresh session with the timeout clocks started."""
    session.clear()
    login_user(user)
    stamp = clock.now().isoformat()
    session["login_at"] = stamp
    session["seen_at"] = stamp
    session.permanent = True


def end_session() -> None:
    logout_user()
    session.clear()


def enforce_session_timeouts():
    """End a session that was idle or open for too long."""
    if not current_user.is_authenticated or request.endpoint == "static":
        return None
    now = clock.now()
    config = current_app.config
    login_at = _parse(session.get("login_at"))
    seen_at = _parse(session.get("seen_at"))
    expired = (
        login_at is None
        or seen_at is None
        or now - login_at > config["SESSION_ABSOLUTE_TIMEOUT"]
        or now - seen_at > config["SESSION_IDLE_TIMEOUT"]
    )
    if expired:
        end_session()
        flash("Your session has ended. Please sign in again.", "info")
        # Come back here after signing in, unless this was a form post (GET would 405).
        back = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.login", next=back))
    session["seen_at"] = now.isoformat()
    return None


def _parse(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def set_security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    if current_user.is_authenticated:
        headers.setdefault("Cache-Control", "no-store")
    return response


def deny(reason: str) -> PermissionDenied:
    """Audit a refused access and return the error to raise."""
    actor = current_user if current_user.is_authenticated else None
    record_now("authz.denied", actor, target=request.path[:200], reason=reason)
    return PermissionDenied("You do not have access to this page.")


def role_required(*roles: str):
    """Let only signed-in users with one of ``roles`` through; audit the others."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                raise deny(f"role {current_user.role} is not one of {', '.join(roles)}")
            return view(*args, **kwargs)

        return wrapped

    return decorator
