"""Ingest of single DICOM files: validation, indexing, deduplication, crash safety."""

from __future__ import annotations

import hashlib
import struct
import threading
import warnings
import zlib
from pathlib import Path
from threading import local

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal import create_app
from portal.audit.models import AuditEvent
from portal.auth import operations
from portal.extensions import db
from portal.storage import get_storage
from portal.studies import batch, dicomfile, index
from portal.studies.ingest import IngestStatus, ingest_file
from portal.studies.models import Instance, Patient, Series, Study
from tests.conftest import base_config
from tests.ingest_support import (
    STUDY_UID,
    app_with_owner,
    clear_index,
    element_offset,
    index_counts,
    make_dataset,
    stored_keys,
    write_dicom,
)

TEST_FILES_ROOT = Path(get_testdata_file("CT_small.dcm")).parent
# pydicom's bundled files Overread refuses, and the reason it gives (a fragment of it).
EXPECTED_REFUSALS = {
    "ExplVR_BigEndNoMeta.dcm": "'DICM' marker",
    "ExplVR_LitEndNoMeta.dcm": "'DICM' marker",
    "no_meta.dcm": "'DICM' marker",
    "rtstruct.dcm": "'DICM' marker",
    "README.txt": "'DICM' marker",
    "crayons.icc": "'DICM' marker",
    "rtplan.dump": "'DICM' marker",
    "rtstruct.dump": "'DICM' marker",
    "test1.json": "'DICM' marker",
    "test_PN.json": "'DICM' marker",
    "zipMR.gz": "'DICM' marker",
    "dicomdirtests/README.txt": "'DICM' marker",
    "dicomdirtests/TINY_ALPHA/README": "'DICM' marker",
    "MR_truncated.dcm": "Pixel Data declares 8192 bytes but only 8130 remain",
    "rtplan_truncated.dcm": "past the end of the file",
    "meta_missing_tsyntax.dcm": "no valid Transfer Syntax UID",
    "JPEGLSNearLossless_08.dcm": "Study Instance UID (0020,000D) is missing",
    "JPEGLSNearLossless_16.dcm": "Study Instance UID (0020,000D) is missing",
    "SC_rgb_jls_lossy_line.dcm": "Study Instance UID (0020,000D) is missing",
    "SC_rgb_jls_lossy_sample.dcm": "Study Instance UID (0020,000D) is missing",
    "UN_sequence.dcm": "SOP Class UID (0008,0016) is missing",
    "empty_charset_LEI.dcm": "SOP Class UID (0008,0016) is missing",
    "nested_priv_SQ.dcm": "SOP Class UID (0008,0016) is missing",
    "no_meta_group_length.dcm": "SOP Class UID (0008,0016) is missing",
    "priv_SQ.dcm": "SOP Class UID (0008,0016) is missing",
}


def _relative(path: str) -> str:
    return Path(path).relative_to(TEST_FILES_ROOT).as_posix()


@pytest.fixture
def owner(create_user):
    return create_user("patient")


@pytest.fixture
def ingest(app, owner):
    """``ingest(path, **kwargs)``: ingest one file as ``owner`` in a fresh app context."""

    def run(path: Path, user=None, **kwargs):
        with app.app_context():
            return ingest_file(path, user or owner, **kwargs)

    return run


# --- every file pydicom ships ---------------------------------------------------------
@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    """One app for the bundled-file sweep; :func:`clear_index` resets it between files."""
    from flask_migrate import upgrade

    root = tmp_path_factory.mktemp("sweep")
    app = create_app(
        {**base_config(root, f"sqlite:///{root / 'sweep.db'}"), "SPOOL_DIR": str(root / "spool")}
    )
    with app.app_context():
        upgrade()
        operations.create_user("sweep@example.org", "Sweep", "physician", "long enough pw")
        db.session.commit()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("path", sorted(get_testdata_files()), ids=_relative)
