"""Forms of the case pages: the request, and the buttons that move a case."""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TelField,
    TextAreaField,
    ValidationError,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    InputRequired,
    Length,
    Optional,
    StopValidation,
)

from portal import clock
from portal.auth.models import Role, User
from portal.cases.operations import CaseRequest
from portal.cases.states import Subspecialty, Urgency
from portal.studies.models import Study

#: What a patient agrees to; stored with the case as ``consent_text``.
CONSENT_TEXT = (
    "I agree that Overread shares my images, my question, my history and any prior reports "
    "I attach with the radiologists who read my case, and keeps them to provide this "
    "second opinion."
)
MAX_ATTACHMENTS = 10
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")


class MultiCheckboxField(SelectMultipleField):
    """A multiple choice shown as a list of checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class AtLeastOne:
    """Require a choice in a list of checkboxes (without marking each box ``required``)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, form, field) -> None:
        if not field.data:
            raise StopValidation(self.message)


def normal_phone(value: str | None) -> str:
    """Return ``value`` without spaces, dots, dashes and brackets."""
    return _PHONE_PUNCTUATION.sub("", value or "")


def _check_phone(value: str, international: bool) -> None:
    number = normal_phone(value)
    if international and not (_PHONE.match(number) and number.startswith("+")):
        raise ValidationError("Give the number in international format, such as +44 7700 900123.")
    if not _PHONE.match(number):
        raise ValidationError("Give a phone number: digits, with an optional leading +.")


def phone_number(form, field) -> None:
    """Validate an optional phone number (digits, an optional leading +)."""
    if field.data and field.data.strip():
        _check_phone(field.data, international=False)


def past_date(form, field) -> None:
    """Refuse dates of birth in the future or before 1900."""
    if field.data is not None and not date(1900, 1, 1) <= field.data <= clock.now().date():
        raise ValidationError("Give a date of birth between 1900 and today.")


