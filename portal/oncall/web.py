"""On-call pages: who is on call, schedules and policies (admins), paging profiles.

The admins' schedule and escalation pages live in :mod:`portal.oncall.admin_web`,
nested under this blueprint.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from portal import clock
from portal.audit.operations import record
from portal.auth.models import Role, User
from portal.cases.states import Subspecialty
from portal.errors import AuthenticationFailed, InvalidInput
from portal.extensions import db
from portal.oncall import ical, profiles
from portal.oncall.admin_web import bp as admin_bp
from portal.oncall.forms import MobileCodeForm, MobileForm, PinForm, PreferencesForm
from portal.oncall.models import PageVia
from portal.oncall.schedules import board
from portal.security import role_required

bp = Blueprint("oncall", __name__)
bp.register_blueprint(admin_bp)
STAFF = (Role.RADIOLOGIST, Role.ADMIN)
FEED_PAST = timedelta(days=7)
FEED_AHEAD = timedelta(days=60)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name if profiles.known_timezone(name) else "UTC")


def local_time(moment: datetime, zone: str) -> str:
    """Show ``moment`` on the wall clock of ``zone``: ``Mon 03 Mar 08:00``."""
    return f"{moment.astimezone(_zone(zone)):%a %d %b %H:%M}"


def zone_label(zone: str) -> str:
    """Name a time zone with its abbreviation now: ``Europe/London (BST)``."""
    abbreviation = clock.now().astimezone(_zone(zone)).tzname()
    return zone if abbreviation in (None, zone) else f"{zone} ({abbreviation})"


def subspecialty_label(value: str) -> str:
    try:
        return Subspecialty(value).label
    except ValueError:
        return value


bp.add_app_template_filter(local_time, "local_time")
bp.add_app_template_filter(zone_label, "zone_label")
bp.add_app_template_filter(subspecialty_label, "subspecialty_label")


def _user() -> User:
    return current_user._get_current_object()


# --- who is on call -----------------------------------------------------------------------
@bp.get("/oncall")
@role_required(*STAFF)
def board_page():
    zone = profiles.profile_for(_user()).timezone
    return render_template("oncall/board.html", rows=board(clock.now()), zone=zone)


@bp.get("/oncall/feed/<token>.ics")
def feed(token: str):
    """A schedule's shifts for calendar apps; the token in the URL is the only credential."""
    schedule = ical.schedule_for_feed_token(token)
    if schedule is None:
        abort(404)
    now = clock.now()
    body = ical.feed(schedule, now - FEED_PAST, now + FEED_AHEAD)
    record("oncall.feed_read", target=f"schedule:{schedule.id}")
    db.session.commit()
    response = Response(body, mimetype="text/calendar")
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- the paging profile -------------------------------------------------------------------
def _profile_page(status: int = 200, **forms):
    profile = profiles.profile_for(_user())
    defaults = {
        "prefs_form": lambda: PreferencesForm.of(profile),
        "mobile_form": lambda: MobileForm(prefix="mobile", formdata=None),
        "code_form": lambda: MobileCodeForm(prefix="code", formdata=None),
        "pin_form": lambda: PinForm(prefix="pin", formdata=None),
    }
    for name, make in defaults.items():
        forms.setdefault(name, make())
    page = render_template(
        "oncall/profile.html",
        profile=profile,
        page_via=PageVia(profile.page_via),
        timezones=profiles.timezone_names(),
        now=clock.now(),
        **forms,
    )
    return page, status


@bp.get("/profile/paging")
@role_required(*STAFF)
def paging_profile():
    return _profile_page()


@bp.post("/profile/paging/preferences")
@role_required(*STAFF)
def save_preferences():
    form = PreferencesForm(prefix="prefs")
    if not form.validate_on_submit():
        return _profile_page(400, prefs_form=form)
    try:
        profiles.save_preferences(
            _user(),
            subspecialties=form.subspecialties.data,
            timezone=form.timezone.data,
            slack_user_id=form.slack_user_id.data,
            page_via=form.page_via.data,
            quiet_start=form.quiet_start.data,
            quiet_end=form.quiet_end.data,
        )
    except InvalidInput as exc:
        db.session.rollback()
        form.form_errors.append(str(exc))
        return _profile_page(400, prefs_form=form)
    db.session.commit()
    flash("Your paging preferences are saved.", "success")
    return redirect(url_for("oncall.paging_profile"))


@bp.post("/profile/paging/mobile")
@role_required(*STAFF)
def send_mobile_code():
    form = MobileForm(prefix="mobile")
    if not form.validate_on_submit():
        return _profile_page(400, mobile_form=form)
    try:
        row = profiles.start_mobile_verification(_user(), form.number.data)
    except InvalidInput as exc:
        db.session.rollback()
        form.number.errors.append(str(exc))
        return _profile_page(400, mobile_form=form)
    db.session.commit()
    flash(f"A code is on its way to {row.recipient}. Type it below.", "success")
    return redirect(url_for("oncall.paging_profile"))


@bp.post("/profile/paging/mobile/confirm")
@role_required(*STAFF)
def confirm_mobile_code():
    form = MobileCodeForm(prefix="code")
    if not form.validate_on_submit():
        return _profile_page(400, code_form=form)
    try:
        profiles.confirm_mobile(_user(), form.code.data)
    except InvalidInput as exc:
        db.session.commit()  # keep the count of wrong codes and its audit row
        form.code.errors.append(str(exc))
        return _profile_page(400, code_form=form)
    db.session.commit()
    flash("Your mobile number is verified: pages can reach you by SMS.", "success")
    return redirect(url_for("oncall.paging_profile"))


@bp.post("/profile/paging/pin")
@role_required(*STAFF)
def set_pin():
    form = PinForm(prefix="pin")
    if not form.validate_on_submit():
        return _profile_page(400, pin_form=form)
    credentials = {"password": form.password.data or "", "code": form.code.data or ""}
    try:
        profiles.set_viewer_pin(_user(), form.pin.data, **credentials)
    except AuthenticationFailed as exc:
        db.session.commit()  # keep the failure count with its audit row
        (form.code if form.code.data else form.password).errors.append(str(exc))
        return _profile_page(exc.status_code, pin_form=form)
    except InvalidInput as exc:
        db.session.rollback()
        form.pin.errors.append(str(exc))
        return _profile_page(400, pin_form=form)
    db.session.commit()
    flash("Your viewer PIN is set. Use it to open viewing links.", "success")
    return redirect(url_for("oncall.paging_profile"))
