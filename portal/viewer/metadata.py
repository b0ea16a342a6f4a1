"""What the viewer needs from each instance's header that the index does not hold.

Position, orientation, spacing, frame time and the file's windows are read once
per blob (headers only) and kept twice: in memory in this process, and as a small
JSON entry in the render cache, named by the blob's SHA-256, so other workers
and restarts do not read the file again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

from flask import current_app
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from portal.storage.base import BlobNotFound
from portal.viewer.decode import FrameUnreadable, apply_functional_groups, read_header
from portal.viewer.images import ImageRef, open_seekable, render_cache

logger = logging.getLogger(__name__)

FACTS_VERSION = 1
MEMORY_ENTRIES = 20_000


@dataclass
class InstanceFacts:
    """Geometry, timing and display facts of one instance (its first frame)."""

    position: list[float] | None = None
    orientation: list[float] | None = None
    slice_location: float | None = None
    thickness: float | None = None
    spacing: list[float] | None = None
    spacing_kind: str | None = None
    frame_time_ms: float | None = None
    windows: list[dict] = field(default_factory=list)
    color: bool = False


def facts_for(images: list[ImageRef]) -> dict[str, InstanceFacts]:
    """Return the facts of each image, keyed by blob SHA-256; unreadable ones get blanks."""
    found: dict[str, InstanceFacts] = {}
    cache, memory = render_cache(), _memory()
    for image in images:
        if image.sha256 in found:
            continue
        facts = memory.get(image.sha256)
        if facts is None:
            key = _cache_key(image.sha256)
            stored = cache.get(key, "json")
            facts = InstanceFacts(**json.loads(stored)) if stored else None
            if facts is None:
                facts = _read_facts(image)
                cache.put(key, "json", json.dumps(asdict(facts)).encode())
            memory.put(image.sha256, facts)
        found[image.sha256] = facts
    return found


def _cache_key(sha256: str) -> str:
    return hashlib.sha256(f"facts|{FACTS_VERSION}|{sha256}".encode()).hexdigest()


class FactsMemory:
    """A thread-safe LRU of facts by blob SHA-256, one per app."""

    def __init__(self, entries: int = MEMORY_ENTRIES) -> None:
        self.entries = entries
        self._facts: OrderedDict[str, InstanceFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> InstanceFacts | None:
        with self._lock:
            facts = self._facts.get(sha256)
            if facts is not None:
                self._facts.move_to_end(sha256)
            return facts

    def put(self, sha256: str, facts: InstanceFacts) -> None:
        with self._lock:
            self._facts[sha256] = facts
            while len(self._facts) > self.entries:
                self._facts.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._facts.clear()


def _memory() -> FactsMemory:
    return current_app.extensions.setdefault("overread_viewer_facts", FactsMemory())


def _read_facts(image: ImageRef) -> InstanceFacts:
    try:
        with open_seekable(image.storage_key) as stream:
            header = read_header(stream)
            apply_functional_groups(header, 0)
    except (FrameUnreadable, BlobNotFound) as exc:
        logger.info("viewer: no header facts for instance %s: %s", image.instance_id, exc)
        return InstanceFacts()
    return facts_of(header)


def facts_of(header: Dataset) -> InstanceFacts:
    """Extract the viewer's facts from a header (functional groups already applied)."""
    spacing, kind = _spacing(header)
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    return InstanceFacts(
        position=_floats(header.get("ImagePositionPatient"), 3),
        orientation=_floats(header.get("ImageOrientationPatient"), 6),
        slice_location=_float(header.get("SliceLocation")),
        thickness=_float(header.get("SliceThickness")),
        spacing=spacing,
        spacing_kind=kind,
        frame_time_ms=_frame_time(header),
        windows=_windows(header),
        color=int(header.get("SamplesPerPixel") or 1) > 1 or photometric == "PALETTE COLOR",
    )


def _spacing(header: Dataset) -> tuple[list[float] | None, str | None]:
    """Pixel Spacing (calibrated, in the patient) first, else Imager Pixel Spacing."""
    for keyword, kind in (("PixelSpacing", "pixel"), ("ImagerPixelSpacing", "imager")):
        values = _floats(header.get(keyword), 2)
        if values and all(v > 0 for v in values):
            return values, kind
    return None, None


def _frame_time(header: Dataset) -> float | None:
    frame_time = _float(header.get("FrameTime"))
    if frame_time and frame_time > 0:
        return frame_time
    vector = _floats(header.get("FrameTimeVector"))
    if vector and len(vector) > 1:
        steps = [v for v in vector[1:] if v > 0]
        if steps:
            return sum(steps) / len(steps)
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _float(header.get(keyword))
        if rate and rate > 0:
            return 1000.0 / rate
    return None


def _windows(header: Dataset) -> list[dict]:
    centers = _floats(header.get("WindowCenter")) or []
    widths = _floats(header.get("WindowWidth")) or []
    names = header.get("WindowCenterWidthExplanation") or []
    names = [str(n) for n in names] if isinstance(names, MultiValue | list) else [str(names)]
    windows = []
    for index, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width <= 0:
            continue
        name = names[index].strip() if index < len(names) and names[index].strip() else ""
        windows.append({"center": center, "width": width, "name": name or f"File {index + 1}"})
    return windows


def _floats(value, count: int | None = None) -> list[float] | None:
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(n) for n in numbers):
        return None
    if count is not None and len(numbers) != count:
        return None
    return numbers


def _float(value) -> float | None:
    numbers = _floats(value, 1)
    return numbers[0] if numbers else None
