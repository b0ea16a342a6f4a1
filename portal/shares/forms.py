"""The sharer's form; the recipient's code form is the sign-in one."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, IntegerField, SubmitField
from wtforms.validators import DataRequired, Email, Length, Optional


class ShareForm(FlaskForm):
    email = EmailField(
        "Clinician's email",
        validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)],
        render_kw={"autocomplete": "off"},
    )
    days = IntegerField("Days the link works", validators=[Optional()])
    submit = SubmitField("Share")
