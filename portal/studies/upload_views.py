"""The upload page and the chunked-upload protocol behind it (see README, "Uploading studies").

``POST /studies/uploads`` declares a file, ``PUT /studies/uploads/<id>`` with
``Upload-Offset`` appends a chunk, ``GET``/``HEAD`` tell the offset, ``DELETE``
cancels. Every call needs the CSRF token in ``X-CSRFToken``.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request
from flask_login import current_user

from portal.errors import InvalidInput
from portal.security import role_required
from portal.studies import uploads

bp = Blueprint("uploads", __name__, url_prefix="/studies")
UPLOADERS = ("patient", "physician", "admin")
CHUNK_SLACK = 64 * 1024


class LengthRequired(InvalidInput):
    status_code = 411
    title = "Length required"


def _settings() -> uploads.UploadSettings:
    return uploads.UploadSettings.from_config(current_app.config)


def _answer(upload: uploads.ChunkedUpload, status: int = 200):
    response = jsonify(upload.as_json(_settings()))
    response.headers["Upload-Offset"] = str(upload.offset)
    response.headers["Upload-Length"] = str(upload.size)
    return response, status


@bp.get("/upload")
@role_required(*UPLOADERS)
def upload_page():
    return render_template("studies/upload.html")


@bp.post("/uploads")
@role_required(*UPLOADERS)
def start():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput('Send JSON: {"name": ..., "relative_path": ..., "size": ...}.')
    upload = uploads.start_upload(
        _settings(), current_user, body.get("name"), body.get("relative_path"), body.get("size")
    )
    return _answer(upload, 201)


@bp.get("/uploads/<upload_id>")  # HEAD too: the same headers, no body
@role_required(*UPLOADERS)
def status(upload_id: str):
    return _answer(uploads.find_upload(_settings(), current_user.id, upload_id))


@bp.put("/uploads/<upload_id>")
@role_required(*UPLOADERS)
def append(upload_id: str):
    settings = _settings()
    request.max_content_length = settings.chunk_size + CHUNK_SLACK
    offset = request.headers.get("Upload-Offset", "")
    if not offset.isdigit():
        raise InvalidInput("Send the chunk's position in an Upload-Offset header.")
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", ""):
        raise LengthRequired("Send the chunk with a Content-Length header.")
    owner = current_user._get_current_object()
    try:
        upload = uploads.append_chunk(
            settings, owner, upload_id, int(offset), request.stream, request.content_length or 0
        )
    except uploads.OffsetMismatch as exc:
        response = jsonify(error=exc.title, message=str(exc), offset=exc.offset)
        return response, 409, {"Upload-Offset": str(exc.offset)}
    return _answer(upload)


@bp.delete("/uploads/<upload_id>")
@role_required(*UPLOADERS)
def cancel(upload_id: str):
    uploads.cancel_upload(_settings(), current_user.id, upload_id)
    return "", 204
