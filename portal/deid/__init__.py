"""De-identification (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile)."""
