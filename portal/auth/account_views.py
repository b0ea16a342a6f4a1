"""The signed-in user's own page: password, second factor, API tokens."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from portal.auth import api_tokens, operations
from portal.auth.forms import ApiTokenForm, ChangePasswordForm, ConfirmForm
from portal.errors import OverreadError
from portal.extensions import db
from portal.security import start_session

bp = Blueprint("account", __name__, url_prefix="/account")


def _render(password_form=None, token_form=None, new_token=None, status=200):
    return render_template(
        "account/index.html",
        password_form=password_form or ChangePasswordForm(prefix="pw"),
        token_form=token_form or ApiTokenForm(prefix="tok"),
        revoke_form=ConfirmForm(),
        new_token=new_token,
    ), status


@bp.get("/")
@login_required
def index():
    return _render()


@bp.post("/password")
@login_required
def change_password():
    form = ChangePasswordForm(prefix="pw")
    if not form.validate_on_submit():
        return _render(password_form=form, status=400)
    try:
        operations.change_password(current_user, form.current.data, form.password.data)
    except OverreadError as exc:
        db.session.commit()  # keep the audit row of the failed attempt
        form.current.errors.append(str(exc))
        return _render(password_form=form, status=400)
    db.session.commit()
    # Other sessions ended; this one goes on. Hand Flask-Login the user, not the proxy.
    start_session(current_user._get_current_object())
    flash("Your password is changed. Other devices are signed out.", "success")
    return redirect(url_for("account.index"))


@bp.post("/tokens")
@login_required
def create_token():
    form = ApiTokenForm(prefix="tok")
    if not form.validate_on_submit():
        return _render(token_form=form, status=400)
    raw = api_tokens.issue_api_token(current_user, form.name.data)
    db.session.commit()
    return _render(new_token=raw)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    if ConfirmForm().validate_on_submit():
        api_tokens.revoke_api_token(current_user, token_id)
        db.session.commit()
        flash("Token revoked.", "success")
    return redirect(url_for("account.index"))
