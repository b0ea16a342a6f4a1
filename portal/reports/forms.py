"""Forms for writing and signing reports, addenda and overreads.

Each form saves a draft (no credentials needed) or signs it: the signature
asks again for the password or a current code from the authenticator app.
Whether the content is complete is checked when signing, by the operation.
"""

from __future__ import annotations

from wtforms import RadioField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal.auth.forms import ReauthFields
from portal.reports.content import MAX_FIELD_LENGTH
from portal.reports.models import Agreement

_text = [Optional(), Length(max=MAX_FIELD_LENGTH)]
AGREEMENT_CHOICES = [SelectChoice(choice.value, choice.label) for choice in Agreement]


class SignFields(ReauthFields):
    """What every report form carries: credentials to sign with, and the two buttons."""

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
