"""Admins' on-call pages: schedules with their layers, members, overrides and feed; policies.

Nested under the ``oncall`` blueprint, so its endpoints read ``oncall.admin.*``.
Every change goes through :mod:`portal.oncall.schedule_edits` or
:mod:`portal.oncall.policies`, which audit it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from portal import clock
from portal.auth.forms import ConfirmForm
from portal.auth.models import Role, User
from portal.cases.forms import describe_window
from portal.cases.states import Urgency
from portal.errors import InvalidInput
from portal.extensions import db
from portal.oncall import policies, schedule_edits
from portal.oncall.forms import LayerForm, MembersForm, OverrideForm, PolicyForm, ScheduleForm
from portal.oncall.models import Layer, Override, Schedule
from portal.oncall.profiles import timezone_names
from portal.oncall.schedules import shifts
from portal.security import role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")
PREVIEW = timedelta(days=14)


@bp.before_request
@role_required(Role.ADMIN)
def admins_only():
    return None


def _user() -> User:
    return current_user._get_current_object()


def _back(schedule: Schedule):
    return redirect(url_for("oncall.admin.schedule", schedule_id=schedule.id))


def _save_edit(
    schedule: Schedule,
    form,
    page_forms: dict[str, Any],
    edit: Callable[[], Any],
    done: str | Callable[[Any], str],
):
    """Check ``form``, make the edit and commit, and go back to the schedule saying ``done``.

    ``done`` may be made from what the edit returned. A form that does not
    check out, or an edit refused, shows the schedule page again (400) with
    ``page_forms`` and the reason.
    """
    if not form.validate_on_submit():
        return _schedule_page(schedule, 400, **page_forms)
    try:
        made = edit()
    except InvalidInput as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _schedule_page(schedule, 400, **page_forms)
    db.session.commit()
    flash(done if isinstance(done, str) else done(made), "success")
    return _back(schedule)


# --- the list -----------------------------------------------------------------------------
@bp.route("/schedules", methods=["GET", "POST"])
def schedules():
    form = ScheduleForm(prefix="schedule")
    if form.validate_on_submit():
        try:
            schedule = schedule_edits.create_schedule(
                _user(), form.name.data, form.subspecialty.data, form.timezone.data
            )
        except InvalidInput as exc:
            db.session.rollback()
            form.form_errors.append(str(exc))
        else:
            db.session.commit()
            flash(f"Schedule {schedule.name} created. Add its layers below.", "success")
            return _back(schedule)
    listed = db.session.scalars(select(Schedule).order_by(Schedule.subspecialty, Schedule.name))
    page = render_template(
        "oncall/schedules.html", schedules=listed.all(), form=form, timezones=timezone_names()
    )
    return page, 400 if form.errors else 200


# --- one schedule -------------------------------------------------------------------------
def _schedule_page(schedule: Schedule, status: int = 200, feed_url: str | None = None, **forms):
    people = schedule_edits.on_call_candidates()
    members_forms = {
        layer.id: MembersForm(layer, people, formdata=None) for layer in schedule.layers
    }
    members_forms.update(forms.pop("members_forms", {}))
    forms.setdefault("schedule_form", ScheduleForm(prefix="schedule", obj=schedule, formdata=None))
    forms.setdefault("layer_form", _new_layer_form(schedule))
    forms.setdefault("override_form", OverrideForm(people, formdata=None))
    now = clock.now()
    page = render_template(
        "oncall/schedule.html",
        schedule=schedule,
        members_forms=members_forms,
        confirm_form=ConfirmForm(formdata=None),
        preview=shifts(schedule, now, now + PREVIEW),
        overrides=[o for o in schedule.overrides if o.ends_at > now],
        feed_url=feed_url,
        timezones=timezone_names(),
        **forms,
    )
    return page, status


def _new_layer_form(schedule: Schedule) -> LayerForm:
    """The add-a-layer form, at the next free position and starting today there."""
    taken = {layer.position for layer in schedule.layers}
    position = next(p for p in range(1, len(taken) + 2) if p not in taken)
    today = clock.now().astimezone(ZoneInfo(schedule.timezone)).date()
    data = {"position": position, "starts_on": today}
    return LayerForm(prefix="layer", formdata=None, data=data)


def _part_of(schedule: Schedule, model, part_id: int):
    part = db.get_or_404(model, part_id)
    if part.schedule_id != schedule.id:
        abort(404)
    return part


@bp.get("/schedules/<int:schedule_id>")
def schedule(schedule_id: int):
    return _schedule_page(db.get_or_404(Schedule, schedule_id))


@bp.post("/schedules/<int:schedule_id>/edit")
def edit_schedule(schedule_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    form = ScheduleForm(prefix="schedule")
    return _save_edit(
        schedule,
        form,
        {"schedule_form": form},
        lambda: schedule_edits.update_schedule(
            _user(), schedule, form.name.data, form.subspecialty.data, form.timezone.data
        ),
        "Schedule saved.",
    )


@bp.post("/schedules/<int:schedule_id>/feed")
def issue_feed(schedule_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    if not ConfirmForm().validate_on_submit():
        return _back(schedule)
    raw = schedule_edits.issue_feed(_user(), schedule)
    db.session.commit()
    url = current_app.config["BASE_URL"] + url_for("oncall.feed", token=raw)
    return _schedule_page(schedule, feed_url=url)


# --- layers -------------------------------------------------------------------------------
@bp.post("/schedules/<int:schedule_id>/layers")
def add_layer(schedule_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    form = LayerForm(prefix="layer")
    return _save_edit(
        schedule,
        form,
        {"layer_form": form},
        lambda: schedule_edits.add_layer(_user(), schedule, form.spec()),
        lambda layer: f"Layer {layer.position} added. Choose who takes turns in it.",
    )


@bp.post("/schedules/<int:schedule_id>/layers/<int:layer_id>/remove")
def remove_layer(schedule_id: int, layer_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    layer = _part_of(schedule, Layer, layer_id)
    if ConfirmForm().validate_on_submit():
        schedule_edits.remove_layer(_user(), layer)
        db.session.commit()
        flash("Layer removed.", "success")
    return _back(schedule)


@bp.post("/schedules/<int:schedule_id>/layers/<int:layer_id>/members")
def set_members(schedule_id: int, layer_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    layer = _part_of(schedule, Layer, layer_id)
    form = MembersForm(layer, schedule_edits.on_call_candidates())
    return _save_edit(
        schedule,
        form,
        {"members_forms": {layer.id: form}},
        lambda: schedule_edits.set_layer_members(_user(), layer, form.user_ids()),
        "Rotation saved.",
    )


# --- overrides ----------------------------------------------------------------------------
@bp.post("/schedules/<int:schedule_id>/overrides")
def add_override(schedule_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    form = OverrideForm(schedule_edits.on_call_candidates())
    return _save_edit(
        schedule,
        form,
        {"override_form": form},
        lambda: schedule_edits.add_override(_user(), schedule, form.spec()),
        "Override added.",
    )


@bp.post("/schedules/<int:schedule_id>/overrides/<int:override_id>/remove")
def remove_override(schedule_id: int, override_id: int):
    schedule = db.get_or_404(Schedule, schedule_id)
    override = _part_of(schedule, Override, override_id)
    if ConfirmForm().validate_on_submit():
        schedule_edits.remove_override(_user(), override)
        db.session.commit()
        flash("Override removed.", "success")
    return _back(schedule)


# --- escalation policies ------------------------------------------------------------------
URGENCIES = (Urgency.STAT, Urgency.URGENT, Urgency.ROUTINE)


def _escalation_page(status: int = 200, **forms):
    for urgency in URGENCIES:
        policy = policies.policy_for(urgency)
        forms.setdefault(urgency.value, PolicyForm(prefix=urgency.value, obj=policy, formdata=None))
    windows = current_app.config["SLA_MINUTES"]
    page = render_template(
        "oncall/escalation.html",
        urgencies=URGENCIES,
        forms=forms,
        sla={u.value: describe_window(windows[u.value]) for u in URGENCIES},
    )
    return page, status


@bp.get("/escalation")
def escalation():
    return _escalation_page()


@bp.post("/escalation/<any(stat, urgent, routine):urgency>")
def save_policy(urgency: str):
    form = PolicyForm(prefix=urgency)
    if not form.validate_on_submit():
        return _escalation_page(400, **{urgency: form})
    try:
        policies.save_policy(
            urgency, form.wait_minutes.data, form.rounds.data, form.page_pool.data, _user()
        )
    except InvalidInput as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _escalation_page(400, **{urgency: form})
    db.session.commit()
    flash(f"{Urgency(urgency).label} policy saved.", "success")
    return redirect(url_for("oncall.admin.escalation"))
