"""Web pages of the shares package: the sharer's form and the recipient's pages.

The recipient never signs in: the emailed link starts a share session of its
own (:mod:`portal.shares.session`), an emailed one-time code verifies it, and
every page re-checks the share before it shows anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from portal.auth.forms import CodeForm, ConfirmForm
from portal.auth.models import User
from portal.cases.access import get_case
from portal.cases.models import Case
from portal.errors import NotFound, OverreadError
from portal.extensions import db, limiter
from portal.reports.pdf import render_case_pdf, signed_reports
from portal.security import deny
from portal.shares import archive, operations, queries
from portal.shares import session as share_session
from portal.shares.forms import ShareForm
from portal.shares.models import Share

bp = Blueprint("shares", __name__)

#: How often one share's address may be sent a code (on top of the per-IP limit).
CODE_SEND_LIMIT = "5 per hour"
#: The share form's field names carry this prefix: the case page holds other forms.
SHARE_FORM_PREFIX = "share"


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _share_key() -> str:
    return f"share-code:{session[share_session.KEY]['id']}"


def _no_share_session() -> bool:
    return share_session.KEY not in session


# --- the sharer -------------------------------------------------------------------
@dataclass(frozen=True)
class SharePanel:
    form: ShareForm
    revoke_form: ConfirmForm
    listings: list[queries.ShareListing]
    max_days: int


@bp.app_template_global()
def case_shares_panel(case: Case, user: User) -> SharePanel | None:
    """Return the case page's share form and list for ``user``, or ``None`` (not a sharer)."""
    if not operations.may_share(user, case):
        return None
    most = current_app.config["SHARE_DAYS"]
    return SharePanel(
        ShareForm(prefix=SHARE_FORM_PREFIX, days=most),
        ConfirmForm(),
        queries.shares_of_case(case),
        most,
    )


def _case_for_sharing(number: str) -> Case:
    case, _view = get_case(current_user, number)
    if not operations.may_share(current_user, case):
        raise deny(f"role {current_user.role} may not share case {case.id}")
    return case


def _case_page(case: Case) -> str:
    return url_for("cases.show", number=case.number, _anchor="shares")


@bp.post("/cases/<number>/shares")
@login_required
def create(number: str):
    case = _case_for_sharing(number)
    form = ShareForm(prefix=SHARE_FORM_PREFIX)
    if not form.validate_on_submit():
        errors = [error for messages in form.errors.values() for error in messages]
        flash("Not shared: " + " ".join(errors), "error")
        return redirect(_case_page(case))
    try:
        share = operations.create_share(current_user, case, form.email.data, form.days.data)
    except OverreadError as exc:
        db.session.rollback()
        flash(f"Not shared: {exc}", "error")
        return redirect(_case_page(case))
    db.session.commit()
    flash(
        f"Shared with {share.email} until {share.expires_at:%Y-%m-%d %H:%M} UTC. "
        "They were sent the link by email.",
        "success",
    )
    return redirect(_case_page(case))


@bp.post("/cases/<number>/shares/<int:share_id>/revoke")
@login_required
def revoke(number: str, share_id: int):
    case = _case_for_sharing(number)
    share = db.session.get(Share, share_id)
    if share is None or share.case_id != case.id:
        raise NotFound("No such share.")
    if ConfirmForm().validate_on_submit():
        operations.revoke_share(current_user, share)
        db.session.commit()
        flash(f"The share with {share.email} is withdrawn.", "success")
    return redirect(_case_page(case))


# --- the recipient ----------------------------------------------------------------
@bp.get("/shared/<token>")
def open_link(token: str):
    share = operations.open_link(token)
    db.session.commit()
    share_session.begin(share)
    return redirect(url_for("shares.verify"))


@bp.route("/shared/verify", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def verify():
    state = share_session.current()
    if state.verified:
        return redirect(url_for("shares.shared_case"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            operations.check_code(state.share, form.code.data)
        except OverreadError as exc:
            db.session.commit()  # keep the count of wrong codes and its audit row
            form.code.errors.append(str(exc))
        else:
            db.session.commit()
            share_session.mark_verified(state.share)
            return redirect(url_for("shares.shared_case"))
    return render_template(
        "shares/verify.html",
        share=state.share,
        masked_email=_masked(state.share.email),
        form=form,
        send_form=ConfirmForm(),
    ), 400 if form.errors else 200


@bp.post("/shared/verify/code")
@limiter.limit(_login_limit)
@limiter.limit(CODE_SEND_LIMIT, key_func=_share_key, exempt_when=_no_share_session)
def send_code():
    state = share_session.current()
    if state.verified:
        return redirect(url_for("shares.shared_case"))
    if ConfirmForm().validate_on_submit():
        operations.send_code(state.share)
        db.session.commit()
        minutes = int(operations.CODE_LIFETIME.total_seconds() // 60)
        sent_to = _masked(state.share.email)
        flash(f"We sent a code to {sent_to}. It works for {minutes} minutes.", "info")
    return redirect(url_for("shares.verify"))


def _masked(email: str) -> str:
    """Return ``j***@example.org`` for ``jane@example.org``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _verified_share() -> Share:
    state = share_session.current()
    if not state.verified:
        raise deny("share code not verified")
    return state.share


@bp.get("/shared/case")
def shared_case():
    state = share_session.current()
    if not state.verified:
        return redirect(url_for("shares.verify"))
    share = state.share
    operations.record_access("share.viewed", share)
    db.session.commit()
    return render_template(
        "shares/case.html",
        share=share,
        case=share.case,
        reports=signed_reports(share.case),
        studies=[link.study for link in share.case.studies],
    )


@bp.get("/shared/case/report.pdf")
def report_pdf():
    share = _verified_share()
    if not signed_reports(share.case):
        raise NotFound("There is no signed report yet.")
    pdf = render_case_pdf(share.case)
    operations.record_access("share.report_downloaded", share)
    db.session.commit()
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{share.case.number}.pdf"'},
    )


@bp.get("/shared/case/studies/<int:study_id>.zip")
def study_zip(study_id: int):
    share = _verified_share()
    if not queries.case_has_study(share.case, study_id):
        raise NotFound("No such study in this case.")
    members = archive.study_members(study_id)
    operations.record_access("share.study_downloaded", share, study_id=study_id)
    db.session.commit()
    filename = f"{share.case.number}-study-{study_id}.zip"
    return Response(
        stream_with_context(archive.zip_stream(members)),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.after_request
def keep_shared_pages_private(response: Response) -> Response:
    """No referrer from the link or the case, and no copies in caches."""
    if request.path.startswith("/shared/"):
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
    return response
