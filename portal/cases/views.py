"""Web pages of the cases package: the request form, the case lists, the case page, the queue.

The buttons that move a case live in :mod:`portal.cases.action_views`, nested under
this blueprint. Every page checks access through :mod:`portal.cases.access`.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import or_, select

from portal.audit.operations import record
from portal.auth.models import Role, User
from portal.cases import case_page
from portal.cases.access import View, get_case, visible_cases
from portal.cases.action_views import action_forms
from portal.cases.action_views import bp as actions_bp
from portal.cases.attachments import discard, store_attachment
from portal.cases.forms import ActionForm, RequestForm, request_form_for
from portal.cases.models import Case, CaseAttachment, Offer
from portal.cases.operations import new_case_number, requestable_studies, submit_case
from portal.cases.queue import QueueFilter, open_cases
from portal.cases.reading_copies import make_reading_copies
from portal.cases.states import OPEN_STATES, OfferStatus, State, Subspecialty, Urgency
from portal.cases.summary import CaseSummary, summarize
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.security import role_required
from portal.storage import get_storage
from portal.studies.models import Study

bp = Blueprint("cases", __name__, url_prefix="/cases")
bp.register_blueprint(actions_bp)
bp.add_app_template_global(case_page.sla_clock, "sla_clock")
REQUESTERS = (Role.PATIENT, Role.PHYSICIAN)
PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    user = current_user._get_current_object()
    if user.role == Role.RADIOLOGIST:
        return render_template(
            "cases/index_radiologist.html",
            offers=_open_offers(user),
            mine=_reading(user),
            action_form=ActionForm(),
        )
    query = visible_cases(user).order_by(Case.submitted_at.desc(), Case.id.desc())
    page = db.paginate(
        query, page=request.args.get("page", 1, type=int), per_page=PER_PAGE, error_out=False
    )
    return render_template("cases/index.html", page=page)


def _open_offers(user: User) -> list[tuple[Offer, CaseSummary]]:
    offers = db.session.scalars(
        select(Offer)
        .join(Case)
        .where(Offer.radiologist_id == user.id, Offer.status == OfferStatus.OPEN)
        .order_by(Case.sla_due_at)
    ).all()
    return [(offer, summarize(offer.case)) for offer in offers]


def _reading(user: User) -> list[Case]:
    return db.session.scalars(
        select(Case)
        .where(
            or_(Case.assignee_id == user.id, Case.overreader_id == user.id),
            Case.state != State.CANCELLED,
        )
        .order_by(Case.updated_at.desc())
        .limit(PER_PAGE)
    ).all()


# --- the request ------------------------------------------------------------------------
@bp.route("/new", methods=["GET", "POST"])
@role_required(*REQUESTERS)
def new_case():
    user = current_user._get_current_object()
    studies = requestable_studies(user)
    form = request_form_for(user, studies)
    if not form.validate_on_submit():
        return _request_page(form, studies, 400 if form.is_submitted() else 200)
    try:
        attachments = _store_uploads(form, user)
    except InvalidInput as exc:
        form.attachments.errors.append(str(exc))
        return _request_page(form, studies, 400)
    try:
        case = _submit(form, user, studies, attachments)
    except InvalidInput as exc:
        form.form_errors.append(str(exc))
        return _request_page(form, studies, 400)
    flash(f"Your request is sent: case {case.number}.", "success")
    return redirect(url_for("cases.show", number=case.number))


def _request_page(form: RequestForm, studies: list[Study], status: int):
    page = render_template(
        "cases/new.html",
        form=form,
        has_studies=bool(studies),
        physician=current_user.role == Role.PHYSICIAN,
    )
    return page, status


def _store_uploads(form: RequestForm, user: User) -> list[CaseAttachment]:
    """Check and store each chosen file; on a refusal remove the ones stored before it."""
    stored: list[CaseAttachment] = []
    try:
        for upload in form.uploaded_files():
            stored.append(store_attachment(upload.stream, upload.filename, user.id))
    except InvalidInput:
        discard(stored)
        raise
    return stored


def _submit(
    form: RequestForm, user: User, studies: list[Study], attachments: list[CaseAttachment]
) -> Case:
    """Make the reading copies if asked, open the case and commit; undo the blobs on failure."""
    case_request = form.case_request()
    case_request.attachments = attachments
    try:
        number = None
        if case_request.deidentify:
            number = new_case_number()
            chosen = [study for study in studies if study.id in set(case_request.study_ids)]
            case_request.reading_copies = make_reading_copies(chosen, user, number)
        case = submit_case(user, case_request, number=number)
        db.session.commit()
    except Exception:
        db.session.rollback()
        discard(attachments)
        raise
    return case


# --- one case -------------------------------------------------------------------------------
@bp.get("/<number>")
@login_required
def show(number: str):
    user = current_user._get_current_object()
    case, view = get_case(user, number)
    record("case.viewed", user, case_id=case.id, target=case.number, view=view.value)
    db.session.commit()
    actions = case_page.available_actions(case, user)
    return render_template(
        "cases/show.html",
        case=case,
        view=view,
        summary=summarize(case),
        timeline=case_page.timeline(case, view, user),
        studies=case_page.study_rows(case, view),
        show_subject=case_page.shows_subject(case, view),
        show_details=view in (View.FULL, View.READER),
        actions=actions,
        forms=action_forms(case, actions),
        offers=case.offers if user.role == Role.ADMIN else [],
    )


@bp.get("/<number>/attachments/<int:attachment_id>")
@login_required
def download_attachment(number: str, attachment_id: int):
    user = current_user._get_current_object()
    case, view = get_case(user, number)
    attachment = next((a for a in case.attachments if a.id == attachment_id), None)
    if attachment is None or view not in (View.FULL, View.READER):
        raise NotFound("No such attachment.")
    record(
        "case.attachment_downloaded",
        user,
        case_id=case.id,
        target=case.number,
        attachment=attachment.id,
    )
    db.session.commit()
    response = send_file(
        get_storage().open(attachment.storage_key),
        mimetype=attachment.content_type,
        as_attachment=True,
        download_name=attachment.filename,
        conditional=False,
        etag=False,
    )
    response.content_length = attachment.size_bytes
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- the coordinators' queue ------------------------------------------------------------
@bp.get("/queue")
@role_required(Role.ADMIN)
def queue():
    filters = QueueFilter.from_args(request.args)
    return render_template(
        "cases/queue.html",
        rows=open_cases(filters),
        filters=filters,
        states=[state for state in State if state in OPEN_STATES],
        urgencies=list(Urgency),
        subspecialties=list(Subspecialty),
    )
