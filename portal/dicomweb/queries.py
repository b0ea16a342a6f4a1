"""Which studies a user may reach, and QIDO-RS matching on the index."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from pydicom.datadict import keyword_for_tag
from sqlalchemy import Select, literal, or_

from portal.auth.models import User
from portal.cases.access import visible_studies
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.studies.models import Instance, Patient, Series, Study

CONTROL_KEYS = {"limit", "offset", "includefield", "fuzzymatching"}
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_KEYWORD_FOR_TAG = {
    "0020000D": "StudyInstanceUID",
    "00100020": "PatientID",
    "00100010": "PatientName",
    "00080020": "StudyDate",
    "00080050": "AccessionNumber",
    "00080061": "ModalitiesInStudy",
    "00080060": "Modality",
    "0020000E": "SeriesInstanceUID",
    "00080018": "SOPInstanceUID",
    "00080016": "SOPClassUID",
    "00180015": "BodyPartExamined",
    "00200011": "SeriesNumber",
    "00200013": "InstanceNumber",
    "00080090": "ReferringPhysicianName",
}


def get_study(user: User, study_uid: str) -> Study:
    """:raise NotFound: no such study, or not visible to ``user`` (same answer)."""
    study = db.session.scalars(
        visible_studies(user).where(Study.study_instance_uid == study_uid)
    ).first()
    if study is None:
        raise NotFound("No such study.")
    return study


@dataclass
class SearchParams:
    filters: dict[str, str] = field(default_factory=dict)
    limit: int = 100
    offset: int = 0
    ignored: list[str] = field(default_factory=list)
    #: Keywords named by ``includefield`` (``"all"`` for every attribute the index holds).
    include: set[str] = field(default_factory=set)


def parse_search(args) -> SearchParams:
    """Read QIDO-RS query parameters; tags may be given as keywords or 8 hex digits."""
    params = SearchParams()
    for key, value in args.items(multi=True):
        if key in CONTROL_KEYS:
            continue
        keyword = _KEYWORD_FOR_TAG.get(key.upper(), key) if _TAG.match(key) else key
        params.filters[keyword] = value
    for value in args.getlist("includefield"):
        params.include.update(_keyword(name.strip()) for name in value.split(",") if name.strip())
    params.limit = _bounded_int(args.get("limit"), 100, 1, 1000, "limit")
    params.offset = _bounded_int(args.get("offset"), 0, 0, 10**9, "offset")
    return params


def _keyword(name: str) -> str:
    """Return the keyword of ``name``, given as a keyword or as 8 hex digits."""
    if name == "all" or not _TAG.match(name):
        return name
    return keyword_for_tag(int(name, 16)) or name


def _bounded_int(raw: str | None, default: int, low: int, high: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise InvalidInput(f"{name} must be a whole number")
    return max(low, min(high, int(raw)))


def like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def match_text(column, value: str):
    """Single value, wildcard (* ?) or comma-separated UID list matching."""
    if "*" in value or "?" in value:
        return column.ilike(like_pattern(value), escape="\\")
    if "," in value:
        return column.in_([v.strip() for v in value.split(",") if v.strip()])
    return column == value


def match_date(column, value: str):
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-``."""
    start, dash, end = value.partition("-")
    if not dash:
        return column == _date(start)
    clauses = []
    if start:
        clauses.append(column >= _date(start))
    if end:
        clauses.append(column <= _date(end))
    if not clauses:
        raise InvalidInput("an empty date range matches nothing; give at least one end")
    return clauses[0] if len(clauses) == 1 else (clauses[0] & clauses[1])


def _date(text: str) -> date:
    text = text.replace(".", "")
    if not re.fullmatch(r"\d{8}", text):
        raise InvalidInput(f"dates are YYYYMMDD; got {text!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a calendar date") from None


STUDY_MATCHERS = {
    "StudyInstanceUID": lambda v: match_text(Study.study_instance_uid, v),
    "PatientID": lambda v: match_text(Patient.patient_id, v),
    "PatientName": lambda v: match_text(Patient.name, v),
    "StudyDate": lambda v: match_date(Study.study_date, v),
    "AccessionNumber": lambda v: match_text(Study.accession_number, v),
    "ReferringPhysicianName": lambda v: match_text(Study.referring_physician, v),
    "ModalitiesInStudy": lambda v: or_(*[_has_modality(m.strip()) for m in v.split(",")]),
}
SERIES_MATCHERS = {
    "SeriesInstanceUID": lambda v: match_text(Series.series_instance_uid, v),
    "Modality": lambda v: match_text(Series.modality, v),
    "BodyPartExamined": lambda v: match_text(Series.body_part, v),
    "SeriesNumber": lambda v: Series.series_number == _int(v),
}
INSTANCE_MATCHERS = {
    "SOPInstanceUID": lambda v: match_text(Instance.sop_instance_uid, v),
    "SOPClassUID": lambda v: match_text(Instance.sop_class_uid, v),
    "InstanceNumber": lambda v: Instance.instance_number == _int(v),
}


def _has_modality(modality: str):
    """Match one code in the backslash-separated ModalitiesInStudy value exactly."""
    padded = literal("\\") + Study.modalities_in_study + literal("\\")
    return padded.contains(f"\\{modality}\\", autoescape=True)


def _int(value: str) -> int:
    if not value.lstrip("-").isdigit():
        raise InvalidInput(f"expected a whole number, got {value!r}")
    return int(value)


def apply_filters(query: Select, params: SearchParams, matchers: dict) -> Select:
    """Add a WHERE clause per known key; unknown keys are noted in ``params.ignored``."""
    for keyword, value in params.filters.items():
        matcher = matchers.get(keyword)
        if matcher is None:
            params.ignored.append(keyword)
        elif value != "":
            query = query.where(matcher(value))
    return query
