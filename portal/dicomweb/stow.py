"""STOW-RS: store instances sent as ``multipart/related`` (PS3.18 10.5).

The parts of one request are ingested as one batch: their blobs are made
durable, then their index rows and the audit event commit together.
"""

from __future__ import annotations

from pathlib import Path

from flask import Response, current_app, g, json, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from portal.dicomweb.blueprint import bp
from portal.dicomweb.dicom_json import attribute, merge, retrieve_url
from portal.dicomweb.multipart import Part, boundary_of, spool_parts
from portal.dicomweb.qido import base_url
from portal.studies.ingest import IngestResult, IngestStatus, ingest_spooled_files

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
    request.max_content_length = config["STOW_MAX_REQUEST_MB"] * 2**20  # named by a 413 too
    boundary = boundary_of(request.headers.get("Content-Type", ""))
    max_part = config["INGEST_MAX_FILE_MB"] * 2**20
    items = _store_parts(boundary, max_part, Path(config["SPOOL_DIR"]), study_uid)
    stored = [item for item in items if "00081197" not in item]
    failed = [item for item in items if "00081197" in item]
    body = attribute("RetrieveURL", retrieve_url(base_url(), study_uid)) if study_uid else {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if stored else 409)
    return Response(json.dumps(body), status=status, mimetype="application/dicom+json")


def _store_parts(
    boundary: str, max_part: int, spool_dir: Path, study_uid: str | None
) -> list[dict]:
    """Spool the body's parts, ingest the DICOM ones together; return a response item per part."""
    max_body = request.max_content_length
    if (request.content_length or 0) > max_body:
        raise RequestEntityTooLarge()
    # The server's own input stream where it ends the body itself (gunicorn does): werkzeug's
    # size-capping wrapper (request.stream) would copy every chunk twice more, about a
    # millisecond per 512 KB instance. spool_parts keeps to the cap instead.
    body = get_input_stream(request.environ, max_content_length=None)
    parts = spool_parts(body, boundary, max_part, spool_dir, max_body)
    try:
        refusals = [_refusal(part) for part in parts]
        taken = [
            (f"part-{n}", part.spooled if part.spooled else _not_dicom(part.rejected))
            for n, (part, refusal) in enumerate(zip(parts, refusals, strict=True))
            if refusal is None
        ]
        results = iter(
            ingest_spooled_files(taken, g.api_user, via="stow", expected_study_uid=study_uid)
        )
    finally:
        for part in parts:
            part.discard()
    return [_item(next(results)) if refusal is None else refusal for refusal in refusals]


def _refusal(part: Part) -> dict | None:
    """Answer a part that is not a DICOM file of acceptable size; ``None`` for the others."""
    if part.content_type != "application/dicom":
        return _failure(
            CANNOT_UNDERSTAND,
            f"part type {part.content_type or 'missing'} is not application/dicom",
        )
    if part.too_large:
        return _failure(OUT_OF_RESOURCES, "the file is larger than the size limit")
    return None


def _not_dicom(reason: str) -> IngestResult:
    return IngestResult("", IngestStatus.REJECTED, reason)


def _item(result: IngestResult) -> dict:
    if result.status in (IngestStatus.ACCEPTED, IngestStatus.DUPLICATE):
        return _reference(result)
    return _failure(FAILURE_CODES.get(result.status, CANNOT_UNDERSTAND), result.reason, result)


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
