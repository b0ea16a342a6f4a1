"""What a report says, what it must say before it is signed, and the hash that seals it.

The content hash is the SHA-256 of a canonical JSON document (sorted keys, no
spaces, UTF-8) holding the case number, the kind, every text field, the
agreement, the author's id and name, the signing time and, for addenda and
overreads, the hash of the report they follow. Recomputing it from the stored
row and comparing with ``content_hash`` shows whether the row was altered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from portal.errors import InvalidInput
from portal.reports.models import Agreement, Kind, Report

#: Longest text accepted in one field (about ten pages of prose).
MAX_FIELD_LENGTH = 20_000

#: The fields each kind of report is written in.
FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    Kind.REPORT: ("findings", "impression", "recommendations", "agreement"),
    Kind.ADDENDUM: ("comments",),
    Kind.OVERREAD: ("agreement", "comments"),
}

_TEXT_FIELDS = frozenset({"findings", "impression", "recommendations", "comments"})


@dataclass(frozen=True)
class Missing:
    """A field that must be filled before signing, and what to tell the author."""

    field: str
    message: str


def clean_fields(kind: str, data: Mapping[str, object]) -> dict[str, str | None]:
    """Return the fields of ``data`` that ``kind`` is written in, checked.

    Fields ``data`` leaves out are left out of the result, so a partial save
    changes only what it carries.

    :raise InvalidInput: a value is not text, too long, or not an agreement.
    """
    cleaned: dict[str, str | None] = {}
    for name in FIELDS_BY_KIND[kind]:
        if name not in data:
            continue
        value = data[name]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be text.")
        if len(value) > MAX_FIELD_LENGTH:
            raise InvalidInput(f"{name} is longer than {MAX_FIELD_LENGTH} characters.")
        cleaned[name] = value if name in _TEXT_FIELDS else _agreement(value)
    return cleaned


def _agreement(value: str) -> str | None:
    if not value:
        return None
    try:
        return Agreement(value).value
    except ValueError:
        raise InvalidInput("Choose agree, minor discrepancy or major discrepancy.") from None


def missing_for_signing(report: Report) -> list[Missing]:
    """Return what ``report`` still lacks before it may be signed (empty when complete)."""
    missing = []
    if report.kind == Kind.REPORT and not report.impression.strip():
        missing.append(Missing("impression", "Write the impression before signing."))
    if report.kind in (Kind.REPORT, Kind.OVERREAD) and not report.agreement:
        missing.append(Missing("agreement", "Choose whether you agree before signing."))
    if report.kind == Kind.ADDENDUM and not report.comments.strip():
        missing.append(Missing("comments", "Write the addendum before signing."))
    discrepancy = report.agreement in (Agreement.MINOR, Agreement.MAJOR)
    if report.kind == Kind.OVERREAD and discrepancy and not report.comments.strip():
        missing.append(Missing("comments", "Describe the discrepancy before signing."))
    return missing


def canonical_content(report: Report, case_number: str) -> bytes:
    """Return the canonical JSON that :func:`content_hash` hashes (``signed_at`` must be set)."""
    document = {
        "case": case_number,
        "kind": report.kind,
        "findings": report.findings,
        "impression": report.impression,
        "recommendations": report.recommendations,
        "agreement": report.agreement,
        "comments": report.comments,
        "author_id": report.author_id,
        "author_name": report.author.name,
        "signed_at": report.signed_at.isoformat(),
        "parent_hash": report.parent.content_hash if report.parent is not None else None,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(report: Report, case_number: str) -> str:
    """Return the SHA-256 hex digest of the report's canonical content."""
    return hashlib.sha256(canonical_content(report, case_number)).hexdigest()


def hash_matches(report: Report, case_number: str) -> bool:
    """Tell whether a signed report still holds the content it was signed with."""
    return report.content_hash == content_hash(report, case_number)


def document_hash(reports: Iterable[Report]) -> str:
    """Return the SHA-256 over the content hashes of ``reports``, in order, one per line."""
    lines = "".join(f"{report.content_hash}\n" for report in reports)
    return hashlib.sha256(lines.encode()).hexdigest()


def part_titles(reports: Iterable[Report]) -> list[str]:
    """Return a heading per signed part: ``Report``, ``Addendum 1``, ``Overread 2`` and so on."""
    counts: dict[str, int] = {}
    titles = []
    for report in reports:
        counts[report.kind] = counts.get(report.kind, 0) + 1
        label = Kind(report.kind).label
        titles.append(label if report.kind == Kind.REPORT else f"{label} {counts[report.kind]}")
    return titles


def labelled_fields(report: Report) -> list[tuple[str, str]]:
    """Return ``(label, text)`` for each field the report's kind is written in, in reading order.

    An addendum's one field has no label of its own: its heading names it.
    """
    agreement = report.agreement_enum.label if report.agreement_enum else ""
    if report.kind == Kind.REPORT:
        return [
            ("Agreement with the original read", agreement),
            ("Findings", report.findings),
            ("Impression", report.impression),
            ("Recommendations", report.recommendations),
        ]
    if report.kind == Kind.OVERREAD:
        return [("Agreement with the report", agreement), ("Comments", report.comments)]
    return [("", report.comments)]  # the part's heading says it is an addendum
