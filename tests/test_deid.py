"""De-identification: the Basic Profile on real samples, the stored mapping, and ingest."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from portal.deid.mapper import DeidMapper, MemoryMapper, new_replacement, original_for
from portal.deid.models import DeidMapping
from portal.deid.profile import action_for, deidentify, resolve_action
from portal.deid.table import BASIC_PROFILE, CURVE_GROUPS, OVERLAY_GROUPS
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.ingest import IngestStatus, ingest_file, ingest_zip
from portal.studies.models import Instance, Patient, Series, Study
from portal.studies.pipeline import BURNED_IN_ANNOTATION
from tests.ingest_support import STUDY_UID, make_dataset, make_zip, write_dicom

SCOPE = "case-1"
EXPECTED_ADDITIONS = {
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
}


def _read(path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's complaints about odd sample files
        ds = pydicom.dcmread(path)
        for _ in ds.iterall():  # convert every value now, warnings off
            pass
    return ds


# --- samples ------------------------------------------------------------------------
def _with_sequences_and_private_tags(path: Path) -> Path:
    """A CT-like file with nested sequences, private blocks, overlays and curves."""
    ds = make_dataset(
        PatientName="Secretname^Jane",
        PatientID="MRN-SECRET-77",
        PatientBirthDate="19610203",
        PatientAge="063Y",
        InstitutionName="St Example Hospital",
        StationName="CT-ROOM-4",
        OperatorsName=["Op^One", "Op^Two"],
        SeriesDate="20240229",
        FrameOfReferenceUID=generate_uid(),
        BurnedInAnnotation="NO",
        ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
    )
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "Secretname again")
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = ds.SOPClassUID
    referenced.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    referenced.private_block(0x0011, "ACME 1.0", create=True).add_new(0x02, "LO", "hidden")
    ds.ReferencedImageSequence = Sequence([referenced])
    request = Dataset()
    request.RequestedProcedureID = "RP-SECRET"
    ds.RequestAttributesSequence = Sequence([request])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    code.PersonName = "Nested^Person"
    code.private_block(0x0013, "ACME 1.0", create=True).add_new(0x03, "LO", "nested")
    ds.AnatomicRegionSequence = Sequence([code])
    content = Dataset()
    content.TextValue = "patient Secretname said"
    ds.ContentSequence = Sequence([content])
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", bytes(8))
    ds.add_new(0x60004000, "LT", "overlay note")
    ds.add_new(0x50000005, "US", 1)
    return write_dicom(path, ds)


def _mammogram(path: Path) -> Path:
    return write_dicom(path, Modality="MG", BurnedInAnnotation="YES", PatientID="MG-SECRET-1")


def _deflated(path: Path) -> Path:
    return write_dicom(path, transfer_syntax=DeflatedExplicitVRLittleEndian)


def _bundled(name: str):
    return lambda path: Path(get_testdata_file(name))


SAMPLES = {
    "CT_small": _bundled("CT_small.dcm"),
    "MR_small": _bundled("MR_small.dcm"),
    "rtplan": _bundled("rtplan.dcm"),
    "US_jpeg_private": _bundled("examples_ybr_color.dcm"),
    "US_rgb": _bundled("examples_rgb_color.dcm"),
    "NM_jpeg_lossy": _bundled("JPEG-lossy.dcm"),
    "MR_overlay": _bundled("examples_overlay.dcm"),
    "MR_big_endian": _bundled("MR_small_bigendian.dcm"),
    "MR_implicit": _bundled("MR_small_implicit.dcm"),
    "SR": _bundled("test-SR.dcm"),
    "MG_synthetic": _mammogram,
    "deflated_synthetic": _deflated,
    "sequences_private": _with_sequences_and_private_tags,
}


@pytest.fixture
def owner(create_user):
    return create_user("patient")


@pytest.fixture
def ingest(app, owner):
    def run(path: Path, scope: str | None = SCOPE, **kwargs):
        with app.app_context():
            return ingest_file(path, owner, deidentify_scope=scope, **kwargs)

    return run


def _stored(app, sop_instance_uid: str) -> bytes:
    with app.app_context():
        key = db.session.scalars(
            select(Instance.storage_key).where(Instance.sop_instance_uid == sop_instance_uid)
        ).one()
        with get_storage().open(key) as blob:
            return blob.read()


def _stored_dataset(app, sop_instance_uid: str, tmp_path: Path) -> Dataset:
    path = tmp_path / "stored.dcm"
    path.write_bytes(_stored(app, sop_instance_uid))
    return _read(path)


def _all_elements(ds: Dataset):
    """Yield every element, those in sequence items included."""
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from _all_elements(item)


# --- the profile on each sample -------------------------------------------------------
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_each_sample_is_deidentified_per_table_e11_and_ingested(app, ingest, sample, tmp_path):
    path = SAMPLES[sample](tmp_path / f"{sample}.dcm")
    original = _read(path)
    result = ingest(path)
    assert result.status is IngestStatus.ACCEPTED, result.reason
    assert result.sop_instance_uid != original.SOPInstanceUID
    stored = _stored_dataset(app, result.sop_instance_uid, tmp_path)

    _assert_removed_and_private_gone(stored)
    _assert_replaced(original, stored)
    _assert_uids_remapped(app, original, stored)
    _assert_kept(original, stored)
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert stored.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert stored.LongitudinalTemporalInformationModified == "REMOVED"
    assert stored.file_meta.MediaStorageSOPInstanceUID == stored.SOPInstanceUID
    assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    if "PixelData" in original:
        assert stored.PixelData == original.PixelData


def _assert_removed_and_private_gone(stored: Dataset) -> None:
    for element in _all_elements(stored):
        assert not element.tag.is_private, element
        assert action_for(element.tag) != "X", element
        assert element.tag.group not in (*CURVE_GROUPS, *OVERLAY_GROUPS), element


def _assert_replaced(original: Dataset, stored: Dataset) -> None:
    """D and Z attributes keep no original value (sequences among them are emptied)."""
    for element in original:
        action = action_for(element.tag)
        if action not in ("D", "Z") or element.tag in (0x00020003,):
            continue
        new = stored[element.tag]
        if element.VR == "SQ":
            assert len(new.value) == 0
        elif element.value not in (None, "", b""):
            assert str(new.value) != str(element.value), element


def _assert_uids_remapped(app, original: Dataset, stored: Dataset) -> None:
    """U attributes map through the stored scope mapping, those in sequences included."""
    top_level = [e for e in original if action_for(e.tag) == "U" and e.value]
    assert top_level
    originals = {str(e.value) for e in _all_elements(original) if action_for(e.tag) == "U"}
    with app.app_context():
        for element in top_level:
            new = stored[element.tag].value
            assert new != element.value
            assert original_for(SCOPE, "uid", str(new)) == str(element.value)
        for element in _all_elements(stored):
            if action_for(element.tag) == "U" and element.value:
                assert original_for(SCOPE, "uid", str(element.value)) in originals, element


def _assert_kept(original: Dataset, stored: Dataset) -> None:
    """Attributes the table does not list (K) keep their values."""
    for element in original:
        keep = action_for(element.tag) == "K" and element.tag != 0x7FE00010
        if not keep or element.keyword in EXPECTED_ADDITIONS or element.tag > 0x7FE00010:
            continue
        assert element.tag in stored, element
        if element.VR != "SQ":
            assert stored[element.tag].value == element.value, element


def test_the_patient_gets_a_pseudonym_that_leads_back(app, ingest, tmp_path):
    path = _with_sequences_and_private_tags(tmp_path / "a.dcm")
    result = ingest(path)
    stored = _stored_dataset(app, result.sop_instance_uid, tmp_path)
    assert stored.PatientID.startswith("OVR-") and str(stored.PatientName) == stored.PatientID
    assert stored.PatientBirthDate == "" and "PatientAge" not in stored
    assert stored.InstitutionName == "ANONYMIZED" and stored.SeriesDate == "19000101"
    assert stored.AccessionNumber.startswith("OVR-")
    assert len(stored.ContentSequence) == 0 and "RequestAttributesSequence" not in stored
    assert stored.AnatomicRegionSequence[0].CodeMeaning == "Chest"
    assert stored.AnatomicRegionSequence[0].PersonName == "ANONYMIZED"
    with app.app_context():
        assert original_for(SCOPE, "patient_id", stored.PatientID) == "MRN-SECRET-77"
        assert original_for(SCOPE, "accession", stored.AccessionNumber) == "ACC42"
        assert original_for(SCOPE, "uid", stored.StudyInstanceUID) == STUDY_UID
        assert original_for("another-case", "uid", stored.StudyInstanceUID) is None
        assert original_for(SCOPE, "uid", "2.25.1") is None


@pytest.mark.parametrize("sample", ["CT_small", "MG_synthetic", "sequences_private", "SR"])
def test_no_patient_identity_reaches_blob_store_or_index(app, ingest, sample, tmp_path):
    path = SAMPLES[sample](tmp_path / f"{sample}.dcm")
    original = _read(path)
    needles = [
        str(original.get(keyword, "") or "")
        for keyword in ("PatientName", "PatientID", "PatientBirthDate")
    ]
    pixels = original.get("PixelData", b"")
    needles = [n for n in needles if n and n.encode() not in pixels]
    assert needles
    result = ingest(path)
    blob = _stored(app, result.sop_instance_uid)
    for needle in needles:
        assert needle.encode() not in blob
    with app.app_context():
        for model in (Patient, Study, Series, Instance):
            for row in db.session.scalars(select(model)):
                text = " ".join(str(getattr(row, c.key)) for c in model.__table__.columns)
                for needle in needles:
                    assert needle not in text, (model.__tablename__, needle)


# --- consistency and scope --------------------------------------------------------------
def test_one_study_maps_consistently_across_files_and_references(app, ingest, tmp_path):
    first = make_dataset(InstanceNumber=1)
    second = make_dataset(InstanceNumber=2)
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([ref])
    results = [
        ingest(write_dicom(tmp_path / "1.dcm", first)),
        ingest(write_dicom(tmp_path / "2.dcm", second)),
    ]
    assert [r.status for r in results] == [IngestStatus.ACCEPTED] * 2
    assert results[0].study_instance_uid == results[1].study_instance_uid != STUDY_UID
    assert results[0].series_instance_uid == results[1].series_instance_uid
    stored = _stored_dataset(app, results[1].sop_instance_uid, tmp_path)
    assert stored.ReferencedImageSequence[0].ReferencedSOPInstanceUID == results[0].sop_instance_uid
    other = ingest(write_dicom(tmp_path / "3.dcm", first), scope="case-2")
    assert other.status is IngestStatus.ACCEPTED
    assert other.study_instance_uid != results[0].study_instance_uid
    assert other.sop_instance_uid != results[0].sop_instance_uid
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Study)) == 2
        patients = db.session.scalars(select(Patient.patient_id)).all()
        assert len(set(patients)) == 2 and all(p.startswith("OVR-") for p in patients)


def test_the_same_file_twice_in_a_scope_is_a_duplicate(ingest, tmp_path):
    path = _with_sequences_and_private_tags(tmp_path / "a.dcm")
    first, again = ingest(path), ingest(path)
    assert first.status is IngestStatus.ACCEPTED
    assert again.status is IngestStatus.DUPLICATE
    assert again.sop_instance_uid == first.sop_instance_uid


def test_without_a_scope_nothing_is_deidentified(app, ingest, tmp_path):
    result = ingest(write_dicom(tmp_path / "a.dcm"), scope=None)
    assert result.status is IngestStatus.ACCEPTED
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DeidMapping)) == 0
        assert db.session.scalars(select(Patient.patient_id)).one() == "MRN-0001"


def test_a_zip_is_deidentified_entry_by_entry(app, owner, tmp_path):
    entries = {
        f"study/{n}.dcm": write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n).read_bytes()
        for n in range(2)
    }
    archive = make_zip(tmp_path / "study.zip", entries)
    with app.app_context():
        results = ingest_zip(archive, owner, deidentify_scope=SCOPE)
        assert [r.status for r in results] == [IngestStatus.ACCEPTED] * 2
        assert len({r.study_instance_uid for r in results}) == 1
        assert db.session.scalars(select(Patient.patient_id)).one().startswith("OVR-")


def test_burned_in_annotation_is_kept_and_reported(app, ingest, tmp_path):
    mg = ingest(_mammogram(tmp_path / "mg.dcm"))
    ct = ingest(write_dicom(tmp_path / "ct.dcm"))
    assert mg.warning == BURNED_IN_ANNOTATION and ct.warning == ""
    assert _stored_dataset(app, mg.sop_instance_uid, tmp_path).BurnedInAnnotation == "YES"


def test_a_file_over_the_deidentification_cap_is_rejected(make_app, create_user, tmp_path):
    app = make_app(SPOOL_DIR=str(tmp_path / "spool"), INGEST_MAX_DEID_MB=0)
    owner = create_user("patient")
    with app.app_context():
        result = ingest_file(write_dicom(tmp_path / "a.dcm"), owner, deidentify_scope=SCOPE)
        assert result.status is IngestStatus.REJECTED
        assert "too large to de-identify" in result.reason
        assert db.session.scalar(select(func.count()).select_from(Instance)) == 0
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_bad_scope_is_refused_before_anything_is_read(app, owner, tmp_path):
    with app.app_context(), pytest.raises(ValueError, match="scope"):
        ingest_file(write_dicom(tmp_path / "a.dcm"), owner, deidentify_scope="")


# --- the mapper -------------------------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_mapper_rows_are_consistent_per_scope_and_lead_back(app, owner):
    with app.app_context():
        mapper = DeidMapper(SCOPE, owner.id)
        uid = mapper.replacement("uid", "1.2.3")
        assert uid.startswith("2.25.") and len(uid) <= 64
        assert DeidMapper(SCOPE, owner.id).replacement("uid", "1.2.3") == uid
        assert DeidMapper("case-2", owner.id).replacement("uid", "1.2.3") != uid
        pseudonym = mapper.replacement("patient_id", "MRN-1")
        db.session.commit()
        assert original_for(SCOPE, "uid", uid) == "1.2.3"
        assert original_for(SCOPE, "patient_id", pseudonym) == "MRN-1"
        row = db.session.scalars(select(DeidMapping).where(DeidMapping.replacement == uid)).one()
        assert (row.scope, row.kind, row.owner_id) == (SCOPE, "uid", owner.id)


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_concurrent_ingests_of_one_study_agree_on_its_replacements(app, owner, tmp_path):
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(6)]
    results, errors = [], []

    def worker(batch):
        try:
            with app.app_context():
                results.extend(ingest_file(p, owner, deidentify_scope=SCOPE) for p in batch)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(paths[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [r.status for r in results] == [IngestStatus.ACCEPTED] * 6
    assert len({r.study_instance_uid for r in results}) == 1
    with app.app_context():
        rows = db.session.scalars(
            select(DeidMapping).where(DeidMapping.original == STUDY_UID)
        ).all()
        assert len(rows) == 1
        assert db.session.scalar(select(func.count()).select_from(Study)) == 1


def test_replacements_are_random_not_derived_from_the_original():
    assert new_replacement("uid") != new_replacement("uid")
    assert len(new_replacement("accession")) <= 16
    with pytest.raises(ValueError):
        new_replacement("colour")


# --- the table and the profile without ingest -------------------------------------------
def test_every_table_code_resolves_to_one_action():
    assert {resolve_action(code) for code in BASIC_PROFILE.values()} <= {
        "X",
        "Z",
        "D",
        "U",
        "K",
        "U*",
    }
    assert resolve_action("X/Z") == "Z" and resolve_action("X/Z/D") == "D"
    assert resolve_action("C") == "D"
    with pytest.raises(ValueError):
        resolve_action("Q")


@pytest.mark.parametrize(
    ("tag", "action"),
    [
        (0x00100010, "Z"),  # Patient's Name
        (0x00100030, "Z"),  # Patient's Birth Date
        (0x00101010, "X"),  # Patient's Age
        (0x0020000D, "U"),  # Study Instance UID
        (0x00080080, "D"),  # Institution Name (X/Z/D)
        (0x00081140, "U*"),  # Referenced Image Sequence
        (0x00090010, "X"),  # a private creator
        (0x60003000, "X"),  # Overlay Data
        (0x50000005, "X"),  # a curve attribute
        (0x00280030, "K"),  # Pixel Spacing: not listed
    ],
)
def test_action_for(tag, action):
    assert action_for(tag) == action


def test_deidentify_works_on_a_dataset_in_memory():
    ds = make_dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    mapper = MemoryMapper()
    deidentify(ds, mapper)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert mapper.replacements["uid", STUDY_UID] == ds.StudyInstanceUID
    assert ds.PatientName == ds.PatientID == mapper.replacements["patient_id", "MRN-0001"]
