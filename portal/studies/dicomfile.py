"""Open a spooled DICOM file with pydicom, headers only, and prove its structure sound.

pydicom reads what it can and stays quiet about the rest: a value cut short by
the end of the file comes back short, a length that points past the end is
skipped with a seek, and a deflated data set is inflated whole in memory. So
the transfer syntax is read first, deflated data is inflated here in bounded
chunks, and every length pydicom meets is checked against the bytes really
there, the pixel data (walked, never read) and whatever follows it included.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import BinaryIO, cast

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_partial, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from portal.studies.pixeldata import PIXEL_DATA_TAGS, UNDEFINED_LENGTH, skip_pixel_data
from portal.studies.policy import IngestLimits, IngestRejected
from portal.studies.spool import inflate_capped

DEFER_SIZE = 1024 * 1024  # larger values are skipped with a seek, not read into memory
# pydicom turns every byte of header it reads into Python objects many times its
# size; no genuine header (enhanced multi-frame ones included) comes near this.
HEADER_READ_LIMIT = 32 * 1024 * 1024
FILE_META_READ_LIMIT = 64 * 1024  # file meta information is a few hundred bytes
PREAMBLE_AND_MAGIC = 132


class ReadBudget:
    """Wrap a file so that pydicom may read (not seek past) at most ``limit`` bytes of it."""

    def __init__(self, raw: BinaryIO, limit: int | None = None) -> None:
        self._raw = raw
        self._limit = HEADER_READ_LIMIT if limit is None else limit
        self._left = self._limit

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped file; :raise IngestRejected: the budget is spent."""
        data = self._raw.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise IngestRejected(f"the header is over {self._limit} bytes long")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


class ElementLog:
    """A pydicom ``stop_when`` callback noting where each top-level value starts and ends.

    pydicom calls it once an element's header is read, before the value, so the
    declared length is seen even when the value is then skipped or cut short.
    """

    def __init__(self, fp: BinaryIO, stop_at: Callable[[int], bool] = lambda tag: False):
        self._fp = fp
        self._stop_at = stop_at
        self._values: dict[int, tuple[int, int | None]] = {}

    def __call__(self, tag: BaseTag, vr: str | None, length: int) -> bool:
        if self._stop_at(tag):
            return True
        start = self._fp.tell()  # pydicom also calls this on a peek; the real call wins
        self._values[int(tag)] = (start, None if length == UNDEFINED_LENGTH else start + length)
        return False

    def check_fits(self, end: int) -> None:
        """:raise IngestRejected: a value declares more bytes than there are."""
        for tag, (start, value_end) in self._values.items():
            if value_end is not None and value_end > end:
                raise IngestRejected(
                    f"element {BaseTag(tag)} declares {value_end - start} bytes,"
                    " past the end of the file (truncated or damaged)"
                )

    def last_end(self, default: int) -> int | None:
        """Return where the last value ends (``None``: undefined length), or ``default``."""
        if not self._values:
            return default
        return max(self._values.values(), key=lambda value: value[0])[1]


def read_file_meta(fp: BinaryIO) -> tuple[FileMetaDataset, int]:
    """Read the preamble and the group 0002 elements; return them and where the data set starts.

    :raise IngestRejected: a file meta element runs past the end of the file.
    """
    end = fp.seek(0, 2)
    fp.seek(0)
    read_preamble(fp, False)
    budgeted = cast(BinaryIO, ReadBudget(fp, FILE_META_READ_LIMIT))
    log = ElementLog(budgeted, stop_at=lambda tag: tag >> 16 != 0x0002)
    meta = FileMetaDataset(read_dataset(budgeted, False, True, stop_when=log))
    log.check_fits(end)
    return meta, log.last_end(PREAMBLE_AND_MAGIC) or PREAMBLE_AND_MAGIC


def open_dicom(fp: BinaryIO, meta: FileMetaDataset, start: int, limits: IngestLimits) -> Dataset:
    """Parse the data set that begins at byte ``start``, up to its pixel data.

    :raise IngestRejected: the data set is truncated, declares lengths past its
        end, or is deflated data that inflates past the configured cap.
    """
    end = fp.seek(0, 2)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        fp.seek(0)
        budgeted = cast(BinaryIO, ReadBudget(fp))
        log = ElementLog(budgeted, stop_at=_is_pixel_data)
        dataset = read_partial(budgeted, stop_when=log, defer_size=DEFER_SIZE)
        check_structure(budgeted, dataset, log, start, end)
        return dataset
    fp.seek(start)
    with tempfile.TemporaryFile(dir=limits.spool_dir) as inflated:
        end = inflate_capped(fp, inflated, limits.max_inflated_bytes)
        inflated.seek(0)
        budgeted = cast(BinaryIO, ReadBudget(inflated))
        log = ElementLog(budgeted, stop_at=_is_pixel_data)
        dataset = read_dataset(budgeted, False, True, stop_when=log, defer_size=DEFER_SIZE)
        check_structure(budgeted, dataset, log, 0, end)
    return dataset


def _is_pixel_data(tag: int) -> bool:
    return tag in PIXEL_DATA_TAGS


def check_structure(fp: BinaryIO, dataset: Dataset, log: ElementLog, start: int, end: int) -> None:
    """Check what pydicom read from ``start`` and everything after it fit in ``end`` bytes.

    ``fp`` is where pydicom stopped: at the pixel data element, or at the end.
    """
    _check_read(fp, log, start, end)
    if fp.tell() == end:
        return
    implicit, little = _encoding(dataset)
    position = fp.tell()
    if not skip_pixel_data(fp, end, implicit, little):
        raise IngestRejected(f"the data set cannot be read past byte {position} (damaged)")
    trailer_start, trailer_log = fp.tell(), ElementLog(fp)
    read_dataset(fp, implicit, little, stop_when=trailer_log, defer_size=DEFER_SIZE)
    _check_read(fp, trailer_log, trailer_start, end)
    if fp.tell() != end:
        raise IngestRejected(f"the data after the pixel data cannot be read past byte {fp.tell()}")


def _check_read(fp: BinaryIO, log: ElementLog, start: int, end: int) -> None:
    """Check the values read fit, and that a read that reached the end left no scraps."""
    log.check_fits(end)
    position = fp.tell()
    if position > end:
        raise IngestRejected("an element declares a length past the end of the file")
    last_end = log.last_end(start)
    if position == end and last_end is not None and last_end < end:
        raise IngestRejected("the file ends inside a data element header (truncated)")


def _encoding(dataset: Dataset) -> tuple[bool, bool]:
    """Return (implicit VR, little endian) as pydicom actually read the elements.

    This can differ from the transfer syntax: pydicom falls back to implicit VR
    when a file says explicit but is not.
    """
    for tag in dataset.keys():  # noqa: SIM118 - iterating the Dataset would decode values
        element = dataset.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement):
            return element.is_implicit_VR, element.is_little_endian
    implicit, little = dataset.original_encoding
    return bool(implicit), little is not False
