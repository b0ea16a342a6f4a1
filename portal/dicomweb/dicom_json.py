"""Build DICOM JSON (PS3.18 F.2) attributes from index rows."""

from __future__ import annotations

from datetime import date

from pydicom.datadict import dictionary_VR, tag_for_keyword

from portal.studies.models import Instance, Series, Study

STUDY_KEYWORDS = frozenset(
    [
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
    ]
)
SERIES_KEYWORDS = frozenset(
    ["SeriesInstanceUID", "Modality", "BodyPartExamined", "SeriesDescription", "SeriesNumber"]
)


def tag_hex(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def attribute(keyword: str, *values) -> dict:
    """Return ``{tag: {"vr": .., "Value": [...]}}``; empty values leave ``Value`` out."""
    vr = dictionary_VR(keyword)
    kept = [_encode(vr, v) for v in values if v not in (None, "")]
    element = {"vr": vr, "Value": kept} if kept else {"vr": vr}
    return {tag_hex(keyword): element}


def _encode(vr: str, value):
    if vr == "PN":
        return {"Alphabetic": str(value)}
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return value


def merge(*parts: dict) -> dict:
    result: dict = {}
    for part in parts:
        result.update(part)
    return result


def retrieve_url(
    base_url: str, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> str:
    """Return the WADO-RS URL of a study, a series or an instance."""
    url = f"{base_url}/studies/{study_uid}"
    if series_uid:
        url += f"/series/{series_uid}"
    if sop_uid:
        url += f"/instances/{sop_uid}"
    return url


def study_attributes(study: Study, base_url: str, series_count: int, instance_count: int) -> dict:
    patient = study.patient
    return merge(
        attribute("StudyInstanceUID", study.study_instance_uid),
        attribute("StudyDate", study.study_date),
        attribute("StudyTime", study.study_time),
        attribute("StudyDescription", study.description),
        attribute("AccessionNumber", study.accession_number),
        attribute("ModalitiesInStudy", *study.modalities),
        attribute("ReferringPhysicianName", study.referring_physician),
        attribute("PatientName", patient.name),
        attribute("PatientID", patient.patient_id),
        attribute("PatientBirthDate", patient.birth_date),
        attribute("PatientSex", patient.sex),
        attribute("NumberOfStudyRelatedSeries", series_count),
        attribute("NumberOfStudyRelatedInstances", instance_count),
        attribute("RetrieveURL", retrieve_url(base_url, study.study_instance_uid)),
    )


def series_attributes(series: Series, base_url: str, instance_count: int) -> dict:
    study_uid = series.study.study_instance_uid
    return merge(
        attribute("StudyInstanceUID", study_uid),
        attribute("SeriesInstanceUID", series.series_instance_uid),
        attribute("Modality", series.modality),
        attribute("BodyPartExamined", series.body_part),
        attribute("SeriesDescription", series.description),
        attribute("SeriesNumber", series.series_number),
        attribute("NumberOfSeriesRelatedInstances", instance_count),
        attribute("RetrieveURL", retrieve_url(base_url, study_uid, series.series_instance_uid)),
    )


def instance_attributes(instance: Instance, base_url: str) -> dict:
    series = instance.series
    study_uid = series.study.study_instance_uid
    url = retrieve_url(base_url, study_uid, series.series_instance_uid, instance.sop_instance_uid)
    return merge(
        attribute("StudyInstanceUID", study_uid),
        attribute("SeriesInstanceUID", series.series_instance_uid),
        attribute("SOPClassUID", instance.sop_class_uid),
        attribute("SOPInstanceUID", instance.sop_instance_uid),
        attribute("InstanceNumber", instance.instance_number),
        attribute("Rows", instance.rows),
        attribute("Columns", instance.columns),
        attribute("NumberOfFrames", instance.number_of_frames),
        attribute("AvailableTransferSyntaxUID", instance.transfer_syntax_uid),
        attribute("RetrieveURL", url),
    )
