"""Forms of the on-call pages: schedules, layers, overrides, policies and the paging profile."""

from __future__ import annotations

from datetime import time

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    FieldList,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TelField,
    TimeField,
    ValidationError,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional

from portal.auth.forms import ReauthFields
from portal.auth.models import User
from portal.cases.forms import AtLeastOne, MultiCheckboxField
from portal.cases.states import Subspecialty
from portal.oncall.models import Layer, PageVia, PagingProfile
from portal.oncall.policies import ROUNDS, WAIT_MINUTES
from portal.oncall.profiles import SLACK_USER_ID, known_timezone
from portal.oncall.schedule_edits import MAX_POSITION, LayerSpec, OverrideSpec

SUBSPECIALTY_CHOICES = [SelectChoice(s.value, s.label) for s in Subspecialty]
TIME_FORMATS = ["%H:%M", "%H:%M:%S"]
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]
NOBODY = ""


def time_zone(form, field) -> None:
    """Accept IANA time zone names only."""
    field.data = (field.data or "").strip()
    if not known_timezone(field.data):
        raise ValidationError("Use a time zone name from the list, such as Europe/London or UTC.")


def _timezone_field(label: str) -> StringField:
    return StringField(
        label,
        validators=[DataRequired(message="Give a time zone."), time_zone],
        default="UTC",
        render_kw={"list": "timezones", "autocomplete": "off", "spellcheck": "false"},
    )


def _time_field(label: str, required: bool = False) -> TimeField:
    validators = [InputRequired(message="Give a time.")] if required else [Optional()]
    return TimeField(label, validators=validators, format=TIME_FORMATS)


def _both_or_neither(start, end, message: str) -> bool:
    """Mark the empty one of two optional time fields when only the other is given."""
    if (start.data is None) == (end.data is None):
        return True
    empty = end if end.data is None else start
    if not empty.errors:  # a time typed wrong has its own message
        empty.errors.append(message)
    return False


def _person_choices(people: list[User]) -> list[SelectChoice]:
    return [SelectChoice(str(user.id), f"{user.name} ({user.email})") for user in people]


# --- schedules (admins) ---------------------------------------------------------------
class ScheduleForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the schedule a name."), Length(max=100)],
    )
    subspecialty = SelectField("Subspecialty", choices=SUBSPECIALTY_CHOICES)
    timezone = _timezone_field("Time zone of the hand-offs")


class LayerForm(FlaskForm):
    name = StringField("Layer name", validators=[Optional(), Length(max=100)])
    position = IntegerField(
        "Position (1 = paged first)",
        validators=[
            InputRequired(message="Give a position."),
            NumberRange(1, MAX_POSITION, message=f"Between 1 and {MAX_POSITION}."),
        ],
        default=1,
        render_kw={"inputmode": "numeric"},
    )
    rotation_days = IntegerField(
        "Days per turn",
        validators=[
            InputRequired(message="Give the length of a turn in days."),
            NumberRange(1, 366, message="Between 1 and 366 days."),
        ],
        default=7,
        render_kw={"inputmode": "numeric"},
    )
    starts_on = DateField(
        "First turn starts on", validators=[InputRequired(message="Give the first day.")]
    )
    handoff_time = TimeField(
        "Hand-off time",
        validators=[InputRequired(message="Give the hand-off time.")],
        default=time(8, 0),
        format=TIME_FORMATS,
    )
    window_start = _time_field("Covers each day from (optional)")
    window_end = _time_field("Until (optional)")

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        message = "Give both ends of the daily window, or neither for the whole day."
        return _both_or_neither(self.window_start, self.window_end, message) and valid

    def spec(self) -> LayerSpec:
        return LayerSpec(
            name=self.name.data or "",
            position=self.position.data,
            rotation_days=self.rotation_days.data,
            starts_on=self.starts_on.data,
            handoff_time=self.handoff_time.data,
            window_start=self.window_start.data,
            window_end=self.window_end.data,
        )


class MembersForm(FlaskForm):
    """The order of a layer's rotation: one drop-down per turn; blanks are skipped."""

    members = FieldList(SelectField("Turn"))

    def __init__(self, layer: Layer, people: list[User], **kwargs) -> None:
        current = [str(member.user_id) for member in layer.members]
        super().__init__(prefix=f"layer{layer.id}", data={"members": current}, **kwargs)
        while len(self.members) < max(len(current) + 2, 4):
            self.members.append_entry(NOBODY)
        choices = [SelectChoice(NOBODY, "—"), *_person_choices(people)]
        for entry in self.members:
            entry.choices = choices

    def user_ids(self) -> list[int]:
        return [int(entry.data) for entry in self.members if entry.data]


