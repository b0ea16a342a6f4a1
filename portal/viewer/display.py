"""Turn one decoded frame into 8-bit display pixels, with pydicom's LUT functions.

Grayscale: modality LUT (rescale slope/intercept or Modality LUT Sequence), then
the VOI LUT: the caller's window if given, else the file's VOI LUT Sequence or its
first window (with its VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID), else a
window fitted to the frame. MONOCHROME1 is inverted so that low values show bright.
PALETTE COLOR goes through its palette; RGB (pydicom has already turned YBR into
RGB) is scaled to 8 bits. The viewer's ``invert`` comes last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
)

from portal.viewer.decode import DecodedFrame

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
AUTO_PERCENTILES = (1.0, 99.0)
AUTO_SAMPLE = 16_384  # pixels looked at to fit the auto window
TABLE_LIMIT = 1 << 17  # integer frames spanning fewer stored values use a lookup table
_RANGE_ATTRIBUTES = (
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
)


@dataclass(frozen=True)
class Window:
    """A window on modality values: PS3.3 C.11.2.1.2 center, width and function."""

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        if self.function not in VOI_FUNCTIONS:
            raise ValueError(f"VOI LUT function must be one of {', '.join(VOI_FUNCTIONS)}")
        if not (np.isfinite(self.center) and np.isfinite(self.width)):
            raise ValueError("window center and width must be finite numbers")
        if self.width <= 0 or (self.function == "LINEAR" and self.width < 1):
            raise ValueError("window width must be positive (at least 1 for LINEAR)")


#: Ask for a window fitted to the frame (percentiles of its modality values).
AUTO = "auto"


def display_pixels(
    frame: DecodedFrame, window: Window | str | None = None, invert: bool = False
) -> np.ndarray:
    """Return ``frame`` as uint8, (rows, columns) grey or (rows, columns, 3) RGB.

    :param window: a :class:`Window` to use, :data:`AUTO`, or ``None`` for the file's own.
        Colour images ignore it.
    :param invert: show the negative.
    """
    pixels, header = frame.pixels, frame.header
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if pixels.ndim == 3:
        shown = _scale_to_8_bits(pixels, int(header.get("BitsStored") or 8))
    elif photometric == "PALETTE COLOR":
        shown = _palette(pixels, header)
    else:
        shown = _grayscale(pixels, header, window)
        if photometric == "MONOCHROME1":
            shown = 255 - shown
    return 255 - shown if invert else shown


def _grayscale(pixels: np.ndarray, header: Dataset, window: Window | str | None) -> np.ndarray:
    """Modality then VOI LUT; an integer frame goes through a table over its value range.

    The table is made by the same pydicom functions, applied once to each stored
    value the frame holds rather than to each of its pixels.
    """
    if pixels.dtype.kind in "iu" and pixels.size:
        low, high = int(pixels.min()), int(pixels.max())
        if high - low < TABLE_LIMIT:
            domain = np.arange(low, high + 1).astype(pixels.dtype)
            table = _grey_levels(domain, header, window, pixels)
            return table[np.subtract(pixels, low, dtype=np.intp)]
    return _grey_levels(pixels, header, window, pixels)


def _grey_levels(
    stored: np.ndarray, header: Dataset, window: Window | str | None, frame: np.ndarray
) -> np.ndarray:
    """Display levels of ``stored`` values; ``frame`` is what an auto window is fitted to."""
    values = apply_modality_lut(stored, header)
    if window is None:
        voi = _file_voi_lut(values, header)
        if voi is not None:
            return voi
        window = _file_window(header) or _full_range_window(header) or AUTO
    if window == AUTO:
        step = max(1, int(np.sqrt(frame.size / AUTO_SAMPLE)))
        window = auto_window(apply_modality_lut(frame[::step, ::step], header))
    return _windowed(values, header, window)


def _file_voi_lut(values: np.ndarray, header: Dataset) -> np.ndarray | None:
    """Apply the file's VOI LUT Sequence (first view), if it has a usable one."""
    items = header.get("VOILUTSequence")
    if not items or "LUTDescriptor" not in items[0] or "LUTData" not in items[0]:
        return None
    try:
        bits = int(items[0].LUTDescriptor[2])
        out = apply_voi(values, header, 0).astype(np.float64)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None  # a malformed table: fall back to windows
    return _to_uint8(out, 0.0, float(2**bits - 1))


def _file_window(header: Dataset) -> Window | None:
    """The file's first window, or ``None`` if it has none (or a malformed one)."""
    try:
        center = _first(header.get("WindowCenter"))
        width = _first(header.get("WindowWidth"))
        function = str(header.get("VOILUTFunction") or "LINEAR").strip().upper()
        if center is None or width is None:
            return None
        return Window(float(center), float(width), function)
    except (ValueError, TypeError):
        return None


def _full_range_window(header: Dataset) -> Window | None:
    """Show small unsigned, unrescaled values (8-bit US, 1-bit masks) as stored."""
    bits = int(header.get("BitsStored") or 16)
    plain = header.get("RescaleSlope") in (None, 1) and not header.get("RescaleIntercept")
    if bits > 8 or header.get("PixelRepresentation") or not plain:
        return None
    top = float(2**bits - 1)
    return Window(top / 2, top, "LINEAR_EXACT")


def auto_window(values: np.ndarray) -> Window:
    """Fit a window to the 1st-99th percentiles of ``values``."""
    sample = np.asarray(values, dtype=np.float64)
    low, high = np.nanpercentile(sample, AUTO_PERCENTILES)
    if not high > low:
        low, high = float(np.nanmin(sample)), float(np.nanmax(sample))
    if not np.isfinite(low) or not np.isfinite(high):
        low, high = 0.0, 1.0
    return Window((low + high) / 2, max(float(high - low), 1e-6), "LINEAR_EXACT")


def _windowed(values: np.ndarray, header: Dataset, window: Window) -> np.ndarray:
    """Apply ``window`` with pydicom, then map its output range onto 0-255."""
    voi = Dataset()
    for keyword in _RANGE_ATTRIBUTES:
        if keyword in header:
            voi[keyword] = header[keyword]
    voi.BitsStored = int(header.get("BitsStored") or 16)
    voi.PixelRepresentation = int(header.get("PixelRepresentation") or 0)
    voi.PhotometricInterpretation = "MONOCHROME2"  # MONOCHROME1 is inverted afterwards
    voi.WindowCenter, voi.WindowWidth = window.center, window.width
    voi.VOILUTFunction = window.function
    out = apply_windowing(values, voi)
    # pydicom scales onto the stored value range; a probe far outside the window finds it.
    span = 100 * window.width + 1
    low, high = apply_windowing(np.array([window.center - span, window.center + span]), voi)
    return _to_uint8(out, float(low), float(high))


def _palette(pixels: np.ndarray, header: Dataset) -> np.ndarray:
    rgb = apply_color_lut(pixels, header)
    descriptor = header.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 8]
    return _scale_to_8_bits(rgb, int(descriptor[2]))


def _scale_to_8_bits(pixels: np.ndarray, bits: int) -> np.ndarray:
    if pixels.dtype == np.uint8 and bits <= 8:
        return pixels
    return _to_uint8(pixels.astype(np.float64), 0.0, float(2**bits - 1))


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low``..``high`` linearly onto 0..255, rounding and clipping."""
    if high == low:
        return np.zeros(values.shape, np.uint8)
    scaled = (values - low) * (255.0 / (high - low)) + 0.5
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _first(value):
    """The first of a multi-valued element (or the value itself)."""
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value
