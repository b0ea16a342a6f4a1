"""WADO-RS: retrieve studies, series, instances, metadata and frames (PS3.18 10.4)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from flask import Response, abort, current_app, g, json, request, stream_with_context
from pydicom import dcmread
from pydicom.pixels import pixel_array
from sqlalchemy import select

from portal.audit.operations import record
from portal.dicomweb.blueprint import bp
from portal.dicomweb.dicom_json import retrieve_url
from portal.dicomweb.qido import base_url
from portal.dicomweb.queries import get_study
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.models import Instance, Series

CHUNK = 1024 * 1024


def _instances(
    study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[Instance]:
    study = get_study(g.api_user, study_uid)
    query = select(Instance).join(Series).where(Series.study_id == study.id)
    if series_uid:
        query = query.where(Series.series_instance_uid == series_uid)
    if sop_uid:
        query = query.where(Instance.sop_instance_uid == sop_uid)
    instances = db.session.scalars(
        query.order_by(Series.id, Instance.instance_number, Instance.id)
    ).all()
    if not instances:
        raise NotFound("No such series or instance.")
    return list(instances)


def _check_accept(instances: list[Instance]) -> None:
    """Refuse (406) a transfer syntax we would have to transcode to."""
    accept = request.headers.get("Accept", "")
    for clause in accept.split(","):
        if "application/dicom" not in clause or "transfer-syntax" not in clause:
            continue
        wanted = clause.split("transfer-syntax=")[1].split(";")[0].strip().strip('"')
        if wanted != "*" and any(i.transfer_syntax_uid != wanted for i in instances):
            abort(
                406,
                "Overread serves instances in the transfer syntax they were stored "
                "in; ask for transfer-syntax=* .",
            )


def _multipart(parts: Iterable[tuple[str, Iterator[bytes]]], part_type: str) -> Response:
    boundary = secrets.token_hex(16)

    def body() -> Iterator[bytes]:
        for content_type, chunks in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            yield from chunks
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    mimetype = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return Response(stream_with_context(body()), content_type=mimetype)


def _blob_chunks(key: str) -> Iterator[bytes]:
    with get_storage().open(key) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _retrieve(instances: list[Instance], action: str) -> Response:
    _check_accept(instances)
    blobs = [
        (f"application/dicom; transfer-syntax={i.transfer_syntax_uid}", i.storage_key)
        for i in instances
    ]
    record(
        action, g.api_user, target=f"study:{instances[0].series.study_id}", instances=len(instances)
    )
    db.session.commit()
    return _multipart(((ctype, _blob_chunks(key)) for ctype, key in blobs), "application/dicom")


@bp.get("/studies/<study_uid>")
def retrieve_study(study_uid: str):
    return _retrieve(_instances(study_uid), "study.retrieved")


@bp.get("/studies/<study_uid>/series/<series_uid>")
def retrieve_series(study_uid: str, series_uid: str):
    return _retrieve(_instances(study_uid, series_uid), "series.retrieved")


@bp.get("/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>")
def retrieve_instance(study_uid: str, series_uid: str, sop_uid: str):
    return _retrieve(_instances(study_uid, series_uid, sop_uid), "instance.retrieved")


@bp.get("/studies/<study_uid>/metadata")
@bp.get("/studies/<study_uid>/series/<series_uid>/metadata")
@bp.get("/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>/metadata")
def retrieve_metadata(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
    instances = _instances(study_uid, series_uid, sop_uid)
    wanted = [(i.storage_key, _instance_url(i), bool(i.rows)) for i in instances]
    record(
        "metadata.retrieved",
        g.api_user,
        target=f"study:{instances[0].series.study_id}",
        instances=len(instances),
    )
    db.session.commit()
    return Response(stream_with_context(_metadata_json(wanted)), mimetype="application/dicom+json")


def _metadata_json(wanted: list[tuple[str, str, bool]]) -> Iterator[str]:
    yield "["
    for index, (key, url, has_pixels) in enumerate(wanted):
        yield ("," if index else "") + json.dumps(_instance_metadata(key, url, has_pixels))
    yield "]"


def _instance_metadata(key: str, url: str, has_pixels: bool) -> dict:
    with get_storage().open(key) as stream:
        dataset = dcmread(stream, stop_before_pixels=True)
    metadata = dataset.to_json_dict(
        bulk_data_threshold=1024, bulk_data_element_handler=lambda element: url
    )
    if has_pixels:
        metadata["7FE00010"] = {"vr": "OB", "BulkDataURI": f"{url}/frames/1"}
    return metadata


def _instance_url(instance: Instance) -> str:
    series = instance.series
    return retrieve_url(
        base_url(),
        series.study.study_instance_uid,
        series.series_instance_uid,
        instance.sop_instance_uid,
    )


@bp.get("/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>/frames/<frame_list>")
def retrieve_frames(study_uid: str, series_uid: str, sop_uid: str, frame_list: str):
    instance = _instances(study_uid, series_uid, sop_uid)[0]
    frames = _parse_frame_list(frame_list, instance.number_of_frames or 1)
    key = instance.storage_key
    record(
        "frames.retrieved",
        g.api_user,
        target=f"study:{instance.series.study_id}",
        instance=instance.id,
        frames=len(frames),
    )
    db.session.commit()
    with _seekable(key) as blob:
        payloads = [_frame_bytes(blob, number) for number in frames]
    parts = (("application/octet-stream", iter([payload])) for payload in payloads)
    return _multipart(parts, "application/octet-stream")


@contextmanager
def _seekable(key: str) -> Iterator[BinaryIO]:
    """Open a blob for random access: a local file as it is, an S3 object via a spool."""
    with get_storage().open(key) as stream:
        if stream.seekable():
            yield stream
            return
        with tempfile.TemporaryFile(dir=current_app.config["SPOOL_DIR"]) as spool:
            shutil.copyfileobj(stream, spool, CHUNK)
            yield spool


def _parse_frame_list(frame_list: str, count: int) -> list[int]:
    try:
        numbers = [int(part) for part in frame_list.split(",")]
    except ValueError:
        raise InvalidInput("frame numbers are whole numbers separated by commas") from None
    if not numbers or any(n < 1 or n > count for n in numbers):
        raise NotFound(f"this instance has frames 1 to {count}")
    return numbers


def _frame_bytes(spool, number: int) -> bytes:
    spool.seek(0)
    try:
        frame = pixel_array(spool, index=number - 1, raw=True)
    except Exception as exc:  # decoders raise many types; answer with the reason
        abort(422, f"frame {number} could not be decoded: {exc.__class__.__name__}: {exc}")
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()
