"""The case's signed reports as one PDF, the same bytes for the same content.

Each signed part (the report, its addenda, each overread) is printed with its
text, its signer, its signing time in UTC and its content hash; the last line
holds the hash over all parts (:func:`portal.reports.content.document_hash`).
The patient's name and date of birth appear only when the case is not
de-identified. The document carries no creation time, so rendering the same
content again gives identical bytes.
"""

from __future__ import annotations

import io
from datetime import datetime
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

from portal.cases.models import Case
from portal.cases.summary import summarize
from portal.reports.content import document_hash, labelled_fields, part_titles
from portal.reports.models import Report
from portal.reports.queries import signed_reports

__all__ = ["render_case_pdf", "signed_at_text", "signed_reports"]

_STYLES = getSampleStyleSheet()
_BODY = _STYLES["BodyText"]
_HASH = ParagraphStyle("Hash", parent=_BODY, fontName="Courier", fontSize=8, leading=10)
_SIGNED_WITH = {"password": "password", "totp": "authenticator code"}


def signed_at_text(moment: datetime) -> str:
    """Return a signing time as the PDF and the pages print it: ``2026-11-23 12:07:55 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_case_pdf(case: Case) -> bytes:
    """Return the PDF of ``case``'s signed reports.

    :raise ValueError: the case has no signed report yet.
    """
    reports = signed_reports(case)
    if not reports:
        raise ValueError(f"case {case.number} has no signed report")
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=f"Overread case {case.number}",
        author="Overread",
        subject="Second-opinion report",
        creator="Overread",
        invariant=True,
    )
    document.build(_story(case, reports))
    return buffer.getvalue()


def _story(case: Case, reports: list[Report]) -> list[Flowable]:
    story = [Paragraph("Overread second-opinion report", _STYLES["Title"])]
    story += [_fact(label, value) for label, value in _case_facts(case)]
    for report, title in zip(reports, part_titles(reports), strict=True):
        story += _part(report, title)
    story += [
        Spacer(1, 6 * mm),
        Paragraph("Hash of all signed content (SHA-256)", _STYLES["Heading3"]),
        Paragraph(document_hash(reports), _HASH),
    ]
    return story


def _case_facts(case: Case) -> list[tuple[str, str]]:
    summary = summarize(case)
    facts = [
        ("Case", case.number),
        ("Urgency", summary.urgency),
        ("Subspecialty", summary.subspecialty),
        ("Imaging", summary.headline.removeprefix(summary.urgency).strip()),
    ]
    if not case.deidentify:
        facts.append(("Patient", case.subject_name))
        if case.subject_birth_date is not None:
            facts.append(("Date of birth", case.subject_birth_date.isoformat()))
    return facts


def _part(report: Report, title: str) -> list[Flowable]:
    flowables: list[Flowable] = [Paragraph(title, _STYLES["Heading2"])]
    for label, text in labelled_fields(report):
        if label and text.strip():
            flowables.append(Paragraph(escape(label), _STYLES["Heading4"]))
        if text.strip():
            flowables.append(Paragraph(_markup(text), _BODY))
    signer = f"Signed by {report.author.name} on {signed_at_text(report.signed_at)}"
    method = _SIGNED_WITH.get(report.signed_with or "", report.signed_with or "")
    flowables += [
        Spacer(1, 2 * mm),
        Paragraph(escape(f"{signer}, confirmed with {method}."), _BODY),
        Paragraph(f"Content hash (SHA-256): {report.content_hash}", _HASH),
    ]
    return flowables


def _fact(label: str, value: str) -> Paragraph:
    return Paragraph(f"<b>{escape(label)}:</b> {escape(value)}", _BODY)


def _markup(text: str) -> str:
    """Escape ``text`` for a Paragraph and keep its line breaks."""
    return "<br/>".join(escape(line) for line in text.strip().splitlines())
