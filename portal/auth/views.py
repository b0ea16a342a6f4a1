"""Sign-in, second factor, registration, invites and password resets."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required

from portal import clock
from portal.audit.operations import record
from portal.auth import account_links, operations, totp
from portal.auth.forms import (
    AcceptInviteForm,
    CodeForm,
    ForgotPasswordForm,
    LoginForm,
    RegisterForm,
    SetPasswordForm,
)
from portal.auth.models import Role, User
from portal.errors import AuthenticationFailed, OverreadError
from portal.extensions import db, limiter
from portal.security import end_session, start_session

bp = Blueprint("auth", __name__)
PENDING_LIFETIME = timedelta(minutes=5)


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _safe_next(default: str) -> str:
    """Return ``?next=`` if it is a path on this site, else ``default``.

    Backslashes and control characters are refused too: browsers read ``/\\host`` and
    ``/<tab>/host`` as ``//host``, another site.
    """
    target = request.args.get("next", "")
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in target)
    ):
        return default
    return target


def _home_for(user: User) -> str:
    return url_for("admin.users") if user.role == Role.ADMIN else url_for("home.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = operations.authenticate(form.email.data, form.password.data)
        except AuthenticationFailed as exc:
            db.session.commit()  # keep the failure count and its audit row
            form.password.errors.append(str(exc))
            return render_template("auth/login.html", form=form), 401
        if user.role_enum.needs_totp:
            return _begin_second_factor(user)
        return _complete_login(user)
    return render_template("auth/login.html", form=form)


def _begin_second_factor(user: User):
    db.session.commit()
    session.clear()
    session["mfa"] = {
        "uid": user.id,
        "ver": user.session_version,
        "at": clock.now().isoformat(),
        "next": _safe_next(""),
    }
    return redirect(url_for("auth.second_factor" if user.totp_enrolled else "auth.enrol_totp"))


def _complete_login(user: User, next_url: str | None = None):
    operations.finish_login(user)
    db.session.commit()
    start_session(user)
    return redirect(next_url or _safe_next(_home_for(user)))


def _pending_user() -> User | None:
    pending = session.get("mfa")
    if not pending:
        return None
    started = clock.now() - PENDING_LIFETIME
    user = db.session.get(User, pending["uid"])
    if (
        user is None
        or not user.active
        or user.session_version != pending["ver"]
        or pending["at"] < started.isoformat()
    ):
        session.pop("mfa", None)
        return None
    return user


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def second_factor():
    user = _pending_user()
    if user is None or not user.totp_enrolled:
        flash("Please sign in again.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            operations.check_second_factor(user, form.code.data)
        except AuthenticationFailed as exc:
            db.session.commit()
            form.code.errors.append(str(exc))
            return render_template("auth/code.html", form=form), 401
        return _complete_login(user, session["mfa"].get("next") or None)
    return render_template("auth/code.html", form=form)


@bp.route("/login/enrol", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def enrol_totp():
    user = _pending_user()
    if user is None or user.totp_enrolled:
        return redirect(url_for("auth.login"))
    secret = session["mfa"].setdefault("secret", totp.new_secret())
    session.modified = True
    form = CodeForm()
    if form.validate_on_submit():
        try:
            operations.enrol_totp(user, secret, form.code.data)
        except OverreadError as exc:
            form.code.errors.append(str(exc))
        else:
            flash("Two-step sign-in is on. You will need your app's code each time.", "success")
            return _complete_login(user, session["mfa"].get("next") or None)
    uri = totp.provisioning_uri(secret, user.email)
    return render_template(
        "auth/enrol.html", form=form, secret=secret, qr=totp.qr_data_uri(uri)
    ), 400 if form.errors else 200


@bp.post("/logout")
@login_required
def logout():
    record("logout", current_user, target=f"user:{current_user.id}")
    db.session.commit()
    end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def register():
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = operations.create_user(
                form.email.data, form.name.data, Role.PATIENT, form.password.data
            )
        except OverreadError as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            flash("Welcome to Overread. Your account is ready.", "success")
            return _complete_login(user, url_for("home.index"))
    return render_template("auth/register.html", form=form), 400 if form.errors else 200


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token: str):
    invite = account_links.find_live_link("invite", token)
    form = AcceptInviteForm()
    if form.validate_on_submit():
        try:
            account_links.accept_invite(token, form.name.data, form.password.data)
        except OverreadError as exc:
            db.session.rollback()
            form.password.errors.append(str(exc))
        else:
            db.session.commit()
            flash("Your account is ready. Please sign in.", "success")
            return redirect(url_for("auth.login"))
    return render_template(
        "auth/invite.html", form=form, invite=invite
    ), 400 if form.errors else 200


@bp.route("/forgot", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        account_links.request_password_reset(form.email.data)
        db.session.commit()
        flash("If an account uses that email, a reset link is on its way.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", form=form)


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    account_links.find_live_link("reset", token)
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            account_links.reset_password(token, form.password.data)
        except OverreadError as exc:
            db.session.rollback()
            form.password.errors.append(str(exc))
        else:
            db.session.commit()
            end_session()
            flash("Your password is changed. Please sign in.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form), 400 if form.errors else 200


@bp.after_request
def no_referrer_on_links(response):
    if request.endpoint in ("auth.accept_invite", "auth.reset_password"):
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
