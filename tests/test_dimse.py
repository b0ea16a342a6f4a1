"""DIMSE: the C-ECHO / C-STORE listener against pynetdicom and DCMTK peers, and node commands.

The listener runs for real on loopback in a background thread (once per
module on SQLite, once on PostgreSQL, once as the ``flask dicom listen``
process); peers are pynetdicom SCUs and DCMTK's ``echoscu`` and ``storescu``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import upgrade
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from portal import create_app
from portal.audit.models import AuditEvent
from portal.auth import operations
from portal.auth.models import User
from portal.cases import operations as case_operations
from portal.cases.models import Case
from portal.cases.reading_copies import make_reading_copies
from portal.dimse import nodes
from portal.dimse.contexts import STORAGE_TRANSFER_SYNTAXES
from portal.dimse.listener import DicomListener, disable_nagle
from portal.dimse.models import RemoteNode
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.models import Instance, Study
from tests import case_support, harness
from tests.conftest import base_config
from tests.ingest_support import STUDY_UID, clear_index, index_counts, stored_keys, write_dicom

NODE = "MODALITY"
CALLED = "OVERREAD"
ROOT = Path(__file__).resolve().parent.parent
DCMTK_BIN = Path("/usr/bin")
DCMTK_HINT = "DCMTK is missing: run scripts/install-system-deps.sh (Debian package dcmtk)"

# One bundled pydicom file per transfer syntax the listener accepts; a tuple
# names a file to copy with changed attributes (no bundled file fits as is).
SAMPLES: dict[UID, str | tuple[str, dict]] = {
    ImplicitVRLittleEndian: "rtplan.dcm",
    ExplicitVRLittleEndian: "CT_small.dcm",
    ExplicitVRBigEndian: "MR_small_bigendian.dcm",
    DeflatedExplicitVRLittleEndian: "image_dfl.dcm",
    JPEGBaseline8Bit: "SC_rgb_jpeg_dcmtk.dcm",
    JPEGExtended12Bit: "JPEG-lossy.dcm",
    # Process 14 with selection value 1 is also a valid process 14 stream.
    JPEGLossless: ("SC_rgb_jpeg_gdcm.dcm", {"TransferSyntaxUID": JPEGLossless}),
    JPEGLosslessSV1: "SC_rgb_jpeg_gdcm.dcm",
    JPEGLSLossless: "MR_small_jpeg_ls_lossless.dcm",
    # The bundled near-lossless files have no study or series UID: give them one.
    JPEGLSNearLossless: (
        "JPEGLSNearLossless_16.dcm",
        {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()},
    ),
    JPEG2000Lossless: "MR_small_jp2klossless.dcm",
    JPEG2000: "JPEG2000.dcm",
    RLELossless: "MR_small_RLE.dcm",
}


@dataclass(frozen=True)
class Running:
    app: Flask
    port: int
    owner: User


# --- helpers ------------------------------------------------------------------------
def register_node(app: Flask, ae_title: str = NODE, email: str = "pacs@example.org") -> User:
    """Create an account and a remote node pushing for it; return the account."""
    with app.app_context():
        user = operations.create_user(email, "PACS owner", "physician", "long enough password")
        nodes.add_node(ae_title, email)
        db.session.commit()
        db.session.refresh(user)
        db.session.expunge(user)
    return user


@contextmanager
def listening(app: Flask) -> Iterator[int]:
    """Run a listener for ``app`` on a free loopback port; yield the port."""
    listener = DicomListener(app, CALLED)
    _, port = listener.start("127.0.0.1", 0)
    try:
        yield port
    finally:
        listener.stop(grace=5)


@contextmanager
def association(port: int, files: list[Path] = (), calling: str = NODE) -> Iterator:
    """Open an association proposing each file's SOP class in its own transfer syntax."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for path in files:
        meta = read_file_meta_info(path)
        ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=CALLED, evt_handlers=[(evt.EVT_CONN_OPEN, disable_nagle)]
    )
    assert assoc.is_established, "the listener did not accept the association"
    try:
        yield assoc
    finally:
        assoc.release()


def store(port: int, path: Path) -> Dataset:
    """C-STORE one file in an association of its own; return the response status."""
    with association(port, [path]) as assoc:
        return assoc.send_c_store(path)


def sample(transfer_syntax: UID, tmp_path: Path) -> Path:
    """Return a file for ``transfer_syntax`` from :data:`SAMPLES`."""
    entry = SAMPLES[transfer_syntax]
    if isinstance(entry, str):
        return Path(get_testdata_file(entry))
    name, changes = entry
    return derived(name, tmp_path, **changes)