class OverrideForm(FlaskForm):
    user = SelectField("Who covers")
    replaces = SelectField("In place of")
    starts_at = DateTimeLocalField(
        "From", validators=[InputRequired(message="Give the start.")], format=LOCAL_FORMATS
    )
    ends_at = DateTimeLocalField(
        "Until", validators=[InputRequired(message="Give the end.")], format=LOCAL_FORMATS
    )
    note = StringField("Note (optional)", validators=[Optional(), Length(max=200)])

    def __init__(self, people: list[User], **kwargs) -> None:
        super().__init__(prefix="override", **kwargs)
        self.user.choices = _person_choices(people)
        self.replaces.choices = [
            SelectChoice(NOBODY, "Nobody: add on top of the schedule"),
            *_person_choices(people),
        ]

    def spec(self) -> OverrideSpec:
        return OverrideSpec(
            user_id=int(self.user.data),
            replaces_user_id=int(self.replaces.data) if self.replaces.data else None,
            starts_at=self.starts_at.data,
            ends_at=self.ends_at.data,
            note=self.note.data or "",
        )


class PolicyForm(FlaskForm):
    wait_minutes = IntegerField(
        "Minutes to wait for an answer",
        validators=[
            InputRequired(message="Give the minutes to wait."),
            NumberRange(
                WAIT_MINUTES.start,
                WAIT_MINUTES.stop - 1,
                message=f"Between {WAIT_MINUTES.start} and {WAIT_MINUTES.stop - 1} minutes.",
            ),
        ],
        render_kw={"inputmode": "numeric"},
    )
    rounds = IntegerField(
        "Rounds before the admins are paged",
        validators=[
            InputRequired(message="Give the number of rounds."),
            NumberRange(
                ROUNDS.start,
                ROUNDS.stop - 1,
                message=f"Between {ROUNDS.start} and {ROUNDS.stop - 1} rounds.",
            ),
        ],
        render_kw={"inputmode": "numeric"},
    )
    page_pool = BooleanField("After the layers, page every radiologist of the subspecialty")


# --- the paging profile -----------------------------------------------------------------
def slack_member_id(form, field) -> None:
    field.data = (field.data or "").strip()
    if field.data and not SLACK_USER_ID.fullmatch(field.data):
        raise ValidationError(
            "A Slack member ID looks like U012AB3CD: U or W, then capital letters and digits."
        )


class PreferencesForm(FlaskForm):
    subspecialties = MultiCheckboxField(
        "Subspecialties you read",
        choices=SUBSPECIALTY_CHOICES,
        validators=[AtLeastOne("Choose at least one subspecialty (General if no other).")],
    )
    timezone = _timezone_field("Your time zone")
    slack_user_id = StringField(
        "Slack member ID (optional)",
        validators=[Optional(strip_whitespace=True), Length(max=32), slack_member_id],
        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "characters"},
    )
    page_via = RadioField("Page me by", choices=[SelectChoice(v.value, v.label) for v in PageVia])
    quiet_start = _time_field("Quiet hours from (optional)")
    quiet_end = _time_field("Until (optional)")

    @classmethod
    def of(cls, profile: PagingProfile) -> PreferencesForm:
        return cls(
            prefix="prefs",
            data={
                "subspecialties": profile.subspecialty_list,
                "timezone": profile.timezone,
                "slack_user_id": profile.slack_user_id or "",
                "page_via": profile.page_via,
                "quiet_start": profile.quiet_start,
                "quiet_end": profile.quiet_end,
            },
        )

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        message = "Give both ends of the quiet hours, or neither."
        return _both_or_neither(self.quiet_start, self.quiet_end, message) and valid


class MobileForm(FlaskForm):
    number = TelField(
        "Mobile number",
        validators=[DataRequired(message="Give your mobile number."), Length(max=32)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )


class MobileCodeForm(FlaskForm):
    code = StringField(
        "Code from the text message",
        validators=[DataRequired(message="Type the 6-digit code."), Length(min=6, max=8)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9 ]*"},
    )


class PinForm(ReauthFields):
    pin = PasswordField(
        "New viewer PIN",
        validators=[DataRequired(message="Choose a PIN."), Length(max=12)],
        render_kw={"autocomplete": "new-password", "inputmode": "numeric", "pattern": "[0-9]*"},
    )
    confirm = PasswordField(
        "Repeat the PIN",
        validators=[DataRequired(), EqualTo("pin", message="The two PINs differ.")],
        render_kw={"autocomplete": "new-password", "inputmode": "numeric", "pattern": "[0-9]*"},
    )

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if bool(self.password.data) == bool((self.code.data or "").strip()):
            self.password.errors.append("Enter either your password or the code from your app.")
            return False
        return valid
