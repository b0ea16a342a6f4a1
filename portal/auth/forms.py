"""Sign-in and account forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from portal.auth.models import Role
from portal.auth.passwords import MAX_LENGTH, MIN_LENGTH

_email = [DataRequired(), Email(check_deliverability=False), Length(max=254)]
_new_password = [
    DataRequired(),
    Length(
        min=MIN_LENGTH,
        max=MAX_LENGTH,
        message=f"Use between {MIN_LENGTH} and {MAX_LENGTH} characters.",
    ),
]
ROLE_CHOICES = [SelectChoice(r.value, r.value.title()) for r in Role]
_confirm = [DataRequired(), EqualTo("password", message="The two passwords differ.")]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=_email, render_kw={"autocomplete": "username"})
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=MAX_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField("Sign in")


class CodeForm(FlaskForm):
    code = StringField(
        "6-digit code",
        validators=[DataRequired(), Length(min=6, max=8)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"},
    )
    submit = SubmitField("Verify")


class ReauthFields(FlaskForm):
    """The password, or a current code from the authenticator app, asked again for a sensitive step.

    The step using them decides what it requires and checks it.
    """

    password = PasswordField(
        "Password",
        validators=[Optional(), Length(max=MAX_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    code = StringField(
        "Or the 6-digit code from your app",
        validators=[Optional(), Length(max=8)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"},
    )


class RegisterForm(FlaskForm):
    name = StringField(
        "Full name",
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "name"},
    )
    email = EmailField("Email", validators=_email, render_kw={"autocomplete": "email"})
    password = PasswordField(
        "Password", validators=_new_password, render_kw={"autocomplete": "new-password"}
    )
    confirm = PasswordField(
        "Repeat password", validators=_confirm, render_kw={"autocomplete": "new-password"}
    )
    submit = SubmitField("Create account")


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password", validators=_new_password, render_kw={"autocomplete": "new-password"}
    )
    confirm = PasswordField(
        "Repeat new password", validators=_confirm, render_kw={"autocomplete": "new-password"}
    )
    submit = SubmitField("Set password")


class AcceptInviteForm(SetPasswordForm):
    name = StringField(
        "Full name",
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "name"},
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=_email, render_kw={"autocomplete": "email"})
    submit = SubmitField("Send reset link")


class ChangePasswordForm(SetPasswordForm):
    current = PasswordField(
        "Current password",
        validators=[DataRequired()],
        render_kw={"autocomplete": "current-password"},
    )


class ApiTokenForm(FlaskForm):
    name = StringField(
        "Token name", validators=[DataRequired(), Length(max=100)], default="DICOMweb"
    )
    submit = SubmitField("Create token")


class InviteForm(FlaskForm):
    email = EmailField("Email", validators=_email)
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.RADIOLOGIST.value)
    submit = SubmitField("Send invite")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class ConfirmForm(FlaskForm):
    """A bare form for buttons that change state (CSRF only)."""

    submit = SubmitField("Confirm")
