"""Read one frame of a stored DICOM file: its header and that frame's pixels, nothing more.

The frame is decoded from the open file with :func:`pydicom.pixels.pixel_array`
and ``index=``, so a 500-frame cine yields one frame's bytes, not all of them;
compressed transfer syntaxes go through pydicom's decoders (pylibjpeg and its
openjpeg, libjpeg and rle plugins, then Pillow). Deflated files, and the odd
file whose encapsulation the streaming reader trips over, are read whole instead.

Enhanced multi-frame objects keep their rescale, window and geometry in
functional groups; :func:`apply_functional_groups` copies the shared ones and
those of the wanted frame to the top level, where pydicom's LUT functions look.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from portal.studies.headers import PARSE_LOCK

logger = logging.getLogger(__name__)

MAX_FRAME_SAMPLES = 128 * 1024 * 1024  # a 16-bit frame this size decodes to 256 MB
HEADER_DEFER_SIZE = 8 * 1024 * 1024  # bigger header values (private blobs) stay on disk
FUNCTIONAL_GROUPS = (
    "PixelValueTransformationSequence",  # RescaleSlope, RescaleIntercept, RescaleType
    "FrameVOILUTSequence",  # WindowCenter, WindowWidth, VOILUTFunction
    "PixelMeasuresSequence",  # PixelSpacing, SliceThickness
    "PlanePositionSequence",  # ImagePositionPatient
    "PlaneOrientationSequence",  # ImageOrientationPatient
)


class FrameUnreadable(Exception):
    """The frame cannot be decoded; ``str(error)`` says why, without patient data."""


@dataclass
class DecodedFrame:
    """One frame's stored values and the header that says how to display them.

    ``pixels`` is (rows, columns) for one sample per pixel, or (rows, columns, 3)
    already in RGB (pydicom converts YBR_FULL and YBR_FULL_422; JPEG 2000's
    YBR_RCT/YBR_ICT come out of the decoder as RGB).
    """

    pixels: np.ndarray
    header: Dataset


def read_header(stream: BinaryIO) -> Dataset:
    """Return the header of the DICOM file in ``stream`` (no pixel data).

    :raise FrameUnreadable: it is not a readable DICOM file.
    """
    with PARSE_LOCK, _quiet():
        return _header(stream)


def read_frame(stream: BinaryIO, index: int) -> DecodedFrame:
    """Decode frame ``index`` (0-based) of the seekable DICOM file ``stream``.

    :raise FrameUnreadable: the header or the frame cannot be decoded.
    """
    with PARSE_LOCK, _quiet():
        header = _header(stream)
        _check_frame(header, index)
        try:
            pixels = _decode(stream, header, index)
        except FrameUnreadable:
            raise
        except Exception as exc:  # decoders raise many kinds of error on damaged data
            raise FrameUnreadable(_reason(exc)) from exc
        apply_functional_groups(header, index)
    return DecodedFrame(pixels, header)


def _header(stream: BinaryIO) -> Dataset:
    stream.seek(0)
    try:
        header = dcmread(stream, stop_before_pixels=True, defer_size=HEADER_DEFER_SIZE, force=True)
    except Exception as exc:  # untrusted bytes
        raise FrameUnreadable(f"the DICOM header is unreadable ({_reason(exc)})") from exc
    if "Rows" not in header or "Columns" not in header:
        raise FrameUnreadable("the file holds no image (no Rows and Columns)")
    return header


def _check_frame(header: Dataset, index: int) -> None:
    """:raise FrameUnreadable: there is no such frame, or it is too large to render."""
    try:
        frames = int(header.get("NumberOfFrames") or 1)
        pixels = int(header.Rows) * int(header.Columns) * int(header.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError) as exc:
        raise FrameUnreadable(f"the image attributes are malformed ({_reason(exc)})") from exc
    if not 0 <= index < max(frames, 1):
        raise FrameUnreadable(f"there is no frame {index + 1}; the file has {frames}")
    if pixels > MAX_FRAME_SAMPLES:
        raise FrameUnreadable(f"the frame is too large to render ({pixels} samples)")


def _decode(stream: BinaryIO, header: Dataset, index: int) -> np.ndarray:
    meta = getattr(header, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax and syntax != DeflatedExplicitVRLittleEndian:
        stream.seek(0)
        try:
            return pixel_array(stream, index=index)
        except (MemoryError, NotImplementedError):
            raise
        except Exception as exc:  # a few encapsulations only the whole-file reader copes with
            logger.debug("streaming decode failed (%s); reading the whole file", _reason(exc))
    return _decode_whole(stream, index)


def _decode_whole(stream: BinaryIO, index: int) -> np.ndarray:
    """Read the whole data set (deflated files, odd encapsulations) and decode one frame."""
    stream.seek(0)
    dataset = dcmread(stream, force=True)
    if not any(k in dataset for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise FrameUnreadable("the file has no pixel data")
    meta = dataset.file_meta
    if not meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = _syntax_read_as(dataset)
    return pixel_array(dataset, index=index)


def _syntax_read_as(dataset: Dataset) -> UID:
    """The uncompressed transfer syntax pydicom found a file without one to be in."""
    implicit, little = dataset.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def apply_functional_groups(header: Dataset, index: int) -> None:
    """Copy the shared and frame ``index``'s functional group values to the top level."""
    groups = []
    for keyword, item_index in (
        ("SharedFunctionalGroupsSequence", 0),
        ("PerFrameFunctionalGroupsSequence", index),
    ):
        items = header.get(keyword)
        if items and len(items) > item_index:
            groups.append(items[item_index])
    for group in groups:
        for macro in FUNCTIONAL_GROUPS:
            for item in (group.get(macro) or [])[:1]:
                for element in item:
                    header[element.tag] = element


def _reason(exc: BaseException) -> str:
    """A short, PHI-free account of a decoder error."""
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}"[:300]


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings and value checks while it reads untrusted files.

    Both are process-wide; the caller holds ``PARSE_LOCK`` so threads do not mix them.
    """
    with warnings.catch_warnings(), pydicom_config.disable_value_validation():
        warnings.simplefilter("ignore")
        yield
