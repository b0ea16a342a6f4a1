"""The viewer's manifest: a case's studies, series and stacks, as the front-end reads them.

The shape is a contract with the viewer UI::

    {"case": {"number", "urgency", "modalities"},
     "studies": [{"uid", "description", "date", "series": [
         {"uid", "number", "description", "modality", "body_part", "images",
          "multiframe", "thumbnail",
          "instances": [{"uid", "number", "frames", "rows", "columns", "position",
                         "slice_location", "thickness", "spacing", "spacing_kind",
                         "frame_time_ms", "windows": [{"center", "width", "name"}],
                         "url"}],
          "presets": [{"name", "center", "width"}]}]}],
     "report_url": str | None}

``url`` holds a literal ``{frame}`` for the 1-based frame number. The ``auto``
preset has ``center`` and ``width`` null: ask for it with ``window=auto``.
Instances are in stack order: by Image Position (Patient) against the slice normal
(an axial stack from head to feet, as radiologists read it) when every instance
has one, else by Instance Number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

from portal.extensions import db
from portal.studies.models import Instance, Series, Study
from portal.viewer.images import ImageRef
from portal.viewer.metadata import InstanceFacts

THUMBNAIL_SIZE = 256
#: (name, center, width) in HU. Brain, subdural, stroke, bone: common neuro CT settings;
#: lung, mediastinum, abdomen, liver: common body CT settings.
CT_PRESETS = (
    ("brain", 40, 80),
    ("subdural", 75, 215),
    ("stroke", 40, 40),
    ("lung", -600, 1500),
    ("mediastinum", 50, 350),
    ("abdomen", 40, 400),
    ("liver", 60, 160),
    ("bone", 400, 1800),
)
AUTO_PRESET = {"name": "auto", "center": None, "width": None}


@dataclass
class InstanceRow:
    image: ImageRef
    number: int | None
    rows: int
    columns: int


@dataclass
class SeriesRows:
    uid: str
    number: int | None
    description: str
    modality: str
    body_part: str
    instances: list[InstanceRow] = field(default_factory=list)


@dataclass
class StudyRows:
    uid: str
    description: str
    date: date | None
    series: list[SeriesRows] = field(default_factory=list)


def study_rows(studies: list[Study]) -> list[StudyRows]:
    """Read what the manifest needs from the index (plain values; safe after commit)."""
    ids = [study.id for study in studies]
    by_series: dict[int, SeriesRows] = {}
    result = []
    series_of: dict[int, list[SeriesRows]] = {study_id: [] for study_id in ids}
    found = db.session.scalars(select(Series).where(Series.study_id.in_(ids))).all()
    for series in sorted(found, key=lambda s: (s.series_number is None, s.series_number, s.id)):
        rows = SeriesRows(
            series.series_instance_uid,
            series.series_number,
            series.description,
            series.modality,
            series.body_part,
        )
        by_series[series.id] = rows
        series_of[series.study_id].append(rows)
    for instance in db.session.scalars(
        select(Instance).where(Instance.series_id.in_(by_series), Instance.rows.is_not(None))
    ):
        by_series[instance.series_id].instances.append(
            InstanceRow(
                ImageRef.of(instance), instance.instance_number, instance.rows, instance.columns
            )
        )
    for study in studies:
        shown = [s for s in series_of[study.id] if s.instances]
        result.append(
            StudyRows(study.study_instance_uid, study.description, study.study_date, shown)
        )
    return result


def images_of(studies: list[StudyRows]) -> list[ImageRef]:
    return [row.image for study in studies for series in study.series for row in series.instances]


def build_manifest(
    case: dict,
    studies: list[StudyRows],
    facts: dict[str, InstanceFacts],
    base_url: str,
    report_url: str | None,
) -> dict:
    """Assemble the manifest; ``base_url`` is ``/viewer/<number>`` as the app is mounted."""
    return {
        "case": case,
        "studies": [
            {
                "uid": study.uid,
                "description": study.description,
                "date": study.date.isoformat() if study.date else None,
                "series": [_series(series, facts, base_url) for series in study.series],
            }
            for study in studies
        ],
        "report_url": report_url,
    }


def _series(series: SeriesRows, facts: dict[str, InstanceFacts], base_url: str) -> dict:
    ordered = stack_order(series.instances, facts)
    middle = ordered[len(ordered) // 2]
    return {
        "uid": series.uid,
        "number": series.number,
        "description": series.description,
        "modality": series.modality,
        "body_part": series.body_part,
        "images": len(ordered),
        "multiframe": any(row.image.frames > 1 for row in ordered),
        "thumbnail": f"{base_url}/frames/{middle.image.sop_instance_uid}/1?size={THUMBNAIL_SIZE}",
        "instances": [_instance(row, facts[row.image.sha256], base_url) for row in ordered],
        "presets": presets(series.modality, facts[middle.image.sha256]),
    }


def _instance(row: InstanceRow, facts: InstanceFacts, base_url: str) -> dict:
    return {
        "uid": row.image.sop_instance_uid,
        "number": row.number,
        "frames": row.image.frames,
        "rows": row.rows,
        "columns": row.columns,
        "position": facts.position,
        "slice_location": facts.slice_location,
        "thickness": facts.thickness,
        "spacing": facts.spacing,
        "spacing_kind": facts.spacing_kind,
        "frame_time_ms": facts.frame_time_ms,
        "windows": facts.windows,
        "url": f"{base_url}/frames/{row.image.sop_instance_uid}/{{frame}}",
    }


def presets(modality: str, facts: InstanceFacts) -> list[dict]:
    """CT: the named HU windows. Colour: none. Others: the file's own windows, then auto."""
    if facts.color:
        return []
    if modality.upper() == "CT":
        return [{"name": n, "center": c, "width": w} for n, c, w in CT_PRESETS]
    seen, own = set(), []
    for window in facts.windows:
        if (window["center"], window["width"]) not in seen:
            seen.add((window["center"], window["width"]))
            own.append(window)
    return [*own, dict(AUTO_PRESET)]


def stack_order(rows: list[InstanceRow], facts: dict[str, InstanceFacts]) -> list[InstanceRow]:
    """Sort along the slice normal when every instance has a position, else by number."""
    by_number = sorted(rows, key=lambda r: (r.number is None, r.number or 0, r.image.instance_id))
    normal = _normal(facts[r.image.sha256].orientation for r in rows)
    positions = [facts[r.image.sha256].position for r in rows]
    if normal is None or any(p is None for p in positions):
        return by_number
    rank = {r.image.instance_id: i for i, r in enumerate(by_number)}

    def along(row: InstanceRow) -> tuple[float, int]:
        position = facts[row.image.sha256].position
        distance = sum(p * n for p, n in zip(position, normal, strict=True))
        return -distance, rank[row.image.instance_id]  # the head (highest z) first

    ordered = sorted(rows, key=along)
    if len({round(along(r)[0], 3) for r in rows}) < len(rows) // 2 + 1:
        return by_number  # mostly one location (a cine, repeated scans): positions say little
    return ordered


def _normal(orientations) -> tuple[float, float, float] | None:
    """The slice normal (row x column cosines) of the first instance that has one."""
    for orientation in orientations:
        if orientation:
            r, c = orientation[:3], orientation[3:]
            normal = (
                r[1] * c[2] - r[2] * c[1],
                r[2] * c[0] - r[0] * c[2],
                r[0] * c[1] - r[1] * c[0],
            )
            if any(abs(v) > 1e-6 for v in normal):
                return normal
    return None