def describe_window(window: timedelta) -> str:
    """Return an SLA window in words: ``"1 hour"``, ``"4 hours"``, ``"30 minutes"``."""
    minutes = int(window.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours > 48 and hours % 24 == 0:
        return f"{hours // 24} days"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def urgency_choices() -> list[SelectChoice]:
    windows = current_app.config["SLA_MINUTES"]
    return [
        SelectChoice(u.value, f"{u.label}: report within {describe_window(windows[u.value])}")
        for u in (Urgency.STAT, Urgency.URGENT, Urgency.ROUTINE)
    ]


def study_label(study: Study) -> str:
    when = study.study_date.isoformat() if study.study_date else "date unknown"
    what = study.description or "Study without description"
    modalities = "/".join(study.modalities) or "imaging"
    return f"{what} ({modalities}, {when})"


class RequestForm(FlaskForm):
    """What every requester fills in; see the patient and physician forms below."""

    clinical_question = TextAreaField(
        "Your question for the radiologist",
        validators=[
            DataRequired(message="Ask the question you want the radiologist to answer."),
            Length(max=4000),
        ],
    )
    history = TextAreaField("Relevant history", validators=[Optional(), Length(max=8000)])
    urgency = RadioField("How urgent is it?", default=Urgency.ROUTINE.value)
    subspecialty = SelectField(
        "Subspecialty wanted",
        choices=[SelectChoice(s.value, s.label) for s in Subspecialty],
        default=Subspecialty.GENERAL.value,
    )
    studies = MultiCheckboxField(
        "Studies to send",
        coerce=int,
        validators=[AtLeastOne("Choose at least one study.")],
    )
    attachments = MultipleFileField(
        "Prior reports (optional)",
        render_kw={"accept": ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"},
    )
    deidentify = BooleanField("De-identified reading")
    notify_phone = TelField(
        "Mobile number for text messages",
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )
    sms_opt_in = BooleanField("Send me a text message when my case changes")

    def __init__(self, studies: list[Study], **kwargs) -> None:
        super().__init__(**kwargs)
        self.urgency.choices = urgency_choices()
        self.studies.choices = [SelectChoice(study.id, study_label(study)) for study in studies]

    def validate_notify_phone(self, field) -> None:
        if not (field.data or "").strip():
            if self.sms_opt_in.data:
                raise ValidationError("Give a mobile number to get text messages.")
            return
        if len(field.data) > 32:
            raise ValidationError("Give at most 32 characters.")
        _check_phone(field.data, international=True)

    def uploaded_files(self) -> list:
        """Return the files chosen (an empty file input sends one part without a name)."""
        return [upload for upload in self.attachments.data or () if upload and upload.filename]

    def validate_attachments(self, field) -> None:
        if len(self.uploaded_files()) > MAX_ATTACHMENTS:
            raise ValidationError(f"Attach at most {MAX_ATTACHMENTS} files.")

    def case_request(self) -> CaseRequest:
        """Return the validated answers as the operation's request (attachments apart)."""
        return CaseRequest(
            clinical_question=self.clinical_question.data,
            urgency=Urgency(self.urgency.data),
            study_ids=list(self.studies.data),
            subspecialty=Subspecialty(self.subspecialty.data),
            history=self.history.data or "",
            deidentify=self.deidentify.data,
            notify_phone=normal_phone(self.notify_phone.data),
            sms_opt_in=self.sms_opt_in.data,
            **self.subject_fields(),
        )

    def subject_fields(self) -> dict:
        """Return what the requester says about the patient (each role's form says more)."""
        return {}


class PatientRequestForm(RequestForm):
    subject_birth_date = DateField(
        "Your date of birth (optional)", validators=[Optional(), past_date]
    )
    consent = BooleanField(
        CONSENT_TEXT,
        validators=[DataRequired(message="Tick the box to consent; the request needs it.")],
    )

    def subject_fields(self) -> dict:
        return {"subject_birth_date": self.subject_birth_date.data, "consent_text": CONSENT_TEXT}


class PhysicianRequestForm(RequestForm):
    subject_name = StringField(
        "Patient's full name",
        validators=[DataRequired(message="Give the patient's name."), Length(max=200)],
        render_kw={"autocomplete": "off"},
    )
    subject_birth_date = DateField(
        "Patient's date of birth",
        validators=[InputRequired(message="Give the patient's date of birth."), past_date],
    )
    subject_email = EmailField(
        "Patient's email (optional)",
        validators=[Optional(), Email(check_deliverability=False), Length(max=254)],
        render_kw={"autocomplete": "off"},
    )
    subject_phone = TelField(
        "Patient's phone (optional)",
        validators=[Optional(), Length(max=32), phone_number],
        render_kw={"autocomplete": "off", "inputmode": "tel"},
    )

    def subject_fields(self) -> dict:
        return {
            "subject_name": self.subject_name.data,
            "subject_birth_date": self.subject_birth_date.data,
            "subject_email": self.subject_email.data or "",
            "subject_phone": normal_phone(self.subject_phone.data),
        }


def request_form_for(user: User, studies: list[Study]) -> RequestForm:
    """Return the request form for ``user``'s role, its study choices filled in."""
    form_class = PhysicianRequestForm if user.role == Role.PHYSICIAN else PatientRequestForm
    return form_class(studies)


class ActionForm(FlaskForm):
    """A button that moves a case (CSRF only)."""


_NOTE = [Optional(), Length(max=500, message="Write at most 500 characters.")]


class DeclineForm(FlaskForm):
    decline_reason = TextAreaField("Why not? (optional)", validators=_NOTE)

    def note(self) -> str:
        return (self.decline_reason.data or "").strip()


class CancelForm(FlaskForm):
    cancel_reason = TextAreaField("Reason for cancelling (optional)", validators=_NOTE)

    def note(self) -> str:
        return (self.cancel_reason.data or "").strip()


class OverreadRequestForm(FlaskForm):
    overread_note = TextAreaField(
        "What should the second radiologist look at? (optional)", validators=_NOTE
    )

    def note(self) -> str:
        return (self.overread_note.data or "").strip()


class AssignForm(FlaskForm):
    radiologists = MultiCheckboxField(
        "Radiologists",
        coerce=int,
        validators=[AtLeastOne("Choose at least one radiologist.")],
    )

    def __init__(self, radiologists: list[User], labels: dict[int, str] | None = None, **kwargs):
        super().__init__(**kwargs)
        labels = labels or {}
        self.radiologists.choices = [
            SelectChoice(user.id, f"{user.name}{labels.get(user.id, '')}") for user in radiologists
        ]
