"""Web pages of the reports package: write, autosave, sign, read and download.

- ``/cases/<number>/report``: the assignee writes and signs the report; everyone
  else who may see the case reads the signed parts.
- ``/cases/<number>/addendum`` and ``/overread``: the same form for those kinds.
- ``POST /cases/<number>/<kind>/save``: the form ("Save draft" works without
  JavaScript; "Sign" saves, then signs). It has a URL of its own because
  ``POST /cases/<number>/overread`` is the requester's "ask for an overread".
- ``POST /cases/<number>/<kind>/draft``: JSON autosave (``static/js/report.js``).
- ``/cases/<number>/report.pdf``: the signed parts as a PDF.

Access is decided by :func:`portal.cases.access.get_case` and, for writing, by
:func:`portal.reports.operations.require_may_write`; refusals are audited.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from flask import Blueprint, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from portal.audit.operations import record
from portal.auth.models import User
from portal.cases.access import View, get_case
from portal.cases.models import Case
from portal.errors import AuthenticationFailed, InvalidInput, NotFound, PermissionDenied
from portal.extensions import db
from portal.reports import operations
from portal.reports.content import document_hash, labelled_fields, part_titles
from portal.reports.forms import AddendumForm, OverreadForm, ReportForm, SignFields
from portal.reports.models import Kind, Report
from portal.reports.panel import Link, case_reports_panel, record_view, write_links
from portal.reports.pdf import render_case_pdf, signed_at_text
from portal.reports.queries import draft_of, signed_reports
from portal.security import deny

bp = Blueprint("reports", __name__, url_prefix="/cases")
bp.add_app_template_global(case_reports_panel)
bp.add_app_template_global(labelled_fields)
bp.add_app_template_filter(signed_at_text)


@dataclass(frozen=True)
class Editor:
    """How one kind is written: its form and its page."""

    kind: Kind
    form: type[SignFields]

    @property
    def endpoint(self) -> str:
        return f"reports.{self.kind}"

    @property
    def heading(self) -> str:
        return self.kind.label


EDITORS = {
    Kind.REPORT: Editor(Kind.REPORT, ReportForm),
    Kind.ADDENDUM: Editor(Kind.ADDENDUM, AddendumForm),
    Kind.OVERREAD: Editor(Kind.OVERREAD, OverreadForm),
}


def _user() -> User:
    return current_user._get_current_object()


def _open_case(number: str) -> tuple[Case, View]:
    """Return the case and the user's view of it; an offer shows no reports (403, audited)."""
    case, view = get_case(current_user, number)
    if view == View.OFFER:
        raise deny(f"case {case.number} is only offered; its reports are not shown")
    return case, view


def _require_writer(case: Case, kind: Kind) -> None:
    try:
        operations.require_may_write(case, _user(), kind)
    except PermissionDenied as exc:
        raise deny(str(exc)) from None


@bp.get("/<number>/report")
@login_required
def report(number: str):
    """The report's form for its writer; for everyone else, the signed parts."""
    case, _ = _open_case(number)
    if not operations.may_write(case, _user(), Kind.REPORT):
        return _read_page(case)
    return _edit_page(case, EDITORS[Kind.REPORT])


@bp.get("/<number>/addendum")
@login_required
def addendum(number: str):
    case, _ = _open_case(number)
    return _edit_page(case, EDITORS[Kind.ADDENDUM])


@bp.get("/<number>/overread")
@login_required
def overread(number: str):
    case, _ = _open_case(number)
    return _edit_page(case, EDITORS[Kind.OVERREAD])


@bp.post("/<number>/<any(report, addendum, overread):kind>/save")
@login_required
def save(number: str, kind: str):
    """Save the posted draft ("Save draft"), or save and sign it ("Sign")."""
    case, _ = _open_case(number)
    editor = EDITORS[Kind(kind)]
    _require_writer(case, editor.kind)
    form = editor.form()
    if not form.validate_on_submit():
        return _editor_page(case, editor, form, 400)
    draft = operations.start_draft(case, _user(), editor.kind)
    operations.save_draft(draft, _user(), form.draft_data())
    if not form.sign.data:
        db.session.commit()
        flash("Draft saved.", "success")
        return redirect(url_for(editor.endpoint, number=case.number))
    return _sign(case, editor, form, draft)


@bp.post("/<number>/<any(report, addendum, overread):kind>/draft")
@login_required
def autosave(number: str, kind: str):
    """Save a draft sent as JSON; answer with when it was saved."""
    case, _ = _open_case(number)
    _require_writer(case, Kind(kind))
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput("Send the draft as a JSON object.")
    draft = operations.start_draft(case, _user(), Kind(kind))
    operations.save_draft(draft, _user(), data)
    db.session.commit()
    return jsonify(id=draft.id, saved_at=draft.updated_at.isoformat())


@bp.get("/<number>/report.pdf")
@login_required
def report_pdf(number: str):
    case, _ = _open_case(number)
    reports = signed_reports(case)
    if not reports:
        raise NotFound(f"Case {case.number} has no signed report yet.")
    pdf = render_case_pdf(case)
    record(
        "report.downloaded",
        _user(),
        case_id=case.id,
        target=f"report:{reports[0].id}",
        parts=len(reports),
        document_hash=document_hash(reports),
    )
    db.session.commit()
    return send_file(
        io.BytesIO(pdf),
        mimetype="application/pdf",
        as_attachment=True,
        download_name=f"overread-{case.number}.pdf",
    )


def _read_page(case: Case):
    reports = signed_reports(case)
    links = write_links(case, _user())
    if reports:
        links.append(Link("Download PDF", url_for("reports.report_pdf", number=case.number)))
        record_view(case, _user(), reports, where="report page")
        db.session.commit()
    return render_template(
        "reports/read.html",
        case=case,
        parts=list(zip(reports, part_titles(reports), strict=True)),
        links=links,
    )


def _edit_page(case: Case, editor: Editor):
    _require_writer(case, editor.kind)
    form = editor.form(obj=draft_of(case, _user(), editor.kind))
    return _editor_page(case, editor, form, 200)


def _sign(case: Case, editor: Editor, form: SignFields, draft: Report):
    credentials = {"password": form.password.data or "", "code": form.code.data or ""}
    try:
        operations.sign(draft, _user(), **credentials)
    except operations.IncompleteReport as exc:
        db.session.commit()  # keep the draft
        for missing in exc.missing:
            form[missing.field].errors.append(missing.message)
        return _editor_page(case, editor, form, 400)
    except (InvalidInput, AuthenticationFailed) as exc:
        db.session.commit()  # keep the draft, and the failure count with its audit row
        (form.code if form.code.data else form.password).errors.append(str(exc))
        return _editor_page(case, editor, form, exc.status_code)
    db.session.commit()
    flash(f"The {editor.kind} is signed.", "success")
    return redirect(url_for("reports.report", number=case.number))


def _editor_page(case: Case, editor: Editor, form: SignFields, status: int):
    reports = [] if editor.kind == Kind.REPORT else signed_reports(case)
    if reports:  # the addendum's author and the overreader read what they add to
        record_view(case, _user(), reports, where=f"{editor.kind} page")
        db.session.commit()
    draft = draft_of(case, _user(), editor.kind)
    return render_template(
        "reports/edit.html",
        case=case,
        editor=editor,
        form=form,
        draft=draft,
        parts=list(zip(reports, part_titles(reports), strict=True)),
        save_url=url_for("reports.save", number=case.number, kind=editor.kind.value),
        autosave_url=url_for("reports.autosave", number=case.number, kind=editor.kind.value),
    ), status
