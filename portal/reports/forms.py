"""Forms for writing and signing reports, addenda and overreads.

Each form saves a draft (no credentials needed) or signs it: the signature
asks again for the password or a current code from the authenticator app.
Whether the content is complete is checked when signing, by the operation.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal.auth.passwords import MAX_LENGTH
from portal.reports.content import MAX_FIELD_LENGTH
from portal.reports.models import Agreement

_text = [Optional(), Length(max=MAX_FIELD_LENGTH)]
AGREEMENT_CHOICES = [SelectChoice(choice.value, choice.label) for choice in Agreement]


class SignFields(FlaskForm):
    """What every report form carries: credentials to sign with, and the two buttons."""

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
    save = SubmitField("Save draft")

    def draft_data(self) -> dict[str, str]:
        """Return the draft's fields as submitted (the operation keeps those of its kind)."""
        names = ("findings", "impression", "recommendations", "agreement", "comments")
        return {name: self[name].data or "" for name in names if name in self}


class ReportForm(SignFields):
    agreement = RadioField(
        "Agreement with the original read", choices=AGREEMENT_CHOICES, validators=[Optional()]
    )
    findings = TextAreaField("Findings", validators=_text)
    impression = TextAreaField("Impression", validators=_text)
    recommendations = TextAreaField("Recommendations", validators=_text)
    sign = SubmitField("Sign report")


class AddendumForm(SignFields):
    comments = TextAreaField("Addendum", validators=_text)
    sign = SubmitField("Sign addendum")


class OverreadForm(SignFields):
    agreement = RadioField(
        "Agreement with the report", choices=AGREEMENT_CHOICES, validators=[Optional()]
    )
    comments = TextAreaField("Comments", validators=_text)
    sign = SubmitField("Sign overread")
