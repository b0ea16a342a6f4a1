"""De-identify a spooled DICOM file into a new spool file, pixel data copied byte for byte.

The header (everything before the pixel data) is parsed, de-identified and
written anew; the pixel data element is then copied from the original file in
chunks, never decoded nor held whole in memory. Whatever follows the pixel
data is dropped: only private attributes, Digital Signatures, Data Set
Trailing Padding and retired elements can stand there, and the Basic Profile
removes all of those. A deflated file has no separate pixel bytes to copy, so
it is read whole (its inflated size is already capped by ingest) and rewritten.

pydicom is called under :data:`portal.studies.headers.PARSE_LOCK` with its
warnings and value checks off, as for header reading; the mapper's database
work happens outside that lock.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_partial
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from portal.deid.profile import Mapper, burned_in_annotation_risk, deidentify, touches
from portal.studies.dicomfile import DEFER_SIZE, read_file_meta
from portal.studies.headers import PARSE_LOCK
from portal.studies.pixeldata import PIXEL_DATA_TAGS, skip_pixel_data
from portal.studies.policy import IngestRejected, megabytes
from portal.studies.spool import CHUNK, SpooledFile


@dataclass(frozen=True)
class DeidentifiedFile:
    """The de-identified copy, and whether its pixels may still show identifying text."""

    spooled: SpooledFile
    burned_in_annotation: bool


@dataclass
class _Source:
    dataset: Dataset
    pixel_span: tuple[int, int] | None  # where the pixel data element starts and ends


def deidentify_file(
    path: Path, mapper: Mapper, spool_dir: Path, max_bytes: int
) -> DeidentifiedFile:
    """Write a de-identified copy of the checked DICOM file at ``path`` to ``spool_dir``.

    :param max_bytes: refuse files larger than this (``INGEST_MAX_DEID_MB``).
    :raise IngestRejected: the file is too large, or cannot be rewritten faithfully.
    """
    if path.stat().st_size > max_bytes:
        raise IngestRejected(
            f"the file is too large to de-identify (over the {megabytes(max_bytes)} limit)"
        )
    with _quiet_pydicom():
        source = _read_source(path)
        _load_what_deidentify_reads(source.dataset)
        burned_in = burned_in_annotation_risk(source.dataset)
    deidentify(source.dataset, mapper)
    return DeidentifiedFile(_write_copy(path, source, spool_dir), burned_in)


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    with PARSE_LOCK, warnings.catch_warnings(), pydicom_config.disable_value_validation():
        warnings.simplefilter("ignore")
        yield


def _read_source(path: Path) -> _Source:
    """Parse the header up to the pixel data and find where that element ends."""
    with open(path, "rb") as fp:
        meta, _ = read_file_meta(fp)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            fp.seek(0)
            return _Source(dcmread(fp), None)
        fp.seek(0)
        dataset = read_partial(fp, stop_when=_at_pixel_data, defer_size=DEFER_SIZE)
        implicit = _read_implicit(dataset)
        if implicit != UID(meta.TransferSyntaxUID).is_implicit_VR:
            raise IngestRejected(
                "cannot de-identify: the data set is not encoded as its transfer syntax says"
            )
        start, end = fp.tell(), fp.seek(0, 2)
        fp.seek(start)
        little = UID(meta.TransferSyntaxUID).is_little_endian
        if start == end or not skip_pixel_data(fp, end, implicit, little):
            return _Source(dataset, None)
        return _Source(dataset, (start, fp.tell()))


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_DATA_TAGS


def _read_implicit(dataset: Dataset) -> bool:
    """Return whether pydicom read the elements as implicit VR (it may fall back to it)."""
    for tag in dataset.keys():  # noqa: SIM118 - iterating the Dataset would decode values
        element = dataset.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement):
            return element.is_implicit_VR
    return bool(dataset.original_encoding[0])


def _load_what_deidentify_reads(dataset: Dataset) -> None:
    """Convert now, under the lock, every value :func:`deidentify` will read or replace.

    Converting checks a value and may warn; done here, no warning escapes later.
    Values kept as they are (large ones may still be on disk) are left unread.
    """
    for tag in list(dataset.keys()):  # keys(), not the Dataset: that would load values
        if touches(dataset, tag):
            element: DataElement = dataset[tag]
            if element.VR == "SQ":
                for item in element.value:
                    _load_what_deidentify_reads(item)
    for keyword in ("Modality", "BurnedInAnnotation"):
        dataset.get(keyword)


def _write_copy(path: Path, source: _Source, spool_dir: Path) -> SpooledFile:
    """Write the de-identified header, then the original pixel data; hash what was written."""
    source.dataset.file_meta = _new_file_meta(source.dataset)
    fd, name = tempfile.mkstemp(dir=spool_dir, suffix=".dcm")
    out_path = Path(name)
    try:
        with os.fdopen(fd, "w+b") as out:
            with _quiet_pydicom():
                source.dataset.preamble = None
                dcmwrite(out, source.dataset, enforce_file_format=True)
            if source.pixel_span is not None:
                _copy_span(path, out, *source.pixel_span)
            size, digest = _hash(out)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return SpooledFile(out_path, size, digest)


def _new_file_meta(dataset: Dataset) -> FileMetaDataset:
    """Return file meta information naming the new instance, and nothing about the sender."""
    old = dataset.file_meta
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = old.get("MediaStorageSOPClassUID", dataset.get("SOPClassUID"))
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = old.TransferSyntaxUID
    return meta


def _copy_span(path: Path, out: BinaryIO, start: int, end: int) -> None:
    with open(path, "rb") as source:
        source.seek(start)
        left = end - start
        while left > 0:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise IngestRejected("the file changed while it was being de-identified")
            out.write(chunk)
            left -= len(chunk)


def _hash(out: BinaryIO) -> tuple[int, str]:
    out.flush()
    out.seek(0)
    hasher, size = hashlib.sha256(), 0
    while chunk := out.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()
