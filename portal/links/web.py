"""Viewing links: redeem ``/l/<code>`` with a PIN or TOTP code into a viewer session.

- ``GET /l/<code>``: asks for the PIN or code and spends nothing: link-preview
  bots (Slack unfurls, iMessage) fetch links too. No patient data before redemption.
- ``POST /l/<code>``: redeems the link, sets the viewer-session cookie (path
  ``/viewer``) and sends the browser on to ``/viewer/<number>``, a URL without the code.
- ``GET /viewer/<number>``: the viewer's landing page, for a live viewer session of
  that case, or a signed-in user who may see the case in full or as its reader.
- ``POST /viewer/<number>/end``: ends the viewer session.

Every response here carries ``Referrer-Policy: no-referrer`` and ``Cache-Control:
no-store``. Refusals get a page that says why and an audit row, never the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import PasswordField
from wtforms.validators import DataRequired, Length

from portal.cases.access import View
from portal.cases.case_page import shows_subject
from portal.cases.models import Case
from portal.errors import AuthenticationFailed
from portal.extensions import db, limiter
from portal.links import operations
from portal.links.operations import LinkRefused, RequestMeta
from portal.links.sessions import (
    VIEWER_COOKIE,
    ViewerAccess,
    ViewerRefused,
    end_viewer_session,
    open_viewer,
)
from portal.reports.models import Kind
from portal.reports.operations import may_write
from portal.studies.models import Instance, Series, Study

bp = Blueprint("links", __name__)


class RedeemForm(FlaskForm):
    factor = PasswordField(
        "Viewer PIN or authenticator code",
        validators=[DataRequired("Enter your viewer PIN or a code."), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class EndForm(FlaskForm):
    """The "end viewing session" button (CSRF only)."""


@bp.after_request
def _private(response):
    """Keep the code out of Referer headers and every page out of caches."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _attempt_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _meta() -> RequestMeta:
    signed_in = current_user._get_current_object() if current_user.is_authenticated else None
    return RequestMeta(signed_in=signed_in, user_agent=request.user_agent.string)


def _refused_page(refusal: LinkRefused):
    return render_template("links/refused.html", refusal=refusal), refusal.status_code


def _code_page(link, form: RedeemForm, status: int = 200):
    return render_template("links/redeem.html", link=link, form=form), status


# --- the link ------------------------------------------------------------------------
@bp.get("/l/<code>")
def open_link(code: str):
    try:
        link = operations.open_link(code, _meta())
    except LinkRefused as refusal:
        return _refused_page(refusal)
    db.session.commit()
    return _code_page(link, RedeemForm())


@bp.post("/l/<code>")
@limiter.limit(_attempt_limit)
def redeem(code: str):
    form, meta = RedeemForm(), _meta()
    try:
        link = operations.find_live_link(code, meta)
        number = link.case.number
        if not form.validate_on_submit():
            return _code_page(link, form, 400)
        token = operations.redeem(code, form.factor.data, meta)
    except LinkRefused as refusal:
        return _refused_page(refusal)
    except AuthenticationFailed as exc:
        form.factor.errors.append(str(exc))
        return _code_page(link, form, 401)
    response = redirect(url_for("links.viewer", number=number), 303)
    _set_viewer_cookie(response, token)
    return response


def _set_viewer_cookie(response, token: str) -> None:
    config = current_app.config
    response.set_cookie(
        VIEWER_COOKIE,
        token,
        max_age=int(config["VIEWER_ABSOLUTE_TIMEOUT"].total_seconds()),
        path="/viewer",
        secure=config["BASE_URL"].startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


# --- the viewer ------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesRow:
    number: int | None
    description: str
    modality: str
    images: int


def _series_rows(study: Study) -> list[SeriesRow]:
    counts = dict(
        db.session.execute(
            select(Instance.series_id, func.count(Instance.id))
            .join(Series, Series.id == Instance.series_id)
            .where(Series.study_id == study.id)
            .group_by(Instance.series_id)
        ).all()
    )
    return [
        SeriesRow(s.series_number, s.description, s.modality, counts.get(s.id, 0))
        for s in study.series
    ]


def _studies(access: ViewerAccess) -> list[tuple[Study, list[SeriesRow]]]:
    """The studies to read: the de-identified copies for a reader, else the originals."""
    reader = access.view == View.READER
    studies = [link.study_for_reading if reader else link.study for link in access.case.studies]
    return [(study, _series_rows(study)) for study in studies]


def _report_url(access: ViewerAccess) -> str | None:
    for kind, endpoint in ((Kind.REPORT, "reports.report"), (Kind.OVERREAD, "reports.overread")):
        if may_write(access.case, access.user, kind):
            return url_for(endpoint, number=access.case.number)
    return None


@bp.get("/viewer/<number>")
def viewer(number: str):
    signed_in = _meta().signed_in
    try:
        access = open_viewer(number, signed_in)
    except ViewerRefused as refusal:
        return _ended_page(refusal)
    db.session.commit()
    return render_template(
        "links/viewer.html",
        access=access,
        case=access.case,
        show_subject=shows_subject(access.case, access.view),
        studies=_studies(access),
        report_url=_report_url(access),
        end_form=EndForm() if access.session else None,
    )


def _ended_page(refusal: ViewerRefused):
    page = render_template("links/ended.html", refusal=refusal, number=refusal.case_number)
    response = current_app.make_response((page, refusal.status_code))
    if refusal.session_dead:
        response.delete_cookie(VIEWER_COOKIE, path="/viewer")
    return response


@bp.post("/viewer/<number>/end")
def end(number: str):
    if EndForm().validate_on_submit():
        end_viewer_session()
        db.session.commit()
    response = current_app.make_response(
        render_template("links/ended.html", refusal=None, number=_known_number(number))
    )
    response.delete_cookie(VIEWER_COOKIE, path="/viewer")
    return response


def _known_number(number: str) -> str | None:
    return db.session.scalar(select(Case.number).where(Case.number == number.upper()))
