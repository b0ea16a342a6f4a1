"""Ingest of zip archives and folders: hostile archives, CD exports, mixed batches."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from portal.studies import ingest as ingest_module
from portal.studies.ingest import IngestStatus, current_limits, ingest_paths, ingest_zip
from portal.studies.zipentry import ingest_entry
from tests.ingest_support import (
    app_with_owner,
    index_counts,
    make_zip,
    patch_zip_entry,
    write_dicom,
)

ACCEPTED, REJECTED, SKIPPED = IngestStatus.ACCEPTED, IngestStatus.REJECTED, IngestStatus.SKIPPED
TINY_ALPHA = Path(get_testdata_file("DICOMDIR", read=False)).parent / "TINY_ALPHA"


@pytest.fixture
def owner(create_user):
    return create_user("patient")


@pytest.fixture
def dicoms(tmp_path):
    """``dicoms(n)``: the bytes of ``n`` distinct valid DICOM files of one study."""

    def make(count: int) -> list[bytes]:
        return [
            write_dicom(tmp_path / "gen" / f"{n}.dcm", InstanceNumber=n).read_bytes()
            for n in range(count)
        ]

    return make


def _statuses(results) -> dict[str, IngestStatus]:
    return {result.source: result.status for result in results}


def test_a_zip_with_nested_folders_and_a_dicomdir_is_ingested(app, owner, dicoms, tmp_path):
    one, two, three = dicoms(3)
    archive = make_zip(
        tmp_path / "cd.zip",
        {
            "CD/DICOMDIR": (TINY_ALPHA / "DICOMDIR").read_bytes(),
            "CD/DICOM/PA0/ST0/SE0/IM0": one,
            "CD/DICOM/PA0/ST0/SE0/IM1": two,
            "CD/DICOM/PA0/ST0/SE1/IM0": three,
            "__MACOSX/CD/._DICOMDIR": b"\x00\x05\x16\x07 resource fork",
            "CD/.DS_Store": b"Bud1",
        },
    )
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(zipfile.ZipInfo("CD/EMPTY/"), b"")
    with app.app_context():
        results = ingest_zip(archive, owner)
        assert index_counts()["instances"] == 3
    assert _statuses(results) == {
        "cd.zip/CD/DICOMDIR": SKIPPED,
        "cd.zip/CD/DICOM/PA0/ST0/SE0/IM0": ACCEPTED,
        "cd.zip/CD/DICOM/PA0/ST0/SE0/IM1": ACCEPTED,
        "cd.zip/CD/DICOM/PA0/ST0/SE1/IM0": ACCEPTED,
    }


def test_one_bad_file_does_not_spoil_the_good_ones(app, owner, dicoms, tmp_path):
    good = dicoms(3)
    archive = make_zip(
        tmp_path / "mixed.zip",
        {
            "a.dcm": good[0],
            "notes.txt": b"Please read urgently",
            "cut.dcm": good[1][:300],
            "b.dcm": good[1],
            "c.dcm": good[2],
        },
    )
    with app.app_context():
        results = ingest_zip(archive, owner)
        assert index_counts()["instances"] == 3
    statuses = _statuses(results)
    assert [statuses[f"mixed.zip/{n}"] for n in ("a.dcm", "b.dcm", "c.dcm")] == [ACCEPTED] * 3
    assert statuses["mixed.zip/notes.txt"] is statuses["mixed.zip/cut.dcm"] is REJECTED
    assert all(r.reason for r in results if r.status is REJECTED)


@pytest.mark.parametrize(
    "name",
    ["../escape.dcm", "/etc/escape.dcm", "CD/../../escape.dcm", "C:/escape.dcm", "..\\escape.dcm"],
)
def test_zip_slip_entries_are_refused_and_nothing_is_written(app, owner, dicoms, tmp_path, name):
    hostile, good = dicoms(2)
    (tmp_path / "work").mkdir()
    archive = make_zip(tmp_path / "work" / "slip.zip", {name: hostile, "ok.dcm": good})
    with app.app_context():
        results = ingest_zip(archive, owner)
        assert index_counts()["instances"] == 1
    statuses = _statuses(results)
    assert statuses["slip.zip/ok.dcm"] is ACCEPTED
    assert statuses[f"slip.zip/{name}"] is REJECTED
    assert "'..'" in results[0].reason
    assert not list(tmp_path.rglob("escape.dcm"))


def test_a_zip_bomb_is_refused_from_its_central_directory(make_app, dicoms, tmp_path, monkeypatch):
    app, owner = app_with_owner(make_app, tmp_path, INGEST_ZIP_MAX_TOTAL_MB=1)
    archive = make_zip(
        tmp_path / "bomb.zip",
        {"ok.dcm": dicoms(1)[0], "zeros.dcm": bytes(128) + b"DICM" + bytes(8 * 1024 * 1024)},
    )
    assert archive.stat().st_size < 64 * 1024

    def extract(*args, **kwargs):
        raise AssertionError("an entry was extracted")

    monkeypatch.setattr(zipfile.ZipFile, "open", extract)
    with app.app_context():
        results = ingest_zip(archive, owner)
    assert len(results) == 1 and results[0].status is REJECTED
    assert "would expand to 8.0 MB, over the 1.0 MB limit" in results[0].reason


def test_a_zip_with_too_many_entries_is_refused(make_app, dicoms, tmp_path):
    app, owner = app_with_owner(make_app, tmp_path, INGEST_ZIP_MAX_MEMBERS=3)
    archive = make_zip(tmp_path / "many.zip", {f"{n}.dcm": b for n, b in enumerate(dicoms(4))})
    with app.app_context():
        results = ingest_zip(archive, owner)
        assert index_counts()["instances"] == 0
    assert [r.status for r in results] == [REJECTED]
    assert "holds 4 entries; at most 3" in results[0].reason


def test_an_entry_that_expands_past_its_declared_size_is_refused(app, owner, dicoms, tmp_path):
    big = write_dicom(
        tmp_path / "big.dcm", Rows=512, Columns=512, PixelData=bytes(512 * 512 * 2)
    ).read_bytes()
    archive = make_zip(tmp_path / "liar.zip", {"liar.dcm": big, "ok.dcm": dicoms(1)[0]})
    patch_zip_entry(archive, "liar.dcm", file_size=1000)
    with app.app_context():
        results = ingest_zip(archive, owner)
        assert index_counts()["instances"] == 1
    liar = _statuses(results)
    assert liar["liar.zip/liar.dcm"] is REJECTED and liar["liar.zip/ok.dcm"] is ACCEPTED
    assert "damaged" in results[0].reason or "truncated" in results[0].reason


def test_bytes_really_read_are_capped_by_the_archive_budget(app, owner, dicoms, tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"a.dcm": dicoms(1)[0]})
    with app.app_context(), zipfile.ZipFile(archive) as zf:
        result, expanded = ingest_entry(
            zf, zf.getinfo("a.dcm"), "a.zip/a.dcm", owner.id, current_limits(), budget=200
        )
        assert index_counts()["instances"] == 0
    assert result.status is REJECTED and "size headers understate" in result.reason
    assert 200 < expanded <= 200 + 1024 * 1024


def test_an_encrypted_entry_is_refused(app, owner, dicoms, tmp_path):
    secret, good = dicoms(2)
    archive = make_zip(tmp_path / "locked.zip", {"secret.dcm": secret, "good.dcm": good})
    patch_zip_entry(archive, "secret.dcm", flag_bits=0x1)
    with app.app_context():
        results = ingest_zip(archive, owner)
    statuses = _statuses(results)
    assert statuses["locked.zip/secret.dcm"] is REJECTED
    assert "encrypted" in results[0].reason
    assert statuses["locked.zip/good.dcm"] is ACCEPTED


def test_a_symbolic_link_entry_is_refused(app, owner, tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("passwd.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with app.app_context():
        (result,) = ingest_zip(archive, owner)
    assert result.status is REJECTED and "symbolic link" in result.reason


def test_something_that_is_not_a_zip_is_refused(app, owner, tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 but nothing more")
    with app.app_context():
        (result,) = ingest_zip(tmp_path / "fake.zip", owner)
    assert result.status is REJECTED and "not a readable zip archive" in result.reason


# --- folders ---------------------------------------------------------------------------
def test_a_cd_export_folder_is_walked(app, owner, tmp_path):
    cd = shutil.copytree(TINY_ALPHA, tmp_path / "CDROM")
    with app.app_context():
        results = ingest_paths([cd], owner)
        assert index_counts() == {"patients": 1, "studies": 1, "series": 1, "instances": 50}
    statuses = _statuses(results)
    assert statuses.pop("CDROM/DICOMDIR") is SKIPPED
    assert statuses.pop("CDROM/README") is REJECTED
    assert set(statuses.values()) == {ACCEPTED} and len(statuses) == 50
    assert "CDROM/PT000000/ST000000/SE000000/IM000000" in statuses


def test_a_folder_with_a_zip_links_a_fifo_and_loose_files(app, owner, dicoms, tmp_path):
    first, second, third = dicoms(3)
    folder = tmp_path / "upload"
    (folder / "nested").mkdir(parents=True)
    (folder / "nested" / "one.dcm").write_bytes(first)
    make_zip(folder / "more.zip", {"inner/two.dcm": second})
    (folder / "three.dcm").write_bytes(third)
    os.symlink("/etc/passwd", folder / "passwd")
    os.symlink(tmp_path / "gen", folder / "linked-folder")
    os.mkfifo(folder / "pipe")  # opening it would wait forever for a writer
    with app.app_context():
        results = ingest_paths([folder], owner)
        assert index_counts()["instances"] == 3
    assert _statuses(results) == {
        "upload/linked-folder": REJECTED,
        "upload/more.zip/inner/two.dcm": ACCEPTED,
        "upload/passwd": REJECTED,
        "upload/pipe": REJECTED,
        "upload/three.dcm": ACCEPTED,
        "upload/nested/one.dcm": ACCEPTED,
    }


def test_the_whole_bundled_test_folder_ingests_without_an_exception(app, owner, tmp_path):
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    with app.app_context():
        results = ingest_paths([folder], owner)
    assert len(results) == len([p for p in folder.rglob("*") if p.is_file()])
    assert all(r.reason for r in results if r.status is not ACCEPTED)
    assert sum(r.status is ACCEPTED for r in results) >= 100


def test_ingest_module_names_its_public_api():
    assert {"ingest_file", "ingest_zip", "ingest_paths"} <= set(ingest_module.__all__)
