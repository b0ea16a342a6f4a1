"""STOW-RS: store instances sent as ``multipart/related`` (PS3.18 10.5)."""

from __future__ import annotations

from pathlib import Path

from flask import Response, current_app, g, json, request

from portal.dicomweb.blueprint import bp
from portal.dicomweb.dicom_json import attribute, merge, retrieve_url
from portal.dicomweb.multipart import boundary_of, spool_parts
from portal.dicomweb.qido import base_url
from portal.studies.ingest import IngestResult, IngestStatus, ingest_file, record_ingest

# Failure reasons (PS3.18 Table 10.5.3-2, PS3.4 Annex GG)
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
FAILURE_CODES = {
    IngestStatus.CONFLICT: PROCESSING_FAILURE,
    IngestStatus.WRONG_STUDY: DOES_NOT_MATCH,
}


@bp.post("/studies")
@bp.post("/studies/<study_uid>")
def store_instances(study_uid: str | None = None):
    config = current_app.config
    request.max_content_length = config["STOW_MAX_REQUEST_MB"] * 1024 * 1024
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    stored, failed, results = [], [], []
    max_part = config["INGEST_MAX_FILE_MB"] * 2**20
    spool_dir = Path(config["SPOOL_DIR"])
    for part in spool_parts(request.stream, boundary, max_part, spool_dir):
        outcome, result = _store_part(part, study_uid)
        (failed if "00081197" in outcome else stored).append(outcome)
        results.append(result)
    record_ingest([r for r in results if r is not None], g.api_user, "stow")
    body = attribute("RetrieveURL", retrieve_url(base_url(), study_uid)) if study_uid else {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if stored else 409)
    return Response(json.dumps(body), status=status, mimetype="application/dicom+json")


def _store_part(part, study_uid: str | None) -> tuple[dict, IngestResult | None]:
    """Ingest one part; return its response item and the ingest result, if any."""
    if part.content_type != "application/dicom":
        return _failure(
            CANNOT_UNDERSTAND,
            f"part type {part.content_type or 'missing'} is not application/dicom",
        ), None
    if part.too_large:
        return _failure(OUT_OF_RESOURCES, "the file is larger than the size limit"), None
    result = ingest_file(
        part.path, g.api_user, via="stow", audit=False, expected_study_uid=study_uid
    )
    if result.status in (IngestStatus.ACCEPTED, IngestStatus.DUPLICATE):
        return _reference(result), result
    code = FAILURE_CODES.get(result.status, CANNOT_UNDERSTAND)
    return _failure(code, result.reason, result), result


def _reference(result) -> dict:
    url = retrieve_url(
        base_url(), result.study_instance_uid, result.series_instance_uid, result.sop_instance_uid
    )
    return merge(
        attribute("ReferencedSOPClassUID", result.sop_class_uid),
        attribute("ReferencedSOPInstanceUID", result.sop_instance_uid),
        attribute("RetrieveURL", url),
    )


def _failure(code: int, reason: str, result=None) -> dict:
    return merge(
        attribute("ReferencedSOPClassUID", getattr(result, "sop_class_uid", None)),
        attribute("ReferencedSOPInstanceUID", getattr(result, "sop_instance_uid", None)),
        attribute("FailureReason", code),
        {"00000902": {"vr": "LO", "Value": [reason[:64]]}},
    )
