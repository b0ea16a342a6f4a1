"""Who may read a case's images through the viewer, and which images those are.

Mirrors ``GET /viewer/<number>``: a live viewer session for the case (its
radiologist reads), else a signed-in user whose view of the case is more than an
offer. A reader sees the de-identified reading copies of a de-identified case;
the requester and admins see the originals. Refusals are audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select

from portal.audit.operations import record_now
from portal.auth.models import User
from portal.cases.access import View, view_of
from portal.cases.models import Case, CaseStudy
from portal.errors import NotFound, OverreadError
from portal.extensions import db
from portal.links.sessions import check_viewer_session
from portal.studies.models import Instance, Series, Study
from portal.viewer.images import ImageRef


class ImagesRefused(OverreadError):
    """Neither a viewer session nor a sign-in gives access to this case's images."""

    title = "Viewing session ended"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ImageAccess:
    """A request's access to a case's images; ``session_id`` is ``None`` for a sign-in."""

    case: Case
    user: User
    view: View
    session_id: int | None

    @property
    def via(self) -> str:
        return "viewer session" if self.session_id else "sign-in"

    def study_ids(self) -> Select:
        """Ids of the studies this viewer reads: the reading copies for a reader, else originals."""
        column = CaseStudy.study_id
        if self.view == View.READER:
            column = func.coalesce(CaseStudy.reading_study_id, CaseStudy.study_id)
        return select(column).where(CaseStudy.case_id == self.case.id)

    def studies(self) -> list[Study]:
        """The studies this viewer reads, oldest first."""
        query = select(Study).where(Study.id.in_(self.study_ids())).order_by(Study.id)
        return list(db.session.scalars(query))


def open_images(number: str, signed_in: User | None, resource: str) -> ImageAccess:
    """Decide whether this request may read case ``number``'s images; the caller commits.

    A live viewer session is touched (``last_seen_at``).

    :param resource: what was asked for (``manifest`` or ``image``), for the audit row.
    :raise ImagesRefused: 401 or 403; the ``viewer.refused`` row is committed.
    """
    case = db.session.scalars(select(Case).where(Case.number == number.upper())).first()
    found, reason = check_viewer_session(case) if case else (None, "no such case")
    if found is not None:
        return ImageAccess(case, found.user, View.READER, found.id)
    if signed_in is not None:
        view = view_of(signed_in, case) if case else None
        if view is not None and view != View.OFFER:
            return ImageAccess(case, signed_in, view, None)
        reason = "offer only" if view == View.OFFER else "not visible"
    _audit_refusal(case, number, signed_in, reason, resource)
    status = 403 if signed_in is not None or reason == "another case" else 401
    raise ImagesRefused("Your viewing session has ended; open the case again.", status)


def find_image(access: ImageAccess, sop_instance_uid: str) -> ImageRef:
    """Return the instance ``sop_instance_uid`` if it belongs to a study this viewer reads.

    :raise NotFound: it does not (the refusal is audited and committed).
    """
    instance = db.session.scalars(
        select(Instance)
        .join(Series, Series.id == Instance.series_id)
        .where(
            Instance.sop_instance_uid == sop_instance_uid,
            Series.study_id.in_(access.study_ids()),
        )
    ).first()
    if instance is None or not instance.rows:
        _audit_refusal(access.case, access.case.number, access.user, "image not in case", "image")
        raise NotFound("No such image in this case.")
    return ImageRef.of(instance)


def _audit_refusal(
    case: Case | None, number: str, actor: User | None, reason: str, resource: str
) -> None:
    record_now(
        "viewer.refused",
        actor,
        case_id=case.id if case else None,
        target=case.number if case else number[:20],
        reason=reason,
        resource=resource,
    )
