"""DICOMweb against a running server, through the real ``dicomweb-client`` package."""

from __future__ import annotations

import hashlib
import uuid
from io import BytesIO
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.data import get_testdata_file
from werkzeug.exceptions import RequestEntityTooLarge

from portal.auth import api_tokens, operations
from portal.auth.models import User
from portal.dicomweb import stow
from portal.dicomweb.multipart import spool_parts
from portal.errors import InvalidInput
from portal.extensions import db
from tests import harness
from tests.ingest_support import index_counts

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")
MULTIFRAME = get_testdata_file("SC_rgb_rle_2frame.dcm")  # RLE, decoded by the server


@pytest.fixture
def server(live_url):
    return live_url


@pytest.fixture
def token_for(app):
    def issue(user: User) -> str:
        with app.app_context():
            raw = api_tokens.issue_api_token(db.session.merge(user), "test")
            db.session.commit()
        return raw

    return issue


@pytest.fixture
def dicomweb(server, token_for):
    """``dicomweb(user)`` -> a real DICOMwebClient holding that user's bearer token."""

    def client_for(user: User) -> DICOMwebClient:
        return DICOMwebClient(
            url=f"{server}/dicomweb", headers={"Authorization": f"Bearer {token_for(user)}"}
        )

    return client_for


@pytest.fixture
def owner(create_user):
    return create_user("physician")


@pytest.fixture
def loaded(dicomweb, owner):
    """The owner's client, after storing the CT, the MR and a multi-frame MR."""
    client = dicomweb(owner)
    response = client.store_instances([dcmread(CT), dcmread(MR), dcmread(MULTIFRAME)])
    assert len(response.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in response
    return client


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_stored_study_is_found_and_retrieved_byte_for_byte(loaded):
    ct = dcmread(CT)
    studies = loaded.search_for_studies(search_filters={"StudyInstanceUID": ct.StudyInstanceUID})
    assert len(studies) == 1
    assert studies[0]["00100020"]["Value"] == [ct.PatientID]
    assert studies[0]["00201208"]["Value"] == [1]
    [retrieved] = loaded.retrieve_study(ct.StudyInstanceUID)
    assert retrieved.SOPInstanceUID == ct.SOPInstanceUID
    assert retrieved.PixelData == ct.PixelData


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"ModalitiesInStudy": "CT"}, {"CT"}),
        ({"ModalitiesInStudy": "MR"}, {"MR"}),
        ({"00080061": "CT"}, {"CT"}),
        ({"PatientID": "1CT1"}, {"CT"}),
        ({"PatientID": "1CT*"}, {"CT"}),
        ({"StudyDate": "20040101-20040131"}, {"CT"}),
        ({"StudyDate": "20040826"}, {"MR"}),
        ({"StudyDate": "20170101-"}, {"OT"}),
        ({"ModalitiesInStudy": "CT,MR"}, {"CT", "MR"}),
        ({"StudyDate": "-19000101"}, set()),
    ],
)
def test_qido_matches_study_keys(loaded, filters, expected):
    studies = loaded.search_for_studies(search_filters=filters)
    assert {m for s in studies for m in s["00080061"]["Value"]} == expected


def test_qido_limit_offset_series_and_instances(loaded):
    everything = loaded.search_for_studies()
    assert len(everything) == 3
    assert len(loaded.search_for_studies(limit=1)) == 1
    assert loaded.search_for_studies(limit=1, offset=1)[0] != loaded.search_for_studies(limit=1)[0]
    mr = dcmread(MR)
    series = loaded.search_for_series(mr.StudyInstanceUID)
    assert {s["00080060"]["Value"][0] for s in series} == {"MR"}
    instances = loaded.search_for_instances(mr.StudyInstanceUID)
    assert mr.SOPInstanceUID in {i["00080018"]["Value"][0] for i in instances}


def test_includefield_adds_study_and_series_attributes_below(loaded, server, owner, token_for):
    mr = dcmread(MR)
    instances = loaded.search_for_instances(
        mr.StudyInstanceUID, fields=["PatientID", "00080060", "StudyDate"]
    )
    mine = next(i for i in instances if i["00080018"]["Value"] == [mr.SOPInstanceUID])
    assert mine["00100020"]["Value"] == [mr.PatientID]  # from the study level
    assert mine["00080060"]["Value"] == ["MR"]  # from the series level
    assert mine["00080020"]["Value"] == [mr.StudyDate]
    series = loaded.search_for_series(mr.StudyInstanceUID, fields=["all"])
    assert series[0]["00100010"]["Value"] == [{"Alphabetic": str(mr.PatientName)}]
    assert "00201208" not in series[0]  # a study's counts are not the series' own
    plain = loaded.search_for_series(mr.StudyInstanceUID)
    assert "00100020" not in plain[0]  # nothing extra unless asked


