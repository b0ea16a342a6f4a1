"""Sharing one case with an outside clinician, behind an emailed one-time code."""
