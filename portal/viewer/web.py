"""The viewer's JSON manifest and rendered frames, under ``/viewer/<number>/``.

Under ``/viewer`` so that the viewer-session cookie (path ``/viewer``) comes along.

- ``GET /viewer/<number>/manifest.json``: the case's studies, series and stacks
  (:mod:`portal.viewer.manifest` documents the shape).
- ``GET /viewer/<number>/frames/<instance_uid>/<frame>``: one frame (1-based),
  rendered. Query: ``format`` (``webp``, the default, ``jpeg`` or ``png``),
  ``size`` (longest side at most, 64-2048, default 1024; never enlarged),
  ``wc`` and ``ww`` (a window, both or neither), ``window=auto`` (fitted to the
  frame), ``invert=1``.

Every request is checked against the case (:mod:`portal.viewer.access`);
image reads are audited per series (:mod:`portal.viewer.view_audit`).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for
from flask_login import current_user

from portal.auth.models import User
from portal.errors import InvalidInput, NotFound, OverreadError
from portal.extensions import db
from portal.reports.models import Kind
from portal.reports.operations import may_write
from portal.viewer.access import ImageAccess, find_image, open_images
from portal.viewer.display import Window
from portal.viewer.images import rendered_response
from portal.viewer.manifest import build_manifest, images_of, study_rows
from portal.viewer.metadata import facts_for
from portal.viewer.render import MEDIA_TYPES, RenderOptions
from portal.viewer.view_audit import SeriesView, note_image_read

bp = Blueprint("viewer", __name__)
SIZE_RANGE = (64, 2048)


@bp.after_request
def _no_referrer(response):
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(OverreadError)
def _refused(error: OverreadError):
    """Answer API-style (JSON), never with an image or an HTML page."""
    db.session.rollback()
    response = jsonify(error=error.title, message=str(error))
    response.status_code = error.status_code
    response.headers["Cache-Control"] = "no-store"
    return response


def _signed_in() -> User | None:
    return current_user._get_current_object() if current_user.is_authenticated else None


@bp.get("/viewer/<number>/manifest.json")
def manifest(number: str):
    access = open_images(number, _signed_in(), "manifest")
    case = access.case
    summary = {"number": case.number, "urgency": case.urgency}
    report_url = _report_url(access)
    studies = study_rows(access.studies())
    db.session.commit()  # keep last_seen_at; headers are read outside the transaction
    summary["modalities"] = sorted({s.modality for st in studies for s in st.series if s.modality})
    base_url = url_for("viewer.manifest", number=summary["number"]).rsplit("/", 1)[0]
    facts = facts_for(images_of(studies))
    response = jsonify(build_manifest(summary, studies, facts, base_url, report_url))
    response.headers["Cache-Control"] = "no-store"
    return response


def _report_url(access: ImageAccess) -> str | None:
    for kind, endpoint in ((Kind.REPORT, "reports.report"), (Kind.OVERREAD, "reports.overread")):
        if may_write(access.case, access.user, kind):
            return url_for(endpoint, number=access.case.number)
    return None


@bp.get("/viewer/<number>/frames/<instance_uid>/<int:frame>")
def frame(number: str, instance_uid: str, frame: int):
    access = open_images(number, _signed_in(), "image")
    image = find_image(access, instance_uid)
    if not 1 <= frame <= image.frames:
        raise NotFound(f"This image has frames 1 to {image.frames}.")
    options = frame_options(request.args, frame)
    view = SeriesView(
        "case.images_viewed", access.user, image.series_id, access.case.id, access.session_id
    )
    note_image_read(view, first_instance=image.instance_id, first_frame=frame)
    db.session.commit()
    return rendered_response(image, options)


def frame_options(args, frame: int) -> RenderOptions:
    """Read a frame request's query.

    :raise InvalidInput: a parameter is malformed.
    """
    kind = args.get("format", "webp")
    if kind not in MEDIA_TYPES:
        raise InvalidInput(f"format is one of {', '.join(MEDIA_TYPES)}")
    size = _size(args.get("size"))
    return RenderOptions(
        frame=frame,
        window=_window(args),
        max_width=size,
        max_height=size,
        format=kind,
        invert=args.get("invert") in ("1", "true"),
    )


def _size(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1024
    if not raw.isdigit():
        raise InvalidInput("size is a whole number of pixels")
    return max(SIZE_RANGE[0], min(SIZE_RANGE[1], int(raw)))


def _window(args) -> Window | str | None:
    if args.get("window") == "auto":
        return "auto"
    center, width = args.get("wc"), args.get("ww")
    if center is None and width is None:
        return None
    if center is None or width is None:
        raise InvalidInput("give both wc and ww, or neither")
    try:
        center_value, width_value = float(center), float(width)
        function = "LINEAR" if width_value >= 1 else "LINEAR_EXACT"
        return Window(center_value, width_value, function)
    except ValueError:
        raise InvalidInput("wc and ww are numbers; ww is above 0") from None
