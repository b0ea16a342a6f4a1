"""Walk a pixel data element without reading it: its length, or its fragments, must fit."""

from __future__ import annotations

from struct import unpack
from typing import BinaryIO

from portal.studies.policy import IngestRejected

PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_FRAGMENTS = 1_000_000
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"UN"})
_ITEM, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)


def skip_pixel_data(fp: BinaryIO, end: int, implicit: bool, little: bool) -> bool:
    """Check the pixel data element at ``fp`` fits in ``end`` bytes and seek past it.

    :return: ``False`` (``fp`` moved) if no pixel data element starts at ``fp``.
    :raise IngestRejected: the element or one of its fragments runs past ``end``.
    """
    order = "<" if little else ">"
    header = fp.read(8)
    if len(header) < 8:
        return False
    group, element = unpack(f"{order}HH", header[:4])
    if (group << 16 | element) not in PIXEL_DATA_TAGS:
        return False
    if implicit:
        length = unpack(f"{order}L", header[4:])[0]
    elif header[4:6] in _LONG_LENGTH_VRS:
        extra = fp.read(4)
        if len(extra) < 4:
            raise IngestRejected("the file ends inside the Pixel Data header (truncated)")
        length = unpack(f"{order}L", extra)[0]
    else:
        length = unpack(f"{order}H", header[6:])[0]
    if length == UNDEFINED_LENGTH:
        _skip_fragments(fp, end)
    elif fp.tell() + length > end:
        raise IngestRejected(
            f"Pixel Data declares {length} bytes but only {end - fp.tell()} remain (truncated)"
        )
    else:
        fp.seek(length, 1)
    return True


def _skip_fragments(fp: BinaryIO, end: int) -> None:
    """Walk encapsulated pixel data item by item, seeking over each fragment."""
    for _ in range(MAX_FRAGMENTS):
        header = fp.read(8)
        if len(header) < 8:
            raise IngestRejected("the encapsulated pixel data is cut short (truncated)")
        group, element, length = unpack("<HHL", header)
        if (group, element) == _SEQUENCE_END:
            return
        if (group, element) != _ITEM or length == UNDEFINED_LENGTH:
            raise IngestRejected("the encapsulated pixel data is malformed")
        if fp.tell() + length > end:
            raise IngestRejected("a pixel data fragment runs past the end of the file")
        fp.seek(length, 1)
    raise IngestRejected(f"the pixel data has more than {MAX_FRAGMENTS} fragments")