def test_every_bundled_pydicom_file_is_stored_or_refused_with_a_reason(shared_app, path):
    name = _relative(path)
    with shared_app.app_context():
        clear_index()
        owner = operations.find_user("sweep@example.org")
        result = ingest_file(path, owner)
        if Path(path).is_dir():
            assert (result.status, result.reason) == (IngestStatus.REJECTED, "not a regular file")
        elif Path(path).name.startswith("DICOMDIR"):
            assert result.status is IngestStatus.SKIPPED and "DICOMDIR" in result.reason
        elif name in EXPECTED_REFUSALS or Path(name).name in EXPECTED_REFUSALS:
            expected = EXPECTED_REFUSALS.get(name) or EXPECTED_REFUSALS[Path(name).name]
            assert result.status is IngestStatus.REJECTED
            assert expected in result.reason
        else:
            assert result.status is IngestStatus.ACCEPTED, result.reason
            _assert_indexed_like_pydicom_reads_it(path)


def _assert_indexed_like_pydicom_reads_it(path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own complaints about odd test files
        original = pydicom.dcmread(path)
    instance = db.session.scalars(select(Instance)).one()
    assert instance.sop_instance_uid == original.SOPInstanceUID
    assert instance.transfer_syntax_uid == original.file_meta.TransferSyntaxUID
    assert instance.rows == original.get("Rows")
    assert instance.series.study.study_instance_uid == original.StudyInstanceUID
    raw = Path(path).read_bytes()
    with get_storage().open(instance.storage_key) as blob:
        stored = blob.read()
    assert stored == bytes(128) + raw[128:]
    assert instance.sha256 == hashlib.sha256(stored).hexdigest()
    assert instance.size_bytes == len(raw)


# --- what the index holds ---------------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_a_study_is_indexed_with_its_patient_series_and_instances(app, ingest, owner, tmp_path):
    ct = [write_dicom(tmp_path / f"ct{n}.dcm", InstanceNumber=n) for n in range(3)]
    mr = write_dicom(
        tmp_path / "mr.dcm",
        Modality="MR",
        SeriesInstanceUID=STUDY_UID + ".2",
        SeriesNumber=3,
        NumberOfFrames=1,
        BodyPartExamined="HEAD",
    )
    results = [ingest(path) for path in [*ct, mr]]
    assert [r.status for r in results] == [IngestStatus.ACCEPTED] * 4
    with app.app_context():
        assert index_counts() == {"patients": 1, "studies": 1, "series": 2, "instances": 4}
        study = db.session.scalars(select(Study)).one()
        assert (study.study_instance_uid, study.owner_id) == (STUDY_UID, owner.id)
        assert (study.study_date.isoformat(), study.study_time) == ("2024-02-29", "101500")
        assert (study.accession_number, study.description) == ("ACC42", "CT chest")
        assert study.referring_physician == "Who^Doctor"
        assert study.modalities == ["CT", "MR"]
        patient = study.patient
        assert (patient.patient_id, patient.name, patient.sex) == ("MRN-0001", "Doe^Jane", "F")
        assert patient.birth_date.isoformat() == "1970-01-31"
        mr_series = db.session.scalars(select(Series).where(Series.modality == "MR")).one()
        assert (mr_series.body_part, mr_series.series_number) == ("HEAD", 3)
        instance = mr_series.instances[0]
        assert (instance.rows, instance.columns, instance.number_of_frames) == (8, 8, 1)
        assert instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
        assert instance.size_bytes == mr.stat().st_size


def test_storage_keys_carry_no_uid_or_patient_data(app, ingest, tmp_path):
    path = write_dicom(tmp_path / "a.dcm")
    result = ingest(path)
    with app.app_context():
        key = db.session.scalars(select(Instance.storage_key)).one()
    assert key.startswith("instances/")
    for secret in (result.sop_instance_uid, STUDY_UID, "Doe", "MRN-0001", "ACC42", "a.dcm"):
        assert secret not in key


def test_an_accepted_batch_is_audited_without_patient_data(app, ingest, tmp_path):
    ingest(write_dicom(tmp_path / "a.dcm"))
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "study.ingested")
        ).one()
        study_id = db.session.scalar(select(Study.id))
    assert event.target == f"study:{study_id}"
    assert '"accepted": 1' in event.details
    for secret in ("Doe", "MRN", STUDY_UID, "ACC42"):
        assert secret not in event.details


