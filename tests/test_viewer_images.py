"""The viewer's manifest and frames, and DICOMweb's rendered resources, through the test client."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.auth import api_tokens
from portal.auth.models import User
from portal.cases import operations as case_operations
from portal.cases.models import Case, CaseStudy
from portal.cases.reading_copies import make_reading_copies
from portal.cases.states import Urgency
from portal.extensions import db
from portal.links import operations as link_operations
from portal.storage import get_storage
from portal.studies.ingest import ingest_file
from portal.studies.models import Instance, Series, Study
from portal.viewer import metadata
from portal.viewer.images import ERROR_HEADER
from portal.viewer.manifest import CT_PRESETS
from portal.viewer.view_audit import SeriesView, note_image_read
from tests import case_support as cs
from tests.conftest import AuthActions, csrf_token
from tests.paging_support import PIN, People, make_people
from tests.synthetic import ct_slice

QUESTION = "Is there a pulmonary embolism?"
#: Instance numbers 1..5 lie at these heights: the stack order, head first, is 4, 5, 2, 3, 1.
HEIGHTS = (0.0, 20.0, 10.0, 40.0, 30.0)


@pytest.fixture
def people(app, create_user) -> People:
    return make_people(app, create_user)


# --- data ---------------------------------------------------------------------------------
def ct_slices(folder: Path) -> list[Path]:
    """Five 32x32 CT slices whose instance numbers run against their positions."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index, height in enumerate(HEIGHTS):
        hu = np.full((32, 32), index * 100, np.int16)
        hu[:, 16:] = -1024
        ds = ct_slice(
            hu,
            study=study,
            series=series,
            number=index + 1,
            PatientName="ROE^JANE",
            PatientID="P-1",
            StudyDate="20260102",
            StudyDescription="CT chest",
            SeriesNumber=2,
            SeriesDescription="Axial",
            WindowCenter=[40, -600],
            WindowWidth=[400, 1500],
            WindowCenterWidthExplanation=["SOFT", "LUNG"],
            SliceThickness=2.5,
            SliceLocation=height,
            ImagePositionPatient=[-100.0, -100.0, height],
        )
        paths.append(folder / f"ct{index}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def ingest(app, owner: User, paths: list[Path | str]) -> int:
    with app.app_context():
        user = db.session.get(User, owner.id)
        for path in paths:
            result = ingest_file(path, user)
            assert result.status.value in ("accepted", "duplicate"), result.reason
        return db.session.scalar(
            select(Study.id).where(Study.study_instance_uid == result.study_instance_uid)
        )


def submit(app, people: People, study_ids: list[int], deidentify: bool = False) -> Case:
    with app.app_context():
        physician = db.session.get(User, people.physician.id)
        number = case_operations.new_case_number()
        copies = {}
        if deidentify:
            studies = [db.session.get(Study, i) for i in study_ids]
            copies = make_reading_copies(studies, physician, number)
        request = case_operations.CaseRequest(
            QUESTION,
            Urgency.URGENT,
            study_ids,
            subject_name="Jane Roe",
            deidentify=deidentify,
            reading_copies=copies,
        )
        case = case_operations.submit_case(physician, request, number=number)
        db.session.commit()
        case_id = case.id
    return cs.load(app, case_id)


def accepted(app, people: People, case: Case, radiologist: User | None = None) -> Case:
    radiologist = radiologist or people.radiologist
    return cs.accept(app, cs.offer(app, case, radiologist), radiologist)


@pytest.fixture
def case(app, people, tmp_path) -> Case:
    """An accepted case: a five-slice CT study and a 30-frame ultrasound cine."""
    ct = ingest(app, people.physician, ct_slices(tmp_path / "ct"))
    cine = ingest(app, people.physician, [get_testdata_file("examples_ybr_color.dcm")])
    return accepted(app, people, submit(app, people, [ct, cine]))


def open_session(app, client, user: User, case: Case) -> None:
    """Issue a viewing link and redeem it with the PIN: ``client`` holds a viewer session."""
    with app.app_context():
        code = link_operations.issue_link(
            db.session.get(User, user.id), db.session.get(Case, case.id), "sms"
        )
        db.session.commit()
    token = csrf_token(client, "/login")
    response = client.post(f"/l/{code}", data={"factor": PIN, "csrf_token": token})
    assert response.status_code == 303


def uids(app, case: Case, reading: bool = False) -> dict[str, list[str]]:
    """SOP Instance UIDs by modality, of the case's original (or reading) studies."""
    with app.app_context():
        links = db.session.scalars(select(CaseStudy).where(CaseStudy.case_id == case.id)).all()
        ids = [(link.reading_study_id if reading else link.study_id) for link in links]
        rows = db.session.execute(
            select(Series.modality, Instance.sop_instance_uid, Instance.instance_number)
            .join(Instance, Instance.series_id == Series.id)
            .where(Series.study_id.in_(ids))
            .order_by(Instance.instance_number)
        ).all()
    found: dict[str, list[str]] = {}
    for modality, uid, _ in rows:
        found.setdefault(modality, []).append(uid)
    return found


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
        db.session.expunge_all()
        return rows


def image_of(response) -> Image.Image:
    return Image.open(io.BytesIO(response.data))


# --- manifest -----------------------------------------------------------------------------
def test_manifest_through_a_viewer_session(app, client, people, case):
    open_session(app, client, people.radiologist, case)
    response = client.get(f"/viewer/{case.number}/manifest.json")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["case"] == {"number": case.number, "urgency": "urgent", "modalities": ["CT", "US"]}
    assert body["report_url"] == f"/cases/{case.number}/report"
    series = {s["modality"]: s for study in body["studies"] for s in study["series"]}
    ct, us = series["CT"], series["US"]
    assert ct["images"] == 5 and not ct["multiframe"]
    assert [i["number"] for i in ct["instances"]] == [4, 5, 2, 3, 1]  # head first
    first = ct["instances"][0]
    assert first["position"] == [-100.0, -100.0, 40.0] and first["slice_location"] == 40.0
    assert first["spacing"] == [0.7, 0.7] and first["spacing_kind"] == "pixel"
    assert first["thickness"] == 2.5 and first["frames"] == 1 and first["frame_time_ms"] is None
    assert first["rows"] == first["columns"] == 32
    assert first["windows"] == [
        {"center": 40.0, "width": 400.0, "name": "SOFT"},
        {"center": -600.0, "width": 1500.0, "name": "LUNG"},
    ]
    assert first["url"] == f"/viewer/{case.number}/frames/{first['uid']}/{{frame}}"
    assert [p["name"] for p in ct["presets"]] == [name for name, _, _ in CT_PRESETS]
    assert ct["presets"][3] == {"name": "lung", "center": -600, "width": 1500}
    assert us["multiframe"] and us["instances"][0]["frames"] == 30
    assert us["instances"][0]["frame_time_ms"] == pytest.approx(33.333)
    assert us["presets"] == []  # colour: windows do not apply
    assert client.get(ct["thumbnail"]).headers["Content-Type"] == "image/webp"
    study = next(s for s in body["studies"] if s["series"][0]["modality"] == "CT")
    assert study["date"] == "2026-01-02" and study["description"] == "CT chest"


def test_manifest_presets_for_mr_are_its_windows_and_auto(app, client, people):
    mr = ingest(app, people.physician, [get_testdata_file("MR_small.dcm")])
    case = accepted(app, people, submit(app, people, [mr]))
    AuthActions(client).login(people.physician)
    body = client.get(f"/viewer/{case.number}/manifest.json").get_json()
    series = body["studies"][0]["series"][0]
    assert series["presets"] == [
        {"center": 600.0, "width": 1600.0, "name": "File 1"},
        {"name": "auto", "center": None, "width": None},
    ]
    assert body["report_url"] is None  # the requester does not write the report


def test_second_manifest_load_reads_no_file(app, client, people, case, monkeypatch):
    open_session(app, client, people.radiologist, case)
    first = client.get(f"/viewer/{case.number}/manifest.json").get_json()
    app.extensions["overread_viewer_facts"].clear()  # another worker: only the disk is left
    monkeypatch.setattr(metadata, "_read_facts", lambda image: pytest.fail("read a header"))
    assert client.get(f"/viewer/{case.number}/manifest.json").get_json() == first


# --- frames ------------------------------------------------------------------------------
def test_frame_formats_sizes_and_etags(app, client, people, tmp_path):
    study = ingest(app, people.physician, [get_testdata_file("CT_small.dcm")])
    case = accepted(app, people, submit(app, people, [study]))
    open_session(app, client, people.radiologist, case)
    uid = uids(app, case)["CT"][0]
    url = f"/viewer/{case.number}/frames/{uid}/1"
    response = client.get(url)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/webp"
    assert response.headers["Cache-Control"] == "private, max-age=3600"
    assert image_of(response).size == (128, 128)
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(url).data == response.data  # from the cache, byte for byte
    small = client.get(f"{url}?size=64&format=png")
    assert small.headers["Content-Type"] == "image/png" and image_of(small).size == (64, 64)
    assert client.get(f"{url}?format=jpeg").headers["Content-Type"] == "image/jpeg"
    windowed = client.get(f"{url}?wc=40&ww=400&format=png")
    inverted = client.get(f"{url}?wc=40&ww=400&format=png&invert=1")
    assert windowed.headers["ETag"] not in (etag, inverted.headers["ETag"])
    assert np.array_equal(np.asarray(image_of(inverted)), 255 - np.asarray(image_of(windowed)))
    assert client.get(f"{url}?window=auto").status_code == 200
    assert any((tmp_path / "render-cache").rglob("*.webp"))


@pytest.mark.parametrize(
    ("query", "status"),
    [("?format=gif", 400), ("?wc=40", 400), ("?wc=a&ww=1", 400), ("?ww=0&wc=1", 400)],
)
def test_bad_frame_queries_are_400(app, client, people, case, query, status):
    open_session(app, client, people.radiologist, case)
    uid = uids(app, case)["CT"][0]
    response = client.get(f"/viewer/{case.number}/frames/{uid}/1{query}")
    assert response.status_code == status and response.is_json


def test_frame_numbers_are_one_based_and_bounded(app, client, people, case):
    open_session(app, client, people.radiologist, case)
    cine = uids(app, case)["US"][0]
    base = f"/viewer/{case.number}/frames/{cine}"
    assert client.get(f"{base}/30").status_code == 200
    assert client.get(f"{base}/31").status_code == 404
    assert client.get(f"{base}/0").status_code == 404
    first, tenth = client.get(f"{base}/1?format=png"), client.get(f"{base}/10?format=png")
    assert first.data != tenth.data


def test_an_undecodable_frame_is_a_placeholder_with_the_reason(app, client, people, case):
    open_session(app, client, people.radiologist, case)
    uid = uids(app, case)["CT"][0]
    with app.app_context():
        key = db.session.scalar(
            select(Instance.storage_key).where(Instance.sop_instance_uid == uid)
        )
        path = Path(get_storage().root) / key
    path.write_bytes(path.read_bytes()[:-700])  # pixel data cut short
    response = client.get(f"/viewer/{case.number}/frames/{uid}/1")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/webp"
    assert "less than expected" in response.headers[ERROR_HEADER]
    assert response.headers["Cache-Control"] == "no-store" and "ETag" not in response.headers
    path.unlink()
    missing = client.get(f"/viewer/{case.number}/frames/{uid}/1?format=png")
    assert missing.headers[ERROR_HEADER] == "the image file is missing from storage"


# --- access --------------------------------------------------------------------------------
def test_without_session_or_sign_in_it_is_401(app, client, people, case):
    uid = uids(app, case)["CT"][0]
    for path in (f"/viewer/{case.number}/manifest.json", f"/viewer/{case.number}/frames/{uid}/1"):
        response = client.get(path)
        assert response.status_code == 401 and response.is_json
        assert not response.headers["Content-Type"].startswith("image/")
    refused = audit_rows(app, "viewer.refused")
    assert len(refused) == 2 and '"reason": "no session"' in refused[-1].details


def test_a_session_opens_its_own_case_only(app, client, people, case, tmp_path):
    other_study = ingest(app, people.physician, [get_testdata_file("MR_small.dcm")])
    second = accepted(app, people, submit(app, people, [other_study]))
    open_session(app, client, people.radiologist, case)
    assert client.get(f"/viewer/{second.number}/manifest.json").status_code == 403
    mr = uids(app, second)["MR"][0]
    assert client.get(f"/viewer/{second.number}/frames/{mr}/1").status_code == 403
    # the other case's image asked for under this case's number: not in this case
    assert client.get(f"/viewer/{case.number}/frames/{mr}/1").status_code == 404
    reasons = [row.details for row in audit_rows(app, "viewer.refused")]
    assert '"reason": "another case"' in reasons[0] and "image not in case" in reasons[-1]


def test_an_idle_session_is_refused(app, client, people, case, frozen_clock):
    open_session(app, client, people.radiologist, case)
    uid = uids(app, case)["CT"][0]
    assert client.get(f"/viewer/{case.number}/frames/{uid}/1").status_code == 200
    frozen_clock.advance(timedelta(minutes=21))
    assert client.get(f"/viewer/{case.number}/frames/{uid}/1").status_code == 401
    assert '"reason": "idle timeout"' in audit_rows(app, "viewer.refused")[-1].details


def test_an_offered_radiologist_signed_in_is_refused(app, client, people, tmp_path):
    study = ingest(app, people.physician, [get_testdata_file("CT_small.dcm")])
    case = cs.offer(app, submit(app, people, [study]), people.other)
    AuthActions(client).login(people.other)
    assert client.get(f"/viewer/{case.number}/manifest.json").status_code == 403
    assert '"reason": "offer only"' in audit_rows(app, "viewer.refused")[-1].details


def test_a_reader_sees_reading_copies_and_the_requester_the_originals(app, client, people):
    study = ingest(app, people.physician, [get_testdata_file("CT_small.dcm")])
    case = accepted(app, people, submit(app, people, [study], deidentify=True))
    original, copy = uids(app, case)["CT"][0], uids(app, case, reading=True)["CT"][0]
    assert original != copy
    open_session(app, client, people.radiologist, case)
    body = client.get(f"/viewer/{case.number}/manifest.json").get_json()
    assert body["studies"][0]["series"][0]["instances"][0]["uid"] == copy
    assert client.get(f"/viewer/{case.number}/frames/{copy}/1").status_code == 200
    assert client.get(f"/viewer/{case.number}/frames/{original}/1").status_code == 404
    requester = app.test_client()
    AuthActions(requester).login(people.physician)
    body = requester.get(f"/viewer/{case.number}/manifest.json").get_json()
    assert body["studies"][0]["series"][0]["instances"][0]["uid"] == original
    assert requester.get(f"/viewer/{case.number}/frames/{original}/1").status_code == 200
    assert requester.get(f"/viewer/{case.number}/frames/{copy}/1").status_code == 404


def test_an_admin_signed_in_sees_the_case(app, client, people, case):
    AuthActions(client).login(people.admin)
    uid = uids(app, case)["CT"][0]
    assert client.get(f"/viewer/{case.number}/frames/{uid}/1").status_code == 200


# --- audit --------------------------------------------------------------------------------
def test_image_reads_are_audited_once_per_series_and_session(app, client, people, case):
    open_session(app, client, people.radiologist, case)
    found = uids(app, case)
    for uid in found["CT"]:
        assert client.get(f"/viewer/{case.number}/frames/{uid}/1").status_code == 200
    for frame in (1, 2, 3):
        assert client.get(f"/viewer/{case.number}/frames/{found['US'][0]}/{frame}").status_code
    rows = audit_rows(app, "case.images_viewed")
    assert len(rows) == 2
    assert all(row.actor_id == people.radiologist.id and row.case_id == case.id for row in rows)
    assert all(
        "/viewer:" in row.target and '"via": "viewer session"' in row.details for row in rows
    )
    assert len({row.target for row in rows}) == 2
    fresh = app.test_client()  # a new session: a new row for the series it opens
    open_session(app, fresh, people.radiologist, case)
    fresh.get(f"/viewer/{case.number}/frames/{found['CT'][0]}/1")
    assert len(audit_rows(app, "case.images_viewed")) == 3


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_signed_in_reads_are_audited_once_per_ten_minutes(app, client, people, case, frozen_clock):
    AuthActions(client).login(people.physician)
    uid = uids(app, case)["CT"][0]
    url = f"/viewer/{case.number}/frames/{uid}/1"
    for _ in range(3):
        assert client.get(url).status_code == 200
    assert (
        client.get(url, headers={"If-None-Match": client.get(url).headers["ETag"]}).status_code
        == 304
    )
    assert len(audit_rows(app, "case.images_viewed")) == 1
    frozen_clock.advance(timedelta(minutes=11))  # the sign-in lasts (30 minutes idle)
    assert client.get(url).status_code == 200
    rows = audit_rows(app, "case.images_viewed")
    assert (
        len(rows) == 2 and rows[-1].target.startswith("series:") and "sign-in" in rows[-1].details
    )


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_two_racing_first_reads_write_one_row(app, people, case):
    with app.app_context():
        series_id = db.session.scalar(
            select(Instance.series_id).where(Instance.sop_instance_uid == uids(app, case)["CT"][0])
        )
    added, first_recorded, release = [], threading.Event(), threading.Event()

    def read(first: bool) -> None:
        with app.app_context():
            user = db.session.get(User, people.physician.id)
            view = SeriesView("case.images_viewed", user, series_id, case.id)
            added.append(note_image_read(view))
            if first:
                first_recorded.set()
                release.wait(10)  # hold the transaction open while the second one starts
            db.session.commit()

    first = threading.Thread(target=read, args=(True,))
    first.start()
    assert first_recorded.wait(10)
    second = threading.Thread(target=read, args=(False,))
    second.start()
    time.sleep(0.3)  # the second is now waiting for the audit chain's lock
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(added) == [False, True]
    assert len(audit_rows(app, "case.images_viewed")) == 1


# --- DICOMweb rendered ---------------------------------------------------------------------
@pytest.fixture
def bearer(app):
    def issue(user: User) -> dict:
        with app.app_context():
            raw = api_tokens.issue_api_token(db.session.get(User, user.id), "test")
            db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return issue


def _paths(app, case: Case, modality: str) -> tuple[str, str, str]:
    uid = uids(app, case)[modality][0]
    with app.app_context():
        instance = db.session.scalars(
            select(Instance).where(Instance.sop_instance_uid == uid)
        ).one()
        series = instance.series
        return series.study.study_instance_uid, series.series_instance_uid, uid


def test_dicomweb_rendered_with_accept_window_viewport_and_quality(
    app, client, people, case, bearer
):
    study, series, sop = _paths(app, case, "CT")
    headers = bearer(people.physician)
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered"
    default = client.get(url, headers=headers)
    assert default.status_code == 200 and default.headers["Content-Type"] == "image/jpeg"
    assert "Accept" in default.headers["Vary"] and image_of(default).size == (32, 32)
    for accept in ("image/png", "image/webp"):
        answer = client.get(url, headers={**headers, "Accept": accept})
        assert answer.headers["Content-Type"] == accept
    assert client.get(url, headers={**headers, "Accept": "image/gif"}).status_code == 406
    sized = client.get(f"{url}?viewport=128,64&window=40,400,linear", headers=headers)
    assert image_of(sized).size == (64, 64)
    low = client.get(f"{url}?quality=10", headers=headers)
    assert low.headers["ETag"] != default.headers["ETag"]
    cached = client.get(url, headers={**headers, "If-None-Match": default.headers["ETag"]})
    assert cached.status_code == 304
    for bad in ("window=40", "window=40,400,cubic", "viewport=1,2,3,4,5,6", "quality=0"):
        assert client.get(f"{url}?{bad}", headers=headers).status_code == 400
    rows = audit_rows(app, "series.rendered")
    assert len(rows) == 1 and rows[0].actor_id == people.physician.id


def test_dicomweb_frames_and_thumbnails(app, client, people, case, bearer):
    headers = bearer(people.physician)
    study, series, sop = _paths(app, case, "US")
    base = f"/dicomweb/studies/{study}/series/{series}"
    frame = client.get(f"{base}/instances/{sop}/frames/7/rendered", headers=headers)
    assert frame.status_code == 200 and image_of(frame).size == (320, 240)
    assert (
        client.get(f"{base}/instances/{sop}/frames/31/rendered", headers=headers).status_code == 404
    )
    for path in (f"{base}/thumbnail", f"/dicomweb/studies/{study}/thumbnail"):
        thumbnail = client.get(path, headers=headers)
        assert thumbnail.status_code == 200 and max(image_of(thumbnail).size) == 256


def test_dicomweb_rendered_needs_a_token_that_sees_the_study(app, client, people, case, bearer):
    study, series, sop = _paths(app, case, "CT")
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer(people.other)).status_code == 404  # offered nothing
    assert client.get(url, headers=bearer(people.radiologist)).status_code == 200  # reads it
