"""What may be said about a case without naming the patient.

Offers, pages and SMS carry only these facts: the case number, urgency,
subspecialty, modalities, body parts, an age band and the SLA deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from portal.cases.models import Case


def age_band(birth_date: date | None, on: date) -> str:
    """Return a coarse age band (``"40-49"``, ``"under 1"``, ``"90+"``), or ``"age unknown"``."""
    if birth_date is None or birth_date > on:
        return "age unknown"
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    if years < 1:
        return "under 1"
    if years < 18:
        return "child" if years < 12 else "adolescent"
    if years >= 90:
        return "90+"
    low = years // 10 * 10
    return f"{max(low, 18)}-{low + 9}"


@dataclass(frozen=True)
class CaseSummary:
    number: str
    urgency: str
    subspecialty: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    age_band: str
    sla_due_at: datetime

    @property
    def headline(self) -> str:
        """``"STAT CT chest"``: urgency, modalities and body parts, nothing else."""
        parts = [self.urgency, "/".join(self.modalities) or "imaging"]
        if self.body_parts:
            parts.append(", ".join(self.body_parts).lower())
        return " ".join(parts)


def summarize(case: Case) -> CaseSummary:
    """Return the PHI-free facts about ``case`` (from the studies the radiologist reads)."""
    modalities: dict[str, None] = {}
    body_parts: dict[str, None] = {}
    for link in case.studies:
        for series in link.study_for_reading.series:
            if series.modality:
                modalities.setdefault(series.modality)
            if series.body_part:
                body_parts.setdefault(series.body_part)
    return CaseSummary(
        number=case.number,
        urgency=case.urgency_enum.label,
        subspecialty=case.subspecialty_enum.label,
        modalities=tuple(modalities),
        body_parts=tuple(body_parts),
        age_band=age_band(_birth_date(case), case.submitted_at.date()),
        sla_due_at=case.sla_due_at,
    )


def _birth_date(case: Case) -> date | None:
    """The requester's date of birth, or failing that the one in the original files."""
    if case.subject_birth_date is not None:
        return case.subject_birth_date
    return next((link.study.patient.birth_date for link in case.studies), None)