# --- duplicates and conflicts -----------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_same_sop_instance_is_a_duplicate_and_other_bytes_a_conflict(app, ingest, tmp_path):
    ds = make_dataset()
    first = write_dicom(tmp_path / "first.dcm", ds)
    again = write_dicom(
        tmp_path / "again.dcm",
        make_dataset(SOPInstanceUID=ds.SOPInstanceUID),
        preamble=b"MZ" + bytes(126),
    )
    other = write_dicom(
        tmp_path / "other.dcm",
        make_dataset(SOPInstanceUID=ds.SOPInstanceUID, PatientName="Roe^Rick"),
    )
    assert ingest(first).status is IngestStatus.ACCEPTED
    duplicate, conflict = ingest(again), ingest(other)
    assert duplicate.status is IngestStatus.DUPLICATE
    assert conflict.status is IngestStatus.CONFLICT and "first copy was kept" in conflict.reason
    assert conflict.sop_instance_uid == ds.SOPInstanceUID
    with app.app_context():
        instance = db.session.scalars(select(Instance)).one()
        assert instance.sha256 == hashlib.sha256(bytes(128) + first.read_bytes()[128:]).hexdigest()
        assert len(stored_keys()) == 1
        assert db.session.scalars(select(Patient.name)).all() == ["Doe^Jane"]


def test_another_account_cannot_add_to_or_learn_of_a_study(app, ingest, create_user, tmp_path):
    path = write_dicom(tmp_path / "a.dcm")
    intruder = create_user("physician")
    assert ingest(path).status is IngestStatus.ACCEPTED
    same_file = ingest(path, intruder)
    new_instance = ingest(write_dicom(tmp_path / "b.dcm"), intruder)
    for result in (same_file, new_instance):
        assert result.status is IngestStatus.REJECTED and "another account" in result.reason
    with app.app_context():
        assert index_counts()["instances"] == 1
        assert len(stored_keys()) == 1


def test_a_file_of_another_study_than_expected_is_refused(app, ingest, tmp_path):
    result = ingest(write_dicom(tmp_path / "a.dcm"), expected_study_uid="1.2.3")
    assert result.status is IngestStatus.WRONG_STUDY
    with app.app_context():
        assert index_counts()["instances"] == 0


# --- hostile and broken files --------------------------------------------------------------
def _rejected(result, fragment: str) -> None:
    assert result.status is IngestStatus.REJECTED, result
    assert fragment in result.reason


@pytest.mark.parametrize(
    ("name", "length", "reason"),
    [
        ("CT_small.dcm", 0, "'DICM' marker"),
        ("CT_small.dcm", 131, "'DICM' marker"),
        ("CT_small.dcm", 150, "no valid Transfer Syntax UID"),
        ("CT_small.dcm", 300, "element (0002,0012) declares 18 bytes, past the end"),
        ("CT_small.dcm", 340, "ends inside a data element header"),
        ("CT_small.dcm", 350, "element (0008,0005) declares 10 bytes, past the end"),
        ("CT_small.dcm", 700, "ends inside a data element header"),
        ("CT_small.dcm", 5000, "element (0043,1029) declares 2068 bytes, past the end"),
        ("CT_small.dcm", 39006, "Pixel Data declares 32768 bytes but only 32706 remain"),
        ("CT_small.dcm", 39205, "element (FFFC,FFFC) declares 126 bytes, past the end"),
        ("JPEG2000.dcm", 3108, "a pixel data fragment runs past the end"),
        ("JPEG2000.dcm", 3303, "encapsulated pixel data is cut short"),
        ("MR_small_bigendian.dcm", 9703, "Pixel Data declares 8192 bytes but only 8187 remain"),
        ("image_dfl.dcm", 4437, "deflated data set is cut short"),
    ],
)
def test_a_truncated_file_is_refused(app, ingest, tmp_path, name, length, reason):
    path = tmp_path / "cut.dcm"
    path.write_bytes(Path(get_testdata_file(name)).read_bytes()[:length])
    _rejected(ingest(path), reason)
    with app.app_context():
        assert index_counts()["instances"] == 0 and stored_keys() == []


def _with_sequence(items: int) -> Dataset:
    """Return a dataset with an undefined-length sequence of ``items`` undefined-length items."""
    ds = make_dataset()
    ds.ReferencedImageSequence = Sequence()
    for n in range(items):
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = f"{STUDY_UID}.{n}"
        item.is_undefined_length_sequence_item = True
        ds.ReferencedImageSequence.append(item)
    ds["ReferencedImageSequence"].is_undefined_length = True
    return ds


