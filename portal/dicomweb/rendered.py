"""WADO-RS rendered resources and thumbnails (PS3.18 8.3.5, 10.4), with the viewer's renderer.

- ``.../instances/{sop}/rendered`` (frame 1) and ``.../instances/{sop}/frames/{n}/rendered``
- ``.../thumbnail`` of a frame, an instance, a series (its middle instance) or a
  study (its first series)

Query parameters: ``window=center,width[,linear|linear-exact|sigmoid]``,
``viewport=vw,vh`` (the image is scaled to fit, enlarged too; cropping values
are refused), ``quality=1..100``. ``Accept`` picks ``image/jpeg`` (the default),
``image/png`` or ``image/webp``. Same renderer, cache and ETags as the viewer;
reads are audited per (user, series) and ten minutes, as ``series.rendered``.
"""

from __future__ import annotations

from flask import abort, g, request
from sqlalchemy import select

from portal.dicomweb.blueprint import bp
from portal.dicomweb.queries import get_study
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.studies.models import Instance, Series
from portal.viewer.display import Window
from portal.viewer.images import ImageRef, rendered_response
from portal.viewer.render import DEFAULT_QUALITY, MAX_SIZE, RenderOptions
from portal.viewer.view_audit import SeriesView, note_image_read

FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp"}
FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
NATIVE = 65_535  # no viewport: the frame's own size
THUMBNAIL_SIZE = 256
INSTANCE = "/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>"


@bp.get(f"{INSTANCE}/rendered")
@bp.get(f"{INSTANCE}/frames/<int:frame>/rendered")
def rendered_frame(study_uid: str, series_uid: str, sop_uid: str, frame: int = 1):
    return _answer(_instances(study_uid, series_uid, sop_uid)[0], frame, thumbnail=False)


@bp.get(f"{INSTANCE}/thumbnail")
@bp.get(f"{INSTANCE}/frames/<int:frame>/thumbnail")
def instance_thumbnail(study_uid: str, series_uid: str, sop_uid: str, frame: int = 1):
    return _answer(_instances(study_uid, series_uid, sop_uid)[0], frame, thumbnail=True)


@bp.get("/studies/<study_uid>/series/<series_uid>/thumbnail")
@bp.get("/studies/<study_uid>/thumbnail")
def series_thumbnail(study_uid: str, series_uid: str | None = None):
    instances = _instances(study_uid, series_uid)
    first_series = [i for i in instances if i.series_id == instances[0].series_id]
    return _answer(first_series[len(first_series) // 2], 1, thumbnail=True)


def _instances(
    study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> list[Instance]:
    """Instances with pixel data the token's user may see, in series and instance order."""
    study = get_study(g.api_user, study_uid)
    query = select(Instance).join(Series).where(Series.study_id == study.id)
    query = query.where(Instance.rows.is_not(None))
    if series_uid:
        query = query.where(Series.series_instance_uid == series_uid)
    if sop_uid:
        query = query.where(Instance.sop_instance_uid == sop_uid)
    order = (Series.series_number, Series.id, Instance.instance_number, Instance.id)
    instances = db.session.scalars(query.order_by(*order)).all()
    if not instances:
        raise NotFound("No such series or instance with pixel data.")
    return list(instances)


def _answer(instance: Instance, frame: int, thumbnail: bool):
    image = ImageRef.of(instance)
    if not 1 <= frame <= image.frames:
        raise NotFound(f"this instance has frames 1 to {image.frames}")
    options = rendered_options(request.args, frame, _negotiated_format(), thumbnail)
    note_image_read(
        SeriesView("series.rendered", g.api_user, image.series_id, via="api token"),
        first_instance=image.instance_id,
        first_frame=frame,
    )
    db.session.commit()
    return rendered_response(image, options, vary="Accept")


def _negotiated_format() -> str:
    accept = request.accept_mimetypes
    if not accept:
        return "jpeg"
    best = accept.best_match(list(FORMATS))
    if best is None:
        abort(406, "Rendered resources come as image/jpeg, image/png or image/webp.")
    return FORMATS[best]


def rendered_options(args, frame: int, kind: str, thumbnail: bool) -> RenderOptions:
    """Read PS3.18 ``window``, ``viewport`` and ``quality``.

    :raise InvalidInput: a parameter is malformed or unsupported.
    """
    viewport = _viewport(args.get("viewport"))
    default = THUMBNAIL_SIZE if thumbnail else NATIVE
    width, height = viewport or (default, default)
    return RenderOptions(
        frame=frame,
        window=_window(args.get("window")),
        max_width=width,
        max_height=height,
        format=kind,
        quality=_quality(args.get("quality")),
        upscale=viewport is not None,
    )


def _window(raw: str | None) -> Window | None:
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    function = FUNCTIONS.get(parts[2].lower()) if len(parts) == 3 else "LINEAR"
    if len(parts) not in (2, 3) or function is None:
        raise InvalidInput("window is center,width,function (linear, linear-exact or sigmoid)")
    try:
        return Window(float(parts[0]), float(parts[1]), function)
    except ValueError as exc:
        raise InvalidInput(f"window: {exc}") from None


def _viewport(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2:
        raise InvalidInput("viewport is vw,vh; cropping (sx,sy,sw,sh) is not supported")
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise InvalidInput("viewport width and height are whole numbers above 0")
    return min(int(parts[0]), MAX_SIZE), min(int(parts[1]), MAX_SIZE)


def _quality(raw: str | None) -> int:
    if not raw:
        return DEFAULT_QUALITY
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInput("quality is a whole number from 1 to 100")
    return int(raw)