def derived(name: str, tmp_path: Path, **changes) -> Path:
    """Copy bundled file ``name`` with attributes (file meta included) set to ``changes``."""
    ds = dcmread(get_testdata_file(name))
    for keyword, value in changes.items():
        setattr(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
    path = tmp_path / f"derived-{name}"
    ds.save_as(path, enforce_file_format=True)
    return path


def data_set_bytes(part10: bytes) -> bytes:
    """Return what follows the file meta information (its length is in (0002,0000))."""
    assert part10[128:136] == b"DICM\x02\x00\x00\x00"
    (meta_length,) = struct.unpack_from("<I", part10, 140)
    return part10[144 + meta_length :]


def stored(app: Flask, sop_instance_uid: str) -> tuple[Instance, bytes, int]:
    """Return the index row of an instance, its blob and its study's owner id."""
    with app.app_context():
        instance = db.session.scalars(
            select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
        ).one()
        with get_storage().open(instance.storage_key) as blob:
            content = blob.read()
        owner_id = instance.series.study.owner_id
        db.session.expunge(instance)
    assert hashlib.sha256(content).hexdigest() == instance.sha256
    return instance, content, owner_id


def assert_stored_as_sent(app: Flask, path: Path, owner: User) -> Instance:
    """The blob holds the sent data set byte for byte, in its transfer syntax, for ``owner``."""
    sent = dcmread(path, stop_before_pixels=True)
    instance, blob, owner_id = stored(app, sent.SOPInstanceUID)
    assert blob[:128] == bytes(128)
    assert instance.transfer_syntax_uid == sent.file_meta.TransferSyntaxUID
    assert data_set_bytes(blob) == data_set_bytes(path.read_bytes())
    assert owner_id == owner.id
    return instance


def send_one_study_concurrently(port: int, tmp_path: Path) -> list[int]:
    """Send 8 instances of one study (2 series) over 4 simultaneous associations."""
    paths = [
        write_dicom(tmp_path / f"{n}.dcm", SeriesInstanceUID=f"{STUDY_UID}.{n % 2 + 1}")
        for n in range(8)
    ]

    def send(batch: list[Path]) -> list[int]:
        with association(port, batch[:1]) as assoc:
            return [assoc.send_c_store(path).Status for path in batch]

    with ThreadPoolExecutor(4) as pool:
        return [
            status
            for answers in pool.map(send, [paths[i::4] for i in range(4)])
            for status in answers
        ]


def audit_events(app: Flask, action: str, wait_for: int = 0) -> list[AuditEvent]:
    """Return the audit events named ``action``, waiting up to 5 s for ``wait_for`` of them.

    The listener audits when an association ends, just after answering the release.
    """
    deadline = time.monotonic() + 5
    while True:
        with app.app_context():
            events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
            db.session.expunge_all()
        if len(events) >= wait_for or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


# --- fixtures -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite_listener(tmp_path_factory) -> Iterator[Running]:
    """One listener on a migrated SQLite app for the module's tests."""
    tmp = tmp_path_factory.mktemp("dimse")
    app = create_app(base_config(tmp, f"sqlite:///{tmp / 'overread.db'}"))
    with app.app_context():
        upgrade()
    owner = register_node(app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)  # restored afterwards
        with listening(app) as port:
            yield Running(app, port, owner)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def running(sqlite_listener) -> Running:
    """The module's listener, with an empty study index."""
    with sqlite_listener.app.app_context():
        clear_index()
    return sqlite_listener


@pytest.fixture(autouse=True)
def _send_files_unchanged(monkeypatch):
    """Make pynetdicom SCUs send a file's data set as it is, so blobs compare byte for byte."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture(scope="module")
def dcmtk() -> Callable[..., subprocess.CompletedProcess]:
    """Return a runner for DCMTK's tools; fail (never skip) when DCMTK is not installed.

    The tools are called by their Debian path: pynetdicom installs its own
    ``echoscu`` and ``storescu`` into the virtualenv, ahead on ``PATH``.
    """

    def run(tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(DCMTK_BIN / tool), *args], capture_output=True, text=True, timeout=30, check=False
        )

    for tool in ("echoscu", "storescu"):
        if not (DCMTK_BIN / tool).is_file() or "dcmtk" not in run(tool, "--version").stdout:
            pytest.fail(DCMTK_HINT)
    return run


# --- pynetdicom peers ------------------------------------------------------------
def test_answers_c_echo(running):
    with association(running.port) as assoc:
        assert assoc.send_c_echo().Status == 0x0000


def test_every_accepted_transfer_syntax_has_a_sample():
    assert set(SAMPLES) == set(STORAGE_TRANSFER_SYNTAXES)


@pytest.mark.parametrize("transfer_syntax", list(SAMPLES), ids=lambda uid: uid.name)
def test_stores_each_transfer_syntax_as_sent(running, tmp_path, transfer_syntax):
    path = sample(transfer_syntax, tmp_path)
    assert read_file_meta_info(path).TransferSyntaxUID == transfer_syntax

    assert store(running.port, path).Status == 0x0000

    assert_stored_as_sent(running.app, path, running.owner)
    with running.app.app_context():
        assert index_counts()["instances"] == 1


def test_duplicate_is_success_and_stored_once(running):
    path = Path(get_testdata_file("CT_small.dcm"))

    assert store(running.port, path).Status == 0x0000
    assert store(running.port, path).Status == 0x0000

    with running.app.app_context():
        assert index_counts()["instances"] == 1


def test_conflict_fails_with_duplicate_sop_instance_and_keeps_first(running, tmp_path):
    first = Path(get_testdata_file("CT_small.dcm"))
    other = derived("CT_small.dcm", tmp_path, StudyDescription="another file, same UID")
    assert store(running.port, first).Status == 0x0000

    answer = store(running.port, other)

    assert answer.Status == 0x0111
    assert "already stored" in answer.ErrorComment
    assert_stored_as_sent(running.app, first, running.owner)


def _truncated(tmp_path: Path) -> Path:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    return _written(tmp_path / "truncated.dcm", data[: len(data) // 2])


def _garbage(tmp_path: Path) -> Path:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    meta_end = len(data) - len(data_set_bytes(data))
    return _written(tmp_path / "garbage.dcm", data[:meta_end] + b"\x08\x00\x16\x00" + b"\xff" * 64)


def _no_study_uid(tmp_path: Path) -> Path:
    return write_dicom(tmp_path / "no-study.dcm", StudyInstanceUID=None)


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_bad", [_truncated, _garbage, _no_study_uid])
def test_bad_data_is_refused_and_nothing_stored(running, tmp_path, make_bad):
    answer = store(running.port, make_bad(tmp_path))

    assert 0xC000 <= answer.Status <= 0xCFFF
    assert answer.ErrorComment
    with running.app.app_context():
        assert index_counts()["instances"] == 0
        assert stored_keys() == []


def test_storage_failure_answers_out_of_resources(running, caplog):
    blobs = Path(running.app.config["STORAGE_URL"].removeprefix("file://")) / "instances"
    shutil.rmtree(blobs, ignore_errors=True)  # empty folders: the index was cleared
    blobs.write_bytes(b"")  # the store's instance folder is now a file: writes fail
    try:
        answer = store(running.port, Path(get_testdata_file("CT_small.dcm")))
    finally:
        blobs.unlink()

    assert answer.Status == 0xA700
    assert "C-STORE from MODALITY failed" in caplog.text
    assert "CompressedSamples" not in caplog.text  # the patient's name
    with running.app.app_context():
        assert index_counts()["instances"] == 0


def test_one_audit_event_per_study_when_the_association_ends(running):
    ct, mr = (Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm"))
    before = len(audit_events(running.app, "study.ingested"))
    with association(running.port, [ct, mr]) as assoc:
        statuses = [assoc.send_c_store(path).Status for path in (ct, ct, mr)]
    assert statuses == [0, 0, 0]

    events = audit_events(running.app, "study.ingested", wait_for=before + 2)[before:]

    details = sorted(event.details for event in events)
    assert len(events) == 2
    assert (
        '"accepted": 1, "conflict": 0, "duplicate": 1, "via": "cstore"' in details[0] + details[1]
    )
    assert {event.actor_id for event in events} == {running.owner.id}


@pytest.mark.parametrize("calling", ["STRANGER", "RETIRED"])
def test_unknown_or_inactive_calling_ae_is_rejected_and_audited(running, calling):
    if calling == "RETIRED":
        with running.app.app_context():
            if nodes.find_node(calling) is None:
                nodes.add_node(calling, "pacs@example.org")
            nodes.find_node(calling).active = False
            db.session.commit()
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)

    assoc = ae.associate("127.0.0.1", running.port, ae_title=CALLED)

    assert assoc.is_rejected and not assoc.is_established
    refused = audit_events(running.app, "dimse.refused", wait_for=1)
    assert f"ae_title:{calling}" in {event.target for event in refused}


# --- DCMTK peers -------------------------------------------------------------------
def test_dcmtk_echoscu(running, dcmtk):
    done = dcmtk("echoscu", "-aet", NODE, "-aec", CALLED, "127.0.0.1", str(running.port))
    assert done.returncode == 0, done.stderr


def test_dcmtk_echoscu_from_unknown_ae_is_rejected(running, dcmtk):
    done = dcmtk("echoscu", "-aet", "NOBODY", "-aec", CALLED, "127.0.0.1", str(running.port))
    assert done.returncode != 0
    assert "calling ae title not recogni" in done.stderr.lower()  # -zed or -sed


def assert_stored_from_dcmtk(running: Running, path: Path) -> Instance:
    """The instance is indexed for the node's owner with the sent pixel data.

    DCMTK re-encodes what it sends, and may transcode between uncompressed
    syntaxes, so the check is on content rather than bytes.
    """
    sent = dcmread(path)
    instance, blob, owner_id = stored(running.app, sent.SOPInstanceUID)
    assert owner_id == running.owner.id
    assert dcmread(BytesIO(blob)).get("PixelData") == sent.get("PixelData")
    syntax = sent.file_meta.TransferSyntaxUID
    if syntax.is_compressed or syntax.is_deflated:
        assert instance.transfer_syntax_uid == syntax
    return instance


def test_dcmtk_storescu_sends_a_batch_in_one_association(running, dcmtk):
    files = [
        Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
    ]

    done = dcmtk(
        "storescu", "-aet", NODE, "-aec", CALLED, "127.0.0.1", str(running.port), *map(str, files)
    )

    assert done.returncode == 0, done.stderr
    for path in files:
        assert_stored_from_dcmtk(running, path)


@pytest.mark.parametrize(
    ("option", "name"),
    [
        ("--propose-deflated", "image_dfl.dcm"),
        ("--propose-jpeg8", "SC_rgb_jpeg_dcmtk.dcm"),
        ("--propose-lossless", "SC_rgb_jpeg_gdcm.dcm"),
        ("--propose-jls-lossless", "MR_small_jpeg_ls_lossless.dcm"),
        ("--propose-j2k-lossy", "JPEG2000.dcm"),
        ("--propose-rle", "MR_small_RLE.dcm"),
    ],
)
def test_dcmtk_storescu_compressed(running, dcmtk, option, name):
    path = Path(get_testdata_file(name))

    done = dcmtk(
        "storescu", option, "-aet", NODE, "-aec", CALLED, "127.0.0.1", str(running.port), str(path)
    )

    assert done.returncode == 0, done.stderr
    assert_stored_from_dcmtk(running, path)


# --- PostgreSQL -----------------------------------------------------------------
def test_stores_on_postgresql(make_app, tmp_path):
    app = make_app("postgresql")
    owner = register_node(app)
    files = [Path(get_testdata_file(name)) for name in ("JPEG2000.dcm", "image_dfl.dcm")]
    with listening(app) as port, association(port, files) as assoc:
        statuses = [assoc.send_c_store(path).Status for path in (*files, files[0])]

    assert statuses == [0, 0, 0]
    for path in files:
        assert_stored_as_sent(app, path, owner)
    assert len(audit_events(app, "study.ingested", wait_for=2)) == 2
    with listening(app) as port:
        assert send_one_study_concurrently(port, tmp_path) == [0] * 8


# --- flask dicom listen, as a process --------------------------------------------------
def test_listen_command_serves_and_stops_on_sigterm(make_app, tmp_path):
    app = make_app()
    owner = register_node(app)
    port = harness.free_port()
    env = {
        **os.environ,
        "OVERREAD_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "OVERREAD_STORAGE_URL": app.config["STORAGE_URL"],
        "OVERREAD_SPOOL_DIR": app.config["SPOOL_DIR"],
        "OVERREAD_SECRET_KEY": app.config["SECRET_KEY"],
    }
    command = [sys.executable, "-m", "flask", "--app", "app", "dicom", "listen"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--ae-title", CALLED, "--host", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        harness.wait_for_port(port)
        path = Path(get_testdata_file("JPEG2000.dcm"))
        assert store(port, path).Status == 0x0000
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)

    assert process.returncode == 0, errors
    assert "SIGTERM: stopping" in errors
    assert_stored_as_sent(app, path, owner)
    assert list(Path(app.config["SPOOL_DIR"]).iterdir()) == []


# --- flask dicom nodes ---------------------------------------------------------------
def test_nodes_add_list_remove_are_audited(app, runner, create_user):
    user = create_user("physician", email="ct@example.org")

    added = runner.invoke(
        args=[
            "dicom",
            "nodes",
            "add",
            " CT SCANNER 1 ",
            "--user",
            user.email,
            "--description",
            "Ward B",
        ]
    )
    listed = runner.invoke(args=["dicom", "nodes", "list"])
    removed = runner.invoke(args=["dicom", "nodes", "remove", "CT SCANNER 1"])

    assert added.exit_code == 0, added.output
    assert "CT SCANNER 1" in listed.output and user.email in listed.output
    assert "Ward B" in listed.output
    assert removed.exit_code == 0, removed.output
    with app.app_context():
        assert db.session.scalars(select(RemoteNode)).all() == []
        actions = [
            e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))
        ]
    assert actions[-2:] == ["dimse.node_added", "dimse.node_removed"]


@pytest.mark.parametrize(
    "title", ["", "    ", "A" * 17, "BACK\\SLASH", "TAB\tTITLE", "NEW\nLINE", "ÜBERSCANNER"]
)
def test_nodes_add_refuses_malformed_ae_titles(app, runner, create_user, title):
    user = create_user("physician")

    result = runner.invoke(args=["dicom", "nodes", "add", title, "--user", user.email])

    assert result.exit_code == 2
    with app.app_context():
        assert db.session.scalars(select(RemoteNode)).all() == []


def test_nodes_add_refuses_unknown_users_and_taken_titles(runner, create_user):
    user = create_user("physician")
    unknown = runner.invoke(args=["dicom", "nodes", "add", "CT1", "--user", "nobody@example.org"])
    first = runner.invoke(args=["dicom", "nodes", "add", "CT1", "--user", user.email])
    again = runner.invoke(args=["dicom", "nodes", "add", "CT1", "--user", user.email])
    missing = runner.invoke(args=["dicom", "nodes", "remove", "CT9"])

    assert unknown.exit_code == 1 and "No active account" in unknown.output
    assert first.exit_code == 0
    assert again.exit_code == 1 and "registered already" in again.output
    assert missing.exit_code == 1 and "No remote node" in missing.output


def test_concurrent_associations_of_one_study(running, tmp_path):
    statuses = send_one_study_concurrently(running.port, tmp_path)

    assert statuses == [0] * 8
    with running.app.app_context():
        assert index_counts() == {"patients": 1, "studies": 1, "series": 2, "instances": 8}


# --- pushing to a case ----------------------------------------------------------------
@pytest.mark.parametrize("deidentify", [False, True], ids=["identified", "de-identified"])
def test_a_node_registered_for_a_case_attaches_what_it_pushes(app, runner, create_user, deidentify):
    physician = create_user("physician", email="referrer@example.org")
    with app.app_context():
        owner = db.session.merge(physician)
        study_id = case_support.ingest_sample(owner, "CT_small.dcm")
        number = case_operations.new_case_number()
        study = db.session.get(Study, study_id)
        copies = make_reading_copies([study], owner, number) if deidentify else {}
        case = case_operations.submit_case(
            owner,
            case_operations.CaseRequest(
                "Compare with the outside MR?",
                "routine",
                [study_id],
                subject_name="Jane Roe",
                deidentify=deidentify,
                reading_copies=copies,
            ),
            number=number,
        )
        db.session.commit()
        case_id = case.id
    added = runner.invoke(
        args=["dicom", "nodes", "add", "WARD MR", "--user", physician.email, "--case", number]
    )
    assert added.exit_code == 0 and f"case {number}" in added.output
    assert f"case {number}" in runner.invoke(args=["dicom", "nodes", "list"]).output

    mr = Path(get_testdata_file("MR_small.dcm"))
    with listening(app) as port, association(port, [mr], calling="WARD MR") as assoc:
        assert assoc.send_c_store(mr).Status == 0
    assert audit_events(app, "case.studies_attached", wait_for=1)
    with app.app_context():
        links = db.session.get(Case, case_id).studies
        assert len(links) == 2
        pushed = next(link for link in links if link.study_id != study_id)
        assert pushed.study.study_instance_uid == dcmread(mr).StudyInstanceUID
        if deidentify:
            copy = pushed.reading_study
            assert copy is not None and copy.study_instance_uid != pushed.study.study_instance_uid
            assert copy.patient.name != pushed.study.patient.name
        else:
            assert pushed.reading_study_id is None


def test_nodes_add_refuses_a_case_of_another_account(app, runner, create_user):
    patient = create_user("patient")
    physician = create_user("physician", email="other@example.org")
    case = case_support.submit(app, patient)
    result = runner.invoke(
        args=["dicom", "nodes", "add", "SNOOP", "--user", physician.email, "--case", case.number]
    )
    assert result.exit_code != 0 and "has no case" in result.output
