"""QIDO-RS: search for studies, series and instances (PS3.18 10.6)."""

from __future__ import annotations

from flask import Response, current_app, g, json, request
from pydicom.datadict import keyword_for_tag
from sqlalchemy import func, select

from portal.dicomweb import dicom_json
from portal.dicomweb.blueprint import bp
from portal.dicomweb.queries import (
    INSTANCE_MATCHERS,
    SERIES_MATCHERS,
    STUDY_MATCHERS,
    apply_filters,
    get_study,
    parse_search,
    visible_studies,
)
from portal.extensions import db
from portal.studies.models import Instance, Patient, Series, Study

DICOM_JSON = "application/dicom+json"
#: What includefield can add from the index: the study and series attributes.
INCLUDABLE = dicom_json.STUDY_KEYWORDS | dicom_json.SERIES_KEYWORDS


def base_url() -> str:
    return f"{current_app.config['BASE_URL']}/dicomweb"


def dicom_json_response(
    items: list[dict], ignored: list[str], unavailable: set[str] = frozenset()
) -> Response:
    response = Response(json.dumps(items), mimetype=DICOM_JSON)
    warnings = []
    if ignored:
        warnings.append(
            f'299 overread "matching on {", ".join(sorted(set(ignored)))} is not supported; '
            'those keys were ignored"'
        )
    if unavailable:
        warnings.append(
            f'299 overread "includefield {", ".join(sorted(unavailable))} is not held in the '
            'index; those attributes are left out"'
        )
    if warnings:
        response.headers["Warning"] = ", ".join(warnings)
    return response


def with_included(item: dict, include: set[str], *upper_levels: dict) -> dict:
    """Add to ``item`` the attributes of the levels above that ``includefield`` asked for."""
    if not include:
        return item
    keywords = INCLUDABLE if "all" in include else include & INCLUDABLE
    wanted = {dicom_json.tag_hex(keyword) for keyword in keywords}
    extra = {}
    for level in upper_levels:
        extra.update({tag: value for tag, value in level.items() if tag in wanted})
    return {**extra, **item}


def unavailable(include: set[str], items: list[dict], level_keywords: frozenset[str]) -> set[str]:
    """Return the ``includefield`` names the index cannot answer at this level."""
    own = {keyword_for_tag(int(tag, 16)) for tag in items[0]} if items else set()
    return {name for name in include if name != "all" and name not in level_keywords | own}


@bp.get("/studies")
def search_studies():
    params = parse_search(request.args)
    query = apply_filters(visible_studies(g.api_user).join(Patient), params, STUDY_MATCHERS)
    query = query.order_by(Study.id).limit(params.limit).offset(params.offset)
    studies = db.session.scalars(query).all()
    counts = _study_counts([s.id for s in studies])
    items = [dicom_json.study_attributes(s, base_url(), *counts.get(s.id, (0, 0))) for s in studies]
    held = dicom_json.STUDY_KEYWORDS
    return dicom_json_response(items, params.ignored, unavailable(params.include, items, held))


def _study_counts(study_ids: list[int]) -> dict[int, tuple[int, int]]:
    if not study_ids:
        return {}
    rows = db.session.execute(
        select(Series.study_id, func.count(func.distinct(Series.id)), func.count(Instance.id))
        .join(Instance, Instance.series_id == Series.id, isouter=True)
        .where(Series.study_id.in_(study_ids))
        .group_by(Series.study_id)
    )
    return {study_id: (series, instances) for study_id, series, instances in rows}


@bp.get("/series")
@bp.get("/studies/<study_uid>/series")
def search_series(study_uid: str | None = None):
    params = parse_search(request.args)
    query = (
        select(Series)
        .join(Study)
        .where(Study.id.in_(visible_studies(g.api_user).with_only_columns(Study.id)))
    )
    if study_uid:
        query = query.where(Series.study_id == get_study(g.api_user, study_uid).id)
    query = apply_filters(query, params, {**SERIES_MATCHERS, **_study_keys()})
    query = query.order_by(Series.id).limit(params.limit).offset(params.offset)
    series_list = db.session.scalars(query).all()
    counts = dict(
        db.session.execute(
            select(Instance.series_id, func.count(Instance.id))
            .where(Instance.series_id.in_([s.id for s in series_list]))
            .group_by(Instance.series_id)
        ).all()
    )
    items = [
        with_included(
            dicom_json.series_attributes(s, base_url(), counts.get(s.id, 0)),
            params.include,
            _study_level(s.study),
        )
        for s in series_list
    ]
    held = dicom_json.STUDY_KEYWORDS | dicom_json.SERIES_KEYWORDS
    return dicom_json_response(items, params.ignored, unavailable(params.include, items, held))


def _study_keys() -> dict:
    return {
        "StudyInstanceUID": STUDY_MATCHERS["StudyInstanceUID"],
        "StudyDate": STUDY_MATCHERS["StudyDate"],
        "AccessionNumber": STUDY_MATCHERS["AccessionNumber"],
    }


@bp.get("/instances")
@bp.get("/studies/<study_uid>/instances")
@bp.get("/studies/<study_uid>/series/<series_uid>/instances")
def search_instances(study_uid: str | None = None, series_uid: str | None = None):
    params = parse_search(request.args)
    query = (
        select(Instance)
        .join(Series)
        .join(Study)
        .where(Study.id.in_(visible_studies(g.api_user).with_only_columns(Study.id)))
    )
    if study_uid:
        query = query.where(Study.id == get_study(g.api_user, study_uid).id)
    if series_uid:
        query = query.where(Series.series_instance_uid == series_uid)
    matchers = {**INSTANCE_MATCHERS, **SERIES_MATCHERS, **_study_keys()}
    query = apply_filters(query, params, matchers)
    query = query.order_by(Instance.id).limit(params.limit).offset(params.offset)
    instances = db.session.scalars(query).all()
    items = [
        with_included(
            dicom_json.instance_attributes(i, base_url()),
            params.include,
            dicom_json.series_attributes(i.series, base_url(), 0),
            _study_level(i.series.study),
        )
        for i in instances
    ]
    return dicom_json_response(
        items, params.ignored, unavailable(params.include, items, INCLUDABLE)
    )


def _study_level(study: Study) -> dict:
    return dicom_json.study_attributes(study, base_url(), 0, 0)
