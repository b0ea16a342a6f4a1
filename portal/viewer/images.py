"""Serve a rendered frame over HTTP: strong ETags, 304s, the disk cache, placeholders.

Both the viewer (``/viewer/<number>/frames/...``) and DICOMweb's ``/rendered``
answer through :func:`rendered_response`, after their own access checks.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import Response, current_app, request

from portal.storage import get_storage
from portal.storage.base import BlobNotFound
from portal.studies.models import Instance
from portal.viewer.cache import DEFAULT_MAX_BYTES, RenderCache
from portal.viewer.render import Rendered, RenderOptions, placeholder, render_frame

CACHE_CONTROL = "private, max-age=3600"  # never public: the pixels are PHI
ERROR_HEADER = "X-Overread-Render-Error"
SPOOL_CHUNK = 1024 * 1024
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True)
class ImageRef:
    """The plain facts about one stored instance that rendering needs (no ORM object)."""

    instance_id: int
    series_id: int
    sop_instance_uid: str
    sha256: str
    storage_key: str
    frames: int

    @classmethod
    def of(cls, instance: Instance) -> ImageRef:
        return cls(
            instance.id,
            instance.series_id,
            instance.sop_instance_uid,
            instance.sha256,
            instance.storage_key,
            max(instance.number_of_frames or 1, 1),
        )


def render_cache() -> RenderCache:
    """Return the app's render cache (``RENDER_CACHE_DIR``, ``RENDER_CACHE_MAX_MB``)."""
    extensions = current_app.extensions
    cache = extensions.get("overread_render_cache")
    if cache is None:
        config = current_app.config
        default_root = Path(current_app.instance_path, "render-cache")
        root = config.get("RENDER_CACHE_DIR") or str(default_root)
        max_mb = config.get("RENDER_CACHE_MAX_MB")
        max_bytes = int(max_mb) * 1024 * 1024 if max_mb else DEFAULT_MAX_BYTES
        cache = extensions.setdefault("overread_render_cache", RenderCache(root, max_bytes))
    return cache


@contextmanager
def open_seekable(key: str) -> Iterator[BinaryIO]:
    """Open a blob for random access: a local file as it is, an S3 object via a spool file.

    :raise BlobNotFound: no such blob.
    """
    with get_storage().open(key) as stream:
        if stream.seekable():
            yield stream
            return
        spool_dir = Path(current_app.config["SPOOL_DIR"])
        spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=spool_dir) as spool:
            shutil.copyfileobj(stream, spool, SPOOL_CHUNK)
            yield spool


def etag_for(image: ImageRef, options: RenderOptions) -> str:
    return options.cache_key(image.sha256)[:40]


def rendered_response(image: ImageRef, options: RenderOptions, vary: str | None = None) -> Response:
    """Answer with the rendered frame: 304 if the client has it, else cached or fresh bytes.

    A frame that cannot be rendered gets a placeholder image, an ``X-Overread-Render-Error``
    header with the reason, and ``no-store``; it is not cached.
    """
    etag = etag_for(image, options)
    if request.if_none_match.contains_weak(etag):
        return _with_headers(Response(status=304), etag, vary)
    cache = render_cache()
    key = options.cache_key(image.sha256)
    body = cache.get(key, options.format)
    if body is None:
        rendered = _render(image, options)
        if rendered.error:
            return _placeholder_response(rendered)
        body = rendered.body
        cache.put(key, options.format, body)
    return _with_headers(Response(body, mimetype=options.media_type), etag, vary)


def _render(image: ImageRef, options: RenderOptions) -> Rendered:
    try:
        with open_seekable(image.storage_key) as stream:
            return render_frame(stream, options)
    except BlobNotFound:
        return placeholder("the image file is missing from storage", options)


def _with_headers(response: Response, etag: str, vary: str | None) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    if vary:
        response.headers["Vary"] = vary
    return response


def _placeholder_response(rendered: Rendered) -> Response:
    response = Response(rendered.body, mimetype=rendered.media_type)
    response.headers[ERROR_HEADER] = _UNPRINTABLE.sub(" ", rendered.error or "")[:200]
    response.headers["Cache-Control"] = "no-store"
    return response
