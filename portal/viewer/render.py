"""Render one frame of one stored instance to an image a browser shows: WebP, JPEG or PNG.

:func:`render_frame` never raises on bad data: a frame that cannot be decoded
comes back as a grey placeholder that says why, with :attr:`Rendered.error` set,
so a damaged file never turns into a broken page or a 500.
"""

from __future__ import annotations

import hashlib
import io
import logging
import textwrap
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from portal.viewer.decode import FrameUnreadable, read_frame
from portal.viewer.display import Window, display_pixels

logger = logging.getLogger(__name__)

#: Bumped whenever the pixels a request yields change, so old cache entries and ETags lapse.
RENDERER_VERSION = 1
MEDIA_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 16, 2048, 1024
DEFAULT_QUALITY = 90
WEBP_METHOD = 0  # libwebp's fastest: a 512x512 frame in ~5 ms, ~5% larger than method 4
PNG_COMPRESS_LEVEL = 1  # lossless either way; level 1 is ~4x faster than the default 6
PLACEHOLDER_GREY = 72


@dataclass(frozen=True)
class RenderOptions:
    """What to render: which frame (1-based), how windowed, how big, in which format.

    ``window`` is a :class:`~portal.viewer.display.Window`, ``"auto"``, or ``None``
    for the file's own. The image is scaled to fit ``max_width`` x ``max_height``
    keeping its aspect ratio; it is enlarged too only with ``upscale``.
    """

    frame: int = 1
    window: Window | str | None = None
    max_width: int = DEFAULT_SIZE
    max_height: int = DEFAULT_SIZE
    format: str = "webp"
    quality: int = DEFAULT_QUALITY
    invert: bool = False
    upscale: bool = False

    def __post_init__(self) -> None:
        if self.format not in MEDIA_TYPES:
            raise ValueError(f"format must be one of {', '.join(MEDIA_TYPES)}")

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def cache_key(self, instance_sha256: str) -> str:
        """A hex digest naming the output for the instance with this blob hash."""
        window = self.window
        if isinstance(window, Window):
            window = f"{window.center!r},{window.width!r},{window.function}"
        quality = self.quality if self.format != "png" else 0
        parts = (
            RENDERER_VERSION,
            instance_sha256,
            self.frame,
            window,
            self.max_width,
            self.max_height,
            self.upscale,
            self.format,
            quality,
            self.invert,
        )
        return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Rendered:
    """An encoded image; ``error`` is set (and the image is a placeholder) on failure."""

    body: bytes
    media_type: str
    error: str | None = None


def render_frame(stream: BinaryIO, options: RenderOptions) -> Rendered:
    """Render ``options.frame`` of the DICOM file in the seekable ``stream``.

    :return: the encoded image, or a placeholder naming the reason it could not be made.
    """
    try:
        frame = read_frame(stream, options.frame - 1)
        pixels = display_pixels(frame, options.window, options.invert)
    except FrameUnreadable as exc:
        return placeholder(str(exc), options)
    except Exception as exc:  # untrusted data: a malformed LUT or palette may raise anything
        logger.info("render: display failed: %s", exc.__class__.__name__)
        return placeholder(f"{exc.__class__.__name__}: {exc}"[:300], options)
    image = _fit(Image.fromarray(np.ascontiguousarray(pixels)), options)
    return Rendered(encode(image, options), options.media_type)


def _fit(image: Image.Image, options: RenderOptions) -> Image.Image:
    """Scale ``image`` to fit the options' box, keeping its aspect ratio."""
    width, height = image.size
    scale = min(options.max_width / width, options.max_height / height)
    if scale == 1 or (scale > 1 and not options.upscale):
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1:
        return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image.resize(size, Image.Resampling.BICUBIC)


def encode(image: Image.Image, options: RenderOptions) -> bytes:
    """Encode ``image`` in the options' format and quality."""
    out = io.BytesIO()
    kind = options.format
    if kind == "webp":
        image.save(out, "WEBP", quality=options.quality, method=WEBP_METHOD)
    elif kind == "jpeg":
        image.save(out, "JPEG", quality=options.quality)
    else:
        image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def placeholder(reason: str, options: RenderOptions) -> Rendered:
    """A grey image saying the frame cannot be shown, and why."""
    width = max(MIN_SIZE, min(options.max_width, 512))
    height = max(MIN_SIZE, min(options.max_height, 512))
    image = Image.new("L", (width, height), PLACEHOLDER_GREY)
    draw = ImageDraw.Draw(image)
    font_size = max(8, min(width, height) // 24)
    font = ImageFont.load_default(size=font_size)
    columns = max(12, int(width / (font_size * 0.6)) - 2)
    lines = ["Cannot show this image", "", *textwrap.wrap(reason, columns)[:12]]
    draw.multiline_text((font_size, font_size), "\n".join(lines), fill=235, font=font)
    return Rendered(encode(image, options), options.media_type, reason)
