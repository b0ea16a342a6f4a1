"""Apply the Basic Application Level Confidentiality Profile (PS3.15 E.1) to a data set.

:func:`deidentify` changes a pydicom :class:`~pydicom.dataset.Dataset` in place,
following :data:`portal.deid.table.BASIC_PROFILE` element by element and
recursing into sequences. What the table leaves open is decided here, once:

- a compound action (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``) becomes its last,
  conformance-keeping choice (:func:`resolve_action`): without knowing the IOD
  we cannot tell a Type 3 attribute (removable) from a Type 1 one;
- ``C`` (clean) is treated as ``D``;
- a sequence whose action is ``D`` or ``Z`` is emptied rather than filled with
  made-up items, so no free text inside it survives; ``X/Z/U*`` sequences
  (Referenced/Source Image Sequence) are kept with their UIDs replaced;
- Patient ID and Patient's Name (``Z``) get a pseudonym, and a non-empty
  Accession Number (``Z``) another, from the mapper, so the requester can tell
  patients and studies apart and relate a report back;
- private attributes, curve groups (50xx) and overlay groups (60xx) go whole;
  Retain Safe Private is not supported;
- Burned In Annotation is kept: pixel data is never touched. See
  :func:`burned_in_annotation_risk`.
"""

from __future__ import annotations

from typing import Protocol

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from portal.deid.table import (
    BASIC_PROFILE,
    CURVE_GROUPS,
    OVERLAY_GROUPS,
    is_private_group,
)

METHOD = "PS3.15 Basic Application Level Confidentiality Profile"  # LO: 64 at most
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
# Keep a UID sequence, replacing the UIDs inside it (the table's "U*").
KEEP_REPLACING_UIDS = "U*"
PSEUDONYMIZED = {0x00100020: "patient_id", 0x00100010: "patient_id", 0x00080050: "accession"}
# Modalities whose images often carry text drawn into the pixels (ultrasound,
# secondary capture, photographs, scanned documents) when the header is silent.
BURNED_IN_PRONE_MODALITIES = frozenset({"US", "OT", "SC", "XC", "ES", "GM", "SM", "DOC"})

_TEXT_DUMMY = "ANONYMIZED"
_DUMMIES: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "AT": 0,
    "UR": "",
}
_NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


class Mapper(Protocol):
    """Where replacement values come from: the same original gives the same replacement."""

    def replacement(self, kind: str, original: str) -> str:
        """Return the replacement of ``original`` (a ``uid``, ``patient_id``, ``accession``)."""
        ...


def resolve_action(code: str) -> str:
    """Return the one action Overread applies for a Table E.1-1 code (``"X/Z"`` -> ``"Z"``).

    :raise ValueError: ``code`` is not one the table uses.
    """
    if code in ("X", "Z", "D", "U", "K"):
        return code
    if code == "C":
        return "D"
    if code == "X/Z/U*":
        return KEEP_REPLACING_UIDS
    if code in ("X/Z", "X/D", "Z/D", "X/Z/D"):
        return code[-1]
    raise ValueError(f"unknown Basic Profile action {code!r}")


def action_for(tag: int) -> str:
    """Return the action for an attribute: from the table, the group rules, else ``K``."""
    group, element = tag >> 16, tag & 0xFFFF
    if is_private_group(group) or group in CURVE_GROUPS or group in OVERLAY_GROUPS:
        return "X"
    if element == 0x0000 and group > 0x0002:
        return "X"  # group lengths are retired, and wrong once elements go
    code = BASIC_PROFILE.get(tag)
    return "K" if code is None else resolve_action(code)


def deidentify(dataset: Dataset, mapper: Mapper) -> None:
    """De-identify ``dataset`` in place with the Basic Profile; pixel data is left alone.

    The file meta information, if any, gets the new SOP Instance UID.

    :param mapper: gives consistent replacement UIDs and pseudonyms.
    """
    _clean(dataset, mapper)
    _mark(dataset)
    file_meta = getattr(dataset, "file_meta", None)
    if file_meta is not None and "SOPInstanceUID" in dataset:
        file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID


def burned_in_annotation_risk(dataset: Dataset) -> bool:
    """Tell whether the pixels may show identifying text this profile cannot remove.

    ``True`` when Burned In Annotation says ``YES``, or is absent on a modality
    where drawn-in text is common. Overread does not clean pixels; the UI warns.
    """
    value = str(dataset.get("BurnedInAnnotation", "")).strip().upper()
    if value:
        return value == "YES"
    return str(dataset.get("Modality", "")).strip().upper() in BURNED_IN_PRONE_MODALITIES


def _clean(dataset: Dataset, mapper: Mapper) -> None:
    """Apply the profile to each element of ``dataset`` and of its sequences."""
    patient_id = str(dataset.get("PatientID", "") or "").strip()
    for tag in list(dataset.keys()):  # keys(), not the Dataset: that would load values
        action = action_for(tag)
        if action == "X":
            del dataset[tag]
        elif tag in PSEUDONYMIZED:
            _pseudonymize(dataset[tag], patient_id, mapper)
        elif touches(dataset, tag):
            _apply(dataset[tag], action, mapper)


def touches(dataset: Dataset, tag: int) -> bool:
    """Tell whether :func:`deidentify` reads or changes the value of ``dataset[tag]``.

    Removed elements and kept ones that are not sequences are never read.
    """
    action = action_for(tag)
    if action == "X":
        return False
    return action != "K" or tag in PSEUDONYMIZED or _vr_of(dataset, tag) == "SQ"


def _apply(element: DataElement, action: str, mapper: Mapper) -> None:
    if element.VR == "SQ":
        _apply_to_sequence(element, action, mapper)
    elif action == "Z":
        element.clear()
    elif action in ("U", KEEP_REPLACING_UIDS) or (action == "D" and element.VR == "UI"):
        _replace_uids(element, mapper)
    elif action == "D":
        element.value = _dummy(element.VR)


def _apply_to_sequence(element: DataElement, action: str, mapper: Mapper) -> None:
    if action in ("D", "Z"):
        element.value = Sequence()
        return
    for item in element.value:
        _clean(item, mapper)


def _replace_uids(element: DataElement, mapper: Mapper) -> None:
    value = element.value
    if isinstance(value, MultiValue | list):
        element.value = [mapper.replacement("uid", str(uid)) for uid in value if uid]
    elif value:
        element.value = mapper.replacement("uid", str(value))


def _pseudonymize(element: DataElement, patient_id: str, mapper: Mapper) -> None:
    """Give Patient ID/Name a pseudonym keyed on the Patient ID; a non-empty Accession another."""
    kind = PSEUDONYMIZED[element.tag]
    if kind == "patient_id":
        element.value = mapper.replacement(kind, patient_id)
        return
    original = str(element.value or "").strip()
    element.value = mapper.replacement(kind, original) if original else ""


def _dummy(vr: str) -> object:
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr in _NUMBER_VRS:
        return 0
    if vr in _BINARY_VRS:
        return bytes(8)  # a whole number of values for every binary VR
    return _TEXT_DUMMY


def _vr_of(dataset: Dataset, tag: int) -> str | None:
    """Return an element's VR without loading its value."""
    raw = dataset.get_item(BaseTag(tag), keep_deferred=True)
    if raw is not None and raw.VR:
        return raw.VR
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _mark(dataset: Dataset) -> None:
    """Record what was done: identity removed, how, and that dates were removed."""
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    dataset.DeidentificationMethodCodeSequence = Sequence([code])
    dataset.LongitudinalTemporalInformationModified = "REMOVED"
