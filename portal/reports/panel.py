"""What the case page shows of the reports: the signed parts and the next thing to do.

``templates/reports/_case_reports.html`` calls :func:`case_reports_panel`
(a template global) with the case page's ``case``, ``view`` and user. An offer
shows nothing; the requester, an admin and the case's radiologists see the
signed parts, and showing them is audited as ``report.viewed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import url_for

from portal.audit.operations import record
from portal.auth.models import User
from portal.cases.access import View
from portal.cases.models import Case
from portal.extensions import db
from portal.reports.content import part_titles
from portal.reports.models import Kind, Report
from portal.reports.operations import may_write
from portal.reports.queries import draft_of, signed_reports


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    primary: bool = False


@dataclass(frozen=True)
class Panel:
    parts: list[tuple[Report, str]] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


#: Per kind: the page to write it on, and the link's label for a new and a started draft.
_WRITE_LINKS = {
    Kind.REPORT: ("reports.report", "Write the report", "Continue draft"),
    Kind.ADDENDUM: ("reports.addendum", "Add addendum", "Continue addendum"),
    Kind.OVERREAD: ("reports.overread", "Write the overread", "Continue overread"),
}


def case_reports_panel(case: Case, view: View, user: User) -> Panel:
    """Return the signed parts ``user`` may read on the case page and the links for them."""
    if view not in (View.FULL, View.READER):
        return Panel()
    reports = signed_reports(case)
    links = write_links(case, user)
    if reports:
        links.append(Link("Download PDF", url_for("reports.report_pdf", number=case.number)))
        record_view(case, user, reports, where="case page")
        db.session.commit()
    return Panel(list(zip(reports, part_titles(reports), strict=True)), links)


def write_links(case: Case, user: User) -> list[Link]:
    """Return a link to each report, addendum or overread ``user`` may write on ``case`` now."""
    links = []
    for kind, (endpoint, new, started) in _WRITE_LINKS.items():
        if may_write(case, user, kind):
            label = started if draft_of(case, user, kind) is not None else new
            links.append(Link(label, url_for(endpoint, number=case.number), primary=True))
    return links


def record_view(case: Case, user: User, reports: list[Report], *, where: str) -> None:
    """Audit that ``user`` was shown the signed ``reports`` of ``case``; the caller commits."""
    record(
        "report.viewed",
        user,
        case_id=case.id,
        target=f"report:{reports[0].id}",
        parts=len(reports),
        where=where,
    )