@pytest.mark.parametrize("into_sequence", [20, 60, 130])
def test_a_file_cut_inside_a_sequence_is_refused(ingest, tmp_path, into_sequence):
    data = write_dicom(tmp_path / "seq.dcm", _with_sequence(2)).read_bytes()
    start = element_offset(data, (0x0008, 0x1140), b"SQ")
    (tmp_path / "cut.dcm").write_bytes(data[: start + into_sequence])
    _rejected(ingest(tmp_path / "cut.dcm"), "damaged or truncated")


def test_a_header_flood_is_refused(ingest, tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "flood.dcm", _with_sequence(2000))
    assert ingest(path).status is IngestStatus.ACCEPTED
    monkeypatch.setattr(dicomfile, "HEADER_READ_LIMIT", 64 * 1024)
    flood = write_dicom(tmp_path / "flood2.dcm", _with_sequence(2001))
    _rejected(ingest(flood), "the header is over 65536 bytes long")


def test_an_oversized_file_meta_group_is_refused(ingest, tmp_path):
    ds = make_dataset()
    path = write_dicom(tmp_path / "meta.dcm", ds)
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = bytes(100_000)
    ds.save_as(path, enforce_file_format=True)
    _rejected(ingest(path), "the header is over 65536 bytes long")


def test_a_file_without_dicm_is_refused(ingest, tmp_path):
    data = bytearray(write_dicom(tmp_path / "a.dcm").read_bytes())
    data[128:132] = b"DICN"
    (tmp_path / "flipped.dcm").write_bytes(data)
    _rejected(ingest(tmp_path / "flipped.dcm"), "'DICM' marker")


