"""The chunked, resumable upload protocol behind /studies/upload, through Flask's test client."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.extensions import db
from portal.studies.uploads import UploadSettings
from tests.conftest import AuthActions, csrf_token
from tests.ingest_support import make_zip, write_dicom

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))
META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Uploader:
    """Speak the protocol as the browser does, CSRF header and all."""

    def __init__(self, client) -> None:
        self.client = client
        page = client.get("/studies/upload")
        assert page.status_code == 200
        self.token = META_CSRF.search(page.get_data(as_text=True)).group(1)

    def headers(self, **extra) -> dict:
        return {"X-CSRFToken": self.token, "Accept": "application/json", **extra}

    def start(self, name: str, size: int, relative_path: str | None = None):
        body = {"name": name, "relative_path": relative_path, "size": size}
        return self.client.post("/studies/uploads", json=body, headers=self.headers())

    def put(self, upload_id: str, offset: int, chunk: bytes):
        return self.client.put(
            f"/studies/uploads/{upload_id}",
            data=chunk,
            headers=self.headers(**{"Upload-Offset": str(offset)}),
            content_type="application/offset+octet-stream",
        )

    def status(self, upload_id: str):
        return self.client.get(f"/studies/uploads/{upload_id}", headers=self.headers())

    def send(self, name: str, data: bytes, chunks: int = 1, relative_path: str | None = None):
        """Upload ``data`` in ``chunks`` pieces; return the last answer's JSON."""
        started = self.start(name, len(data), relative_path)
        assert started.status_code == 201, started.get_json()
        upload_id, step = started.get_json()["id"], -(-len(data) // chunks) or 1
        answer = None
        for offset in range(0, len(data), step):
            answer = self.put(upload_id, offset, data[offset : offset + step])
            assert answer.status_code == 200, answer.get_json()
        return answer.get_json() if answer else self.put(upload_id, 0, b"").get_json()


@pytest.fixture
def uploader(client, auth, create_user):
    """A signed-in patient's :class:`Uploader`; ``uploader.user`` is the patient."""
    user = create_user("patient")
    auth.login(user)
    sender = Uploader(client)
    sender.user = user
    return sender


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def spool_folder(app, user, upload_id: str) -> Path:
    return UploadSettings.from_config(app.config).root / str(user.id) / upload_id


def test_a_file_in_three_chunks_is_ingested_and_audited_without_its_name(app, uploader):
    data = CT.read_bytes()
    started = uploader.start("CT_small.dcm", len(data), "CD/DICOM/CT_small.dcm")
    assert started.status_code == 201
    body = started.get_json()
    assert body["offset"] == 0 and body["chunk_size"] == 8 * 1024 * 1024 and not body["done"]
    upload_id, third = body["id"], len(data) // 3

    assert uploader.put(upload_id, 0, data[:third]).get_json()["offset"] == third
    assert uploader.put(upload_id, third, data[third : 2 * third]).get_json()["offset"] == 2 * third
    head = uploader.client.head(f"/studies/uploads/{upload_id}", headers=uploader.headers())
    assert head.headers["Upload-Offset"] == str(2 * third)
    assert head.headers["Upload-Length"] == str(len(data))
    assert uploader.status(upload_id).get_json()["offset"] == 2 * third

    done = uploader.put(upload_id, 2 * third, data[2 * third :]).get_json()
    assert done["done"] and done["offset"] == len(data)
    assert done["results"] == [
        {"source": "CD/DICOM/CT_small.dcm", "status": "accepted", "reason": ""}
    ]
    assert not (spool_folder(app, uploader.user, upload_id) / "data").exists()

    (event,) = audit_rows(app, "upload.completed")
    assert event.target == f"upload:{upload_id}"
    assert json.loads(event.details) == {
        "accepted": 1,
        "bytes": len(data),
        "files": 1,
        "kind": "file",
    }
    assert all(
        "CT_small" not in (row.details + (row.target or ""))
        for row in audit_rows(app, "upload.completed") + audit_rows(app, "study.ingested")
    )


def test_a_lost_final_answer_is_given_again(uploader):
    data = MR.read_bytes()
    upload_id = uploader.start("MR_small.dcm", len(data)).get_json()["id"]
    first = uploader.put(upload_id, 0, data).get_json()
    again = uploader.put(upload_id, len(data), b"")
    assert again.status_code == 200 and again.get_json()["results"] == first["results"]
    assert uploader.status(upload_id).get_json()["results"] == first["results"]


def test_a_wrong_offset_answers_409_with_the_servers_offset_and_the_upload_resumes(uploader):
    data = CT.read_bytes()
    upload_id = uploader.start("CT_small.dcm", len(data)).get_json()["id"]
    uploader.put(upload_id, 0, data[:1000])

    refused = uploader.put(upload_id, 5000, data[5000:])
    assert refused.status_code == 409
    assert refused.get_json()["offset"] == 1000
    assert refused.headers["Upload-Offset"] == "1000"
    replayed = uploader.put(upload_id, 0, data[:1000])  # a retried chunk that did get through
    assert replayed.status_code == 409 and replayed.get_json()["offset"] == 1000

    done = uploader.put(upload_id, 1000, data[1000:]).get_json()
    assert done["results"][0]["status"] == "accepted"


def test_a_chunk_cut_short_keeps_what_arrived(app, uploader):
    data = CT.read_bytes()
    upload_id = uploader.start("CT_small.dcm", len(data)).get_json()["id"]
    folder = spool_folder(app, uploader.user, upload_id)
    (folder / "data").write_bytes(data[:777])  # as if the connection dropped mid-chunk
    assert uploader.status(upload_id).get_json()["offset"] == 777
    assert uploader.put(upload_id, 777, data[777:]).get_json()["results"][0]["status"] == "accepted"


@pytest.mark.parametrize("role", ["patient", "admin"])
def test_another_users_upload_is_not_found(app, uploader, create_user, role):
    upload_id = uploader.start("CT_small.dcm", 10).get_json()["id"]
    other_client = app.test_client()
    AuthActions(other_client).login(create_user(role))
    other = Uploader(other_client)
    assert other.status(upload_id).status_code == 404
    assert other.put(upload_id, 0, b"0123456789").status_code == 404
    deleted = other_client.delete(f"/studies/uploads/{upload_id}", headers=other.headers())
    assert deleted.status_code == 404
    assert uploader.status(upload_id).get_json()["offset"] == 0


@pytest.mark.parametrize("upload_id", ["../1/x", "nothex", "0" * 31 + "g"])
def test_malformed_ids_are_not_found(uploader, upload_id):
    assert uploader.status(upload_id).status_code == 404


def test_radiologists_are_refused(client, auth, create_user):
    auth.login(create_user("radiologist"))
    assert client.get("/studies/upload").status_code == 403
    headers = {"X-CSRFToken": csrf_token(client, "/"), "Accept": "application/json"}
    declared = client.post("/studies/uploads", json={"name": "a.dcm", "size": 1}, headers=headers)
    assert declared.status_code == 403
    assert client.get(f"/studies/uploads/{'0' * 32}", headers=headers).status_code == 403
    assert b"/studies/upload" not in client.get("/").data


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_are_sent_to_sign_in(client, method):
    path = "/studies/upload" if method == "get" else "/studies/uploads"
    headers = {"X-CSRFToken": csrf_token(client)}
    response = getattr(client, method)(path, json={"name": "a.dcm", "size": 1}, headers=headers)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_a_missing_csrf_header_is_refused(uploader):
    headers = {"Accept": "application/json"}
    response = uploader.client.post(
        "/studies/uploads", json={"name": "a", "size": 1}, headers=headers
    )
    assert response.status_code == 400
    upload_id = uploader.start("a.dcm", 3).get_json()["id"]
    response = uploader.client.put(
        f"/studies/uploads/{upload_id}", data=b"abc", headers={**headers, "Upload-Offset": "0"}
    )
    assert response.status_code == 400
    assert uploader.status(upload_id).get_json()["offset"] == 0


def test_sizes_over_the_caps_are_refused_with_a_clear_reason(app, uploader):
    app.config.update(INGEST_MAX_FILE_MB=1, INGEST_ZIP_MAX_TOTAL_MB=2, UPLOAD_CHUNK_BYTES=1000)
    too_big = uploader.start("big.dcm", 1024 * 1024 + 1)
    assert too_big.status_code == 413
    assert too_big.get_json()["message"] == "This file is 1.0 MB; the limit is 1.0 MB."
    assert uploader.start("ok.zip", 2 * 1024 * 1024).status_code == 201
    assert "limit is 2.0 MB" in uploader.start("big.zip", 3 * 1024 * 1024).get_json()["message"]

    upload_id = uploader.start("a.dcm", 1500).get_json()["id"]
    assert uploader.put(upload_id, 0, bytes(1001)).status_code == 413  # over the chunk size
    assert uploader.put(upload_id, 0, bytes(1000)).status_code == 200
    past_end = uploader.put(upload_id, 1000, bytes(501))
    assert (
        past_end.status_code == 413 and "past the size declared" in past_end.get_json()["message"]
    )


@pytest.mark.parametrize(
    "body", [{"size": 1}, {"name": "a.dcm"}, {"name": "a.dcm", "size": -1}, {"name": "", "size": 1}]
)
def test_malformed_declarations_are_refused(uploader, body):
    response = uploader.client.post("/studies/uploads", json=body, headers=uploader.headers())
    assert response.status_code == 400


def test_a_chunk_without_an_offset_is_refused(uploader):
    upload_id = uploader.start("a.dcm", 3).get_json()["id"]
    response = uploader.client.put(
        f"/studies/uploads/{upload_id}", data=b"abc", headers=uploader.headers()
    )
    assert response.status_code == 400 and "Upload-Offset" in response.get_json()["message"]


def test_a_zip_gives_one_result_per_member(app, uploader, tmp_path):
    archive = make_zip(
        tmp_path / "study.zip",
        {
            "DICOM/CT": CT.read_bytes(),
            "DICOM/MR": MR.read_bytes(),
            "DICOM/notes.txt": b"not an image",
            "__MACOSX/._CT": b"litter",
        },
    )
    answer = uploader.send("study.zip", archive.read_bytes(), chunks=2)
    results = {r["source"]: (r["status"], r["reason"]) for r in answer["results"]}
    assert results.keys() == {
        "study.zip/DICOM/CT",
        "study.zip/DICOM/MR",
        "study.zip/DICOM/notes.txt",
    }
    assert results["study.zip/DICOM/CT"][0] == results["study.zip/DICOM/MR"][0] == "accepted"
    assert results["study.zip/DICOM/notes.txt"][0] == "rejected"
    (event,) = audit_rows(app, "upload.completed")
    assert json.loads(event.details)["kind"] == "zip"
    assert json.loads(event.details)["rejected"] == 1


def test_one_bad_file_among_good_ones(uploader, tmp_path):
    good = write_dicom(tmp_path / "made.dcm").read_bytes()
    answers = [
        uploader.send("CT_small.dcm", CT.read_bytes(), chunks=2),
        uploader.send("notes.txt", b"these are not the images you are looking for"),
        uploader.send("made.dcm", good),
        uploader.send("CT_again.dcm", CT.read_bytes()),
        uploader.send("empty.dcm", b""),
    ]
    statuses = [answer["results"][0]["status"] for answer in answers]
    assert statuses == ["accepted", "rejected", "accepted", "duplicate", "rejected"]
    assert "not a DICOM file" in answers[1]["results"][0]["reason"]
    assert answers[1]["results"][0]["source"] == "notes.txt"


def test_cancel_forgets_the_upload(app, uploader):
    upload_id = uploader.start("a.dcm", 10).get_json()["id"]
    uploader.put(upload_id, 0, b"01234")
    cancelled = uploader.client.delete(f"/studies/uploads/{upload_id}", headers=uploader.headers())
    assert cancelled.status_code == 204
    assert uploader.status(upload_id).status_code == 404
    assert not spool_folder(app, uploader.user, upload_id).exists()


def test_a_busy_upload_answers_423(app, uploader):
    upload_id = uploader.start("a.dcm", 10).get_json()["id"]
    with open(spool_folder(app, uploader.user, upload_id) / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert uploader.put(upload_id, 0, b"01234").status_code == 423
    assert uploader.put(upload_id, 0, b"01234").get_json()["offset"] == 5


def test_uploads_untouched_for_a_day_are_swept_when_a_new_one_starts(app, uploader):
    stale = uploader.start("a.dcm", 10).get_json()["id"]
    fresh = uploader.start("b.dcm", 10).get_json()["id"]
    day_ago = time.time() - 25 * 3600
    os.utime(spool_folder(app, uploader.user, stale) / "state.json", (day_ago, day_ago))
    uploader.start("c.dcm", 10)
    assert uploader.status(stale).status_code == 404
    assert uploader.status(fresh).status_code == 200


def test_the_upload_page_carries_the_token_and_no_inline_script(uploader):
    html = uploader.client.get("/studies/upload").get_data(as_text=True)
    assert 'src="/static/js/upload.js"' in html
    assert "<script>" not in html and "style=" not in html
    assert "webkitdirectory" in html and "<progress" in html and 'aria-live="polite"' in html
    assert 'href="/studies/upload">Upload</a>' in html
    assert Path("portal/static/js/upload.js").stat().st_size < 15 * 1024
