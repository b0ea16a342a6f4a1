"""Admin pages. Every page is for admins only and each change is audited."""

from __future__ import annotations

from dataclasses import asdict

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, or_, select

from portal.audit import queries
from portal.audit.operations import record
from portal.auth import account_links, operations
from portal.auth.forms import ConfirmForm, InviteForm, RoleForm
from portal.auth.models import AccountLink, Role, User
from portal.errors import OverreadError
from portal.extensions import db
from portal.notifications.models import Notification, Status
from portal.security import role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@role_required(Role.ADMIN)
def admins_only():
    return None


@bp.get("/users")
def users():
    q, role = request.args.get("q", "").strip(), request.args.get("role", "")
    query = select(User).order_by(User.email)
    if q:
        query = query.where(
            or_(User.email.icontains(q, autoescape=True), User.name.icontains(q, autoescape=True))
        )
    if role in {r.value for r in Role}:
        query = query.where(User.role == role)
    page = db.paginate(
        query, page=request.args.get("page", 1, type=int), per_page=50, error_out=False
    )
    return render_template("admin/users.html", page=page, q=q, role=role, roles=list(Role))


@bp.get("/users/<int:user_id>")
def user_detail(user_id: int):
    user = db.get_or_404(User, user_id)
    return render_template(
        "admin/user.html", user=user, role_form=RoleForm(role=user.role), confirm_form=ConfirmForm()
    )


@bp.post("/users/<int:user_id>/role")
def change_role(user_id: int):
    user = db.get_or_404(User, user_id)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            operations.set_role(current_user, user, form.role.data)
        except OverreadError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"{user.email} is now {user.role}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/<any(deactivate, reactivate):change>")
def change_active(user_id: int, change: str):
    user = db.get_or_404(User, user_id)
    if ConfirmForm().validate_on_submit():
        try:
            operations.set_active(current_user, user, change == "reactivate")
        except OverreadError as exc:
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"{user.email} is {'active' if user.active else 'deactivated'}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.route("/invites", methods=["GET", "POST"])
def invites():
    form = InviteForm()
    if form.validate_on_submit():
        try:
            account_links.create_invite(current_user, form.email.data, form.role.data)
        except OverreadError as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            db.session.commit()
            flash(f"Invite sent to {form.email.data}.", "success")
            return redirect(url_for("admin.invites"))
    recent = db.session.scalars(
        select(AccountLink)
        .where(AccountLink.purpose == "invite")
        .order_by(AccountLink.id.desc())
        .limit(50)
    ).all()
    return render_template(
        "admin/invites.html", form=form, invites=recent
    ), 400 if form.errors else 200


def _audit_filter() -> queries.AuditFilter:
    args = request.args
    return queries.AuditFilter(
        user=args.get("user", ""), case=args.get("case", ""), action=args.get("action", "")
    )


@bp.get("/audit")
def audit():
    filters = _audit_filter()
    page = queries.list_events(filters, request.args.get("page", 1, type=int))
    return render_template("admin/audit.html", page=page, filters=filters)


@bp.get("/audit/export.<any(csv, json):fmt>")
def audit_export(fmt: str):
    filters = _audit_filter()
    record("audit.exported", current_user, format=fmt, filters=asdict(filters))
    db.session.commit()
    stream = queries.export_csv(filters) if fmt == "csv" else queries.export_json(filters)
    mimetype = "text/csv" if fmt == "csv" else "application/json"
    return Response(
        stream_with_context(stream),
        mimetype=mimetype,
        headers={"Content-Disposition": f"attachment; filename=overread-audit.{fmt}"},
    )


@bp.get("/outbox")
def outbox():
    status = request.args.get("status", "")
    channel = request.args.get("channel", "")
    query = select(Notification).order_by(Notification.id.desc())
    if status:
        if status not in {s.value for s in Status}:
            abort(400, "Unknown status filter.")
        query = query.where(Notification.status == status)
    if channel:
        query = query.where(Notification.channel == channel)
    page = db.paginate(
        query, page=request.args.get("page", 1, type=int), per_page=50, error_out=False
    )
    counts = dict(
        db.session.execute(
            select(Notification.status, func.count()).group_by(Notification.status)
        ).all()
    )
    channels = db.session.scalars(
        select(Notification.channel).distinct().order_by(Notification.channel)
    ).all()
    return render_template(
        "admin/outbox.html",
        page=page,
        status=status,
        statuses=list(Status),
        counts=counts,
        channel=channel,
        channels=channels,
    )
