"""A patient uploads from a phone-sized Chromium: files, a CD folder, a dropped connection."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pydicom.data import get_testdata_file

from tests.browser.test_accounts_on_phone import fits_screen, sign_in

pytestmark = pytest.mark.browser

BUNDLED = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]


@pytest.fixture
def patient_on_upload_page(phone, app, create_user):
    """Sign a patient in on the phone and open the upload page from the nav."""
    app.config["UPLOAD_CHUNK_BYTES"] = 8 * 1024  # CT_small.dcm (39 KB) goes up in 5 chunks
    user = create_user("patient")
    sign_in(phone, user.email)
    phone.get_by_role("link", name="Upload").click()
    expect(phone.get_by_role("heading", name="Upload studies")).to_be_visible()
    return phone


def expect_finished(page, files: int) -> None:
    expect(page.locator("#files-text")).to_have_text(f"{files} of {files} files")
    expect(page.locator("#bytes-text")).to_contain_text("(100%)")
    assert page.locator("#bytes-progress").evaluate("bar => bar.value === bar.max")
    expect(page.get_by_role("status")).to_contain_text("Done:")


def result_rows(page) -> dict[str, tuple[str, str]]:
    rows = page.locator("#results-body tr")
    return {
        row.locator("td").nth(0).inner_text(): (
            row.locator("td").nth(1).inner_text(),
            row.locator("td").nth(2).inner_text(),
        )
        for row in rows.all()
    }


def test_patient_uploads_files_and_sees_progress_and_results(patient_on_upload_page, tmp_path):
    page = patient_on_upload_page
    notes = tmp_path / "notes.txt"
    notes.write_text("my questions for the radiologist")
    page.get_by_label("Files", exact=True).set_input_files([*BUNDLED, notes])
    assert fits_screen(page)
    page.shot("upload-picked")
    page.get_by_role("button", name="Upload").click()

    expect_finished(page, 4)
    rows = result_rows(page)
    assert {name: status for name, (status, _) in rows.items()} == {
        "CT_small.dcm": "accepted",
        "MR_small.dcm": "accepted",
        "rtplan.dcm": "accepted",
        "notes.txt": "rejected",
    }
    assert "not a DICOM file" in rows["notes.txt"][1]
    expect(page.locator("#results-summary")).to_contain_text("3 accepted, 1 rejected")
    assert fits_screen(page)
    page.shot("upload-results")

    page.set_viewport_size({"width": 360, "height": 740})
    assert fits_screen(page), "the upload page scrolls sideways at 360px"
    page.shot("upload-results-360")


def test_a_dropped_chunk_is_retried_and_the_upload_resumes(patient_on_upload_page):
    page = patient_on_upload_page
    dropped = []

    def drop_first_chunk(route):
        if route.request.method == "PUT" and not dropped:
            dropped.append(route.request.headers["upload-offset"])
            route.abort("connectionreset")
        else:
            route.fallback()

    page.route("**/studies/uploads/*", drop_first_chunk)
    page.get_by_label("Files", exact=True).set_input_files(BUNDLED[0])
    page.get_by_role("button", name="Upload").click()

    expect_finished(page, 1)
    assert dropped == ["0"]
    assert result_rows(page) == {"CT_small.dcm": ("accepted", "")}
    page.shot("upload-resumed")


def test_a_cd_folder_is_uploaded_with_its_paths(patient_on_upload_page, tmp_path):
    page = patient_on_upload_page
    cd = tmp_path / "CD"
    (cd / "DICOM").mkdir(parents=True)
    shutil.copy(get_testdata_file("DICOMDIR"), cd / "DICOMDIR")
    shutil.copy(BUNDLED[0], cd / "DICOM" / "IM0001")
    shutil.copy(BUNDLED[1], cd / "DICOM" / "IM0002")
    (cd / ".DS_Store").write_bytes(b"litter")
    page.get_by_label("A whole folder").set_input_files(cd)
    page.get_by_role("button", name="Upload").click()

    expect_finished(page, 3)
    statuses = {name: status for name, (status, _) in result_rows(page).items()}
    assert statuses == {
        "CD/DICOMDIR": "skipped",
        "CD/DICOM/IM0001": "accepted",
        "CD/DICOM/IM0002": "accepted",
    }
    assert fits_screen(page)
    page.shot("upload-folder")