def test_a_text_file_is_refused(ingest, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n" * 40)
    _rejected(ingest(tmp_path / "notes.txt"), "not a DICOM file")


def test_a_short_value_declared_past_the_end_is_refused(ingest, tmp_path):
    data = bytearray(write_dicom(tmp_path / "a.dcm", PixelData=None).read_bytes())
    at = element_offset(data, (0x0020, 0x0013), b"IS")  # Instance Number, near the end
    struct.pack_into("<H", data, at + 6, 0xFFF0)
    (tmp_path / "long.dcm").write_bytes(data)
    _rejected(ingest(tmp_path / "long.dcm"), "(0020,0013) declares 65520 bytes, past the end")


def test_a_long_value_declared_past_the_end_is_refused(ingest, tmp_path):
    ds = make_dataset()
    ds.add_new(0x00091010, "OB", b"\x00" * 16)  # a private blob, read by seeking past it
    data = bytearray(write_dicom(tmp_path / "a.dcm", ds).read_bytes())
    struct.pack_into("<L", data, element_offset(data, (0x0009, 0x1010), b"OB") + 8, 2**31)
    (tmp_path / "long.dcm").write_bytes(data)
    _rejected(ingest(tmp_path / "long.dcm"), "(0009,1010) declares 2147483648 bytes")


def test_pixel_data_declared_past_the_end_is_refused(ingest, tmp_path):
    data = bytearray(write_dicom(tmp_path / "a.dcm").read_bytes())
    struct.pack_into("<L", data, element_offset(data, (0x7FE0, 0x0010), b"OW") + 8, 10**6)
    (tmp_path / "long.dcm").write_bytes(data)
    _rejected(ingest(tmp_path / "long.dcm"), "Pixel Data declares 1000000 bytes")


def _deflated_bomb(path: Path, inflated_size: int) -> Path:
    """Write a deflated-transfer-syntax file whose data set inflates to ``inflated_size``."""
    head = write_dicom(path, transfer_syntax=DeflatedExplicitVRLittleEndian, PixelData=None)
    ds = pydicom.dcmread(head)
    body = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_dataset(body, ds)  # explicit VR little endian
    pixels = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, inflated_size)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = [deflater.compress(body.getvalue() + pixels)]
    zeros = bytes(1024 * 1024)
    for _ in range(inflated_size // len(zeros)):
        compressed.append(deflater.compress(zeros))
    compressed.append(deflater.flush())
    meta_end = len(head.read_bytes()) - len(_deflated_part(head))
    path.write_bytes(head.read_bytes()[:meta_end] + b"".join(compressed))
    return path


def _deflated_part(path: Path) -> bytes:
    from portal.studies.dicomfile import read_file_meta

    with open(path, "rb") as fp:
        _, start = read_file_meta(fp)
        fp.seek(start)
        return fp.read()


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it(make_app, tmp_path, monkeypatch):
    app, owner = app_with_owner(make_app, tmp_path, INGEST_MAX_INFLATE_MB=2)
    bomb = _deflated_bomb(tmp_path / "bomb.dcm", 64 * 1024 * 1024)
    assert bomb.stat().st_size < 200_000

    def inflate_whole(*args, **kwargs):
        raise AssertionError("pydicom inflated the data set in memory")

    monkeypatch.setattr(pydicom.filereader.zlib, "decompress", inflate_whole)
    with app.app_context():
        result = ingest_file(bomb, owner)
        assert index_counts()["instances"] == 0
    _rejected(result, "inflates past the 2.0 MB limit")


def test_a_small_deflated_file_is_accepted(ingest, tmp_path):
    path = _deflated_bomb(tmp_path / "ok.dcm", 1024 * 1024 * 1)
    assert ingest(path).status is IngestStatus.ACCEPTED


@pytest.mark.parametrize(
    ("rows", "columns", "frames"),
    [(65535, 65535, None), (4096, 4096, "1000"), (512, 512, "99999999999")],
)
def test_a_pixel_flood_is_refused(ingest, tmp_path, rows, columns, frames):
    path = write_dicom(tmp_path / "flood.dcm", Rows=rows, Columns=columns, NumberOfFrames=frames)
    _rejected(ingest(path), "the image is too large")


def test_an_encapsulated_pixel_flood_is_refused(ingest, tmp_path):
    ds = make_dataset(
        Rows=60000, Columns=60000, NumberOfFrames="50", BitsStored=8, BitsAllocated=8, HighBit=7
    )
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = write_dicom(tmp_path / "flood.dcm", ds, transfer_syntax=JPEGBaseline8Bit)
    _rejected(ingest(path), "60000 x 60000 pixels x 50 frames")


def test_the_pixel_cap_comes_from_configuration(make_app, tmp_path):
    app, owner = app_with_owner(make_app, tmp_path, INGEST_MAX_PIXELS=63)
    with app.app_context():
        result = ingest_file(write_dicom(tmp_path / "a.dcm"), owner)
    _rejected(result, "8 x 8 pixels x 1 frames x 1 samples = 64 values, over the 63 limit")


def test_a_file_over_the_size_cap_is_refused(make_app, tmp_path):
    app, owner = app_with_owner(make_app, tmp_path, INGEST_MAX_FILE_MB=1)
    path = write_dicom(
        tmp_path / "big.dcm", Rows=1024, Columns=1024, PixelData=bytes(2 * 1024 * 1024)
    )
    with app.app_context():
        result = ingest_file(path, owner)
        assert index_counts()["instances"] == 0
    _rejected(result, "larger than the 1.0 MB limit")


@pytest.mark.parametrize(
    "keyword", ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"]
)
def test_a_file_missing_a_required_uid_is_refused(ingest, tmp_path, keyword):
    ds = make_dataset(**{keyword: None})
    _rejected(ingest(write_dicom(tmp_path / "a.dcm", ds)), "is missing")


def test_a_malformed_uid_is_refused(ingest, tmp_path):
    with pydicom.config.disable_value_validation():
        path = write_dicom(tmp_path / "a.dcm", StudyInstanceUID="1.2.abc")
    _rejected(ingest(path), "Study Instance UID (0020,000D) is not a valid UID")


def test_the_stored_copy_has_its_preamble_zeroed(app, ingest, tmp_path):
    polyglot = b"MZ\x90\x00" + b"This program cannot be run in DOS mode." + bytes(85)
    path = write_dicom(tmp_path / "polyglot.dcm", preamble=polyglot)
    assert path.read_bytes()[:2] == b"MZ"
    assert ingest(path).status is IngestStatus.ACCEPTED
    with app.app_context():
        instance = db.session.scalars(select(Instance)).one()
        with get_storage().open(instance.storage_key) as blob:
            stored = blob.read()
    assert stored[:132] == bytes(128) + b"DICM"
    assert stored[132:] == path.read_bytes()[132:]
    assert instance.sha256 == hashlib.sha256(stored).hexdigest()


def test_the_spool_folder_is_left_empty(app, ingest, tmp_path):
    ingest(write_dicom(tmp_path / "a.dcm"))
    ingest(tmp_path / "a.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)
    ingest(tmp_path / "bad.dcm")
    assert list((tmp_path / "spool").iterdir()) == []


# --- crash safety ------------------------------------------------------------------------
def test_a_failed_commit_removes_the_blob(app, owner, tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm")
    with app.app_context():
        storage, session_class = get_storage(), type(db.session())
        put_keys, real_put, real_commit = [], storage.put_files, session_class.commit

        def put_files(blobs, **kwargs):
            real_put(blobs, **kwargs)
            put_keys.extend(key for key, _ in blobs)

        def commit(session):
            if put_keys:
                raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
            real_commit(session)

        monkeypatch.setattr(storage, "put_files", put_files)
        monkeypatch.setattr(session_class, "commit", commit)
        with pytest.raises(OperationalError):
            ingest_file(path, owner)
        monkeypatch.undo()
        assert len(put_keys) == 1 and not storage.exists(put_keys[0])
        assert index_counts()["instances"] == 0


# --- concurrency -------------------------------------------------------------------------
def _in_threads(app, jobs) -> list:
    """Run each job (a callable) in its own thread and app context; return their results."""
    results: list = [None] * len(jobs)
    errors: list = []

    def run(n, job):
        try:
            with app.app_context():
                results[n] = job()
        except BaseException as exc:  # handed back to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_parallel_ingest_of_one_study_makes_one_study_and_series(app, owner, tmp_path):
    files = [
        write_dicom(tmp_path / f"{n}.dcm", SeriesInstanceUID=f"{STUDY_UID}.{n % 2}")
        for n in range(16)
    ]
    batches = [files[0::2], files[1::2]]
    results = _in_threads(
        app, [lambda batch=batch: [ingest_file(path, owner) for path in batch] for batch in batches]
    )
    assert {r.status for batch in results for r in batch} == {IngestStatus.ACCEPTED}
    with app.app_context():
        assert index_counts() == {"patients": 1, "studies": 1, "series": 2, "instances": 16}


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
@pytest.mark.parametrize("racing", [Patient, Study, Series], ids=lambda model: model.__name__)
def test_racing_inserts_of_a_parent_row_meet_at_the_constraint(
    app, owner, tmp_path, monkeypatch, racing
):
    """Both threads miss the row, then both insert it: the loser must reuse the winner's."""
    if racing is Series:  # the patient and study exist already; the new series races
        assert ingest_file_in(app, write_dicom(tmp_path / "seed.dcm"), owner).status == "accepted"
    names = ["Doe^Jane", "Doe^Jane" if racing is Patient else "Roe^Rick"]
    files = [
        write_dicom(tmp_path / f"{n}.dcm", SeriesInstanceUID=STUDY_UID + ".9", PatientName=name)
        for n, name in enumerate(names)
    ]
    both_missed, real_find, waited = threading.Barrier(2, timeout=20), index._find, local()

    def find(model, key):
        row = real_find(model, key)
        if row is None and model is racing and not getattr(waited, "done", False):
            waited.done = True
            both_missed.wait()
        return row

    monkeypatch.setattr(index, "_find", find)
    results = _in_threads(app, [lambda path=path: ingest_file(path, owner) for path in files])
    assert [r.status for r in results] == [IngestStatus.ACCEPTED] * 2
    with app.app_context():
        counts = index_counts()
        assert (counts["studies"], counts["series"]) == (1, 1 if racing is not Series else 2)
        assert counts["patients"] == (1 if racing is not Study else 2)


def ingest_file_in(app, path: Path, owner):
    with app.app_context():
        return ingest_file(path, owner)


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_racing_copies_of_one_instance_store_it_once(app, owner, tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm")
    both_stored, real_put = threading.Barrier(2, timeout=20), batch._put_blobs
    waited = threading.local()

    def put_blobs(*args):
        real_put(*args)
        if not getattr(waited, "done", False):
            waited.done = True
            both_stored.wait()  # both blobs are stored; both rows are still to come

    monkeypatch.setattr(batch, "_put_blobs", put_blobs)
    results = _in_threads(app, [lambda: ingest_file(path, owner)] * 2)
    assert sorted(r.status for r in results) == [IngestStatus.ACCEPTED, IngestStatus.DUPLICATE]
    with app.app_context():
        assert index_counts()["instances"] == 1
        assert len(stored_keys()) == 1