def test_includefield_names_what_the_index_does_not_hold(server, owner, token_for, loaded):
    response = requests.get(
        f"{server}/dicomweb/studies",
        params={"includefield": "SliceThickness,StudyDescription"},
        headers={"Authorization": f"Bearer {token_for(owner)}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert "includefield SliceThickness is not held" in response.headers["Warning"]
    assert "StudyDescription" not in response.headers["Warning"]


def test_metadata_and_uncompressed_frames(loaded):
    ct = dcmread(CT)
    metadata = loaded.retrieve_instance_metadata(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID
    )
    assert metadata["00100010"]["Value"][0]["Alphabetic"] == str(ct.PatientName)
    assert "BulkDataURI" in metadata["7FE00010"]
    [frame] = loaded.retrieve_instance_frames(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID, frame_numbers=[1]
    )
    assert frame == ct.pixel_array.astype("<i2").tobytes()


def test_multiframe_frames_by_number(loaded):
    mf = dcmread(MULTIFRAME)
    frames = loaded.retrieve_instance_frames(
        mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID, frame_numbers=[2, 1]
    )
    assert frames == [mf.pixel_array[1].tobytes(), mf.pixel_array[0].tobytes()]


def test_other_users_see_nothing_and_admins_see_all(loaded, dicomweb, create_user):
    ct = dcmread(CT)
    stranger = dicomweb(create_user("patient"))
    assert stranger.search_for_studies() == []
    with pytest.raises(requests.HTTPError) as refused:
        stranger.retrieve_study(ct.StudyInstanceUID)
    assert refused.value.response.status_code == 404
    admin = dicomweb(create_user("admin"))
    assert len(admin.search_for_studies()) == 3


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer ovr_unknown", "Basic abc"])
def test_requests_without_a_valid_token_get_401(server, header):
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{server}/dicomweb/studies", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(app, server, owner):
    with app.app_context():
        user = db.session.merge(owner)
        raw = api_tokens.issue_api_token(user)
        db.session.commit()
        token_id = user.api_tokens[0].id
        api_tokens.revoke_api_token(user, token_id)
        db.session.commit()
    response = requests.get(
        f"{server}/dicomweb/studies", headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )
    assert response.status_code == 401


def _post_parts(server, token, parts: list[tuple[str, bytes]]):
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
            for ctype, data in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return requests.post(
        f"{server}/dicomweb/studies",
        data=body,
        timeout=30,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        },
    )


def test_stow_keeps_good_parts_and_names_bad_ones(server, token_for, owner):
    good = Path(CT).read_bytes()
    response = _post_parts(
        server,
        token_for(owner),
        [
            ("application/dicom", b"this is not DICOM"),
            ("application/dicom", good),
            ("text/plain", b"hello"),
        ],
    )
    assert response.status_code == 202
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    reasons = [item["00081197"]["Value"][0] for item in body["00081198"]["Value"]]
    assert reasons == [0xC000, 0xC000]


def test_stow_sorts_out_copies_within_one_request(app, server, token_for, owner):
    original = Path(CT).read_bytes()
    ds = dcmread(CT)
    ds.PatientName = "Other^Copy"
    other = part10_bytes(ds)
    response = _post_parts(
        server,
        token_for(owner),
        [("application/dicom", data) for data in (original, original, other, b"junk")],
    )
    assert response.status_code == 202
    body = response.json()
    referenced = [item["00081155"]["Value"][0] for item in body["00081199"]["Value"]]
    assert referenced == [ds.SOPInstanceUID] * 2  # the copy is a duplicate: stored already
    reasons = [item["00081197"]["Value"][0] for item in body["00081198"]["Value"]]
    assert reasons == [stow.PROCESSING_FAILURE, stow.CANNOT_UNDERSTAND]
    with app.app_context():
        assert index_counts()["instances"] == 1


def part10_bytes(ds) -> bytes:
    """Return ``ds`` written as a DICOM Part 10 file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_stow_with_only_bad_parts_is_409(server, token_for, owner):
    response = _post_parts(server, token_for(owner), [("application/dicom", b"junk")])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_stow_refuses_a_body_that_is_not_multipart(server, token_for, owner):
    response = requests.post(
        f"{server}/dicomweb/studies",
        data=b"x",
        timeout=10,
        headers={
            "Authorization": f"Bearer {token_for(owner)}",
            "Content-Type": "application/dicom",
        },
    )
    assert response.status_code == 400
    assert "multipart/related" in response.json()["message"]


def _multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    head = "".join(f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n" for ctype, _ in parts[:1])
    rest = b"".join(
        f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data
        for ctype, data in parts[1:]
    )
    return head.encode() + parts[0][1] + rest + f"\r\n--{boundary}--\r\n".encode()


class Trickle(BytesIO):
    """A request body that arrives a few bytes at a time."""

    def read(self, size: int = -1) -> bytes:
        return super().read(7)


@pytest.mark.parametrize("stream", [BytesIO, Trickle])
def test_stow_parts_are_zeroed_and_hashed_as_they_are_written(tmp_path, stream):
    polyglot = b"MZ" + bytes(range(126)) + Path(CT).read_bytes()[128:]
    body = _multipart("b0", [("application/dicom", polyglot), ("text/plain", b"hi")])
    dicom, text = spool_parts(stream(body), "b0", 2**30, tmp_path)
    stored = bytes(128) + polyglot[128:]
    assert dicom.spooled.path.read_bytes() == stored
    assert dicom.spooled.sha256 == hashlib.sha256(stored).hexdigest()
    assert dicom.spooled.size == len(stored) and not dicom.rejected
    assert text.spooled is None and text.content_type == "text/plain"
    dicom.discard()
    assert list(tmp_path.iterdir()) == []


def test_stow_parts_that_are_not_dicom_or_too_large_are_not_kept(tmp_path):
    good = Path(CT).read_bytes()
    body = _multipart("b1", [("application/dicom", b"short"), ("application/dicom", good)])
    short, large = spool_parts(BytesIO(body), "b1", len(good) - 1, tmp_path)
    assert "DICM" in short.rejected and short.spooled is None
    assert large.too_large and large.spooled is None
    short.discard()
    assert list(tmp_path.iterdir()) == []


def test_stow_body_cut_short_leaves_no_spool_file(tmp_path):
    body = _multipart("b2", [("application/dicom", Path(CT).read_bytes())] * 2)
    with pytest.raises(InvalidInput):
        spool_parts(BytesIO(body[: len(body) // 2]), "b2", 2**30, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_stow_body_over_the_request_cap_is_413_and_stores_nothing(app, server, token_for, owner):
    app.config["STOW_MAX_REQUEST_MB"] = 1
    parts = [("application/dicom", Path(CT).read_bytes()), ("text/plain", bytes(2**20))]
    response = _post_parts(server, token_for(owner), parts)
    assert response.status_code == 413
    assert response.json()["message"] == "Requests are limited to 1 MB."
    with app.app_context():
        assert index_counts()["instances"] == 0
    assert list(Path(app.config["SPOOL_DIR"]).glob("stow-*")) == []


@pytest.mark.parametrize("stream", [BytesIO, Trickle])
def test_stow_body_that_streams_past_the_cap_is_refused_and_leaves_no_spool_file(tmp_path, stream):
    """A chunked body declares no length: the cap is kept as the bytes come in."""
    body = _multipart("b3", [("application/dicom", Path(CT).read_bytes())] * 3)
    with pytest.raises(RequestEntityTooLarge):
        spool_parts(stream(body), "b3", 2**30, tmp_path, max_body_bytes=len(body) - 1)
    assert list(tmp_path.iterdir()) == []
    assert len(spool_parts(BytesIO(body), "b3", 2**30, tmp_path, len(body))) == 3


def test_frames_and_instances_come_back_from_s3_storage(make_app, s3_server, create_user):
    app = make_app(
        STORAGE_URL=f"s3://{s3_server.create_bucket()}/blobs", S3_ENDPOINT_URL=s3_server.endpoint
    )
    with app.app_context():
        owner = operations.create_user("s3@example.org", "S3", "physician", "long password 1")
        raw = api_tokens.issue_api_token(owner)
        db.session.commit()
    with harness.live_server(app) as url:
        app.config["BASE_URL"] = url
        client = DICOMwebClient(url=f"{url}/dicomweb", headers={"Authorization": f"Bearer {raw}"})
        mf = dcmread(MULTIFRAME)
        client.store_instances([mf])
        frames = client.retrieve_instance_frames(
            mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID, frame_numbers=[2]
        )
        assert frames == [mf.pixel_array[1].tobytes()]
        [back] = client.retrieve_study(mf.StudyInstanceUID)
        assert back.PixelData == mf.PixelData


def test_stow_parts_are_spooled_under_the_spool_folder_and_cleaned_up(
    app, server, token_for, owner, monkeypatch
):
    seen = []
    real_ingest = stow.ingest_spooled_files

    def spy(files, *args, **kwargs):
        seen.extend(file.path for _, file in files)
        return real_ingest(files, *args, **kwargs)

    monkeypatch.setattr(stow, "ingest_spooled_files", spy)
    response = _post_parts(server, token_for(owner), [("application/dicom", Path(CT).read_bytes())])
    assert response.status_code == 200
    spool = Path(app.config["SPOOL_DIR"])
    assert [p.is_relative_to(spool) for p in seen] == [True]
    assert not seen[0].exists()
