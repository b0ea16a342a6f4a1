"""Imaging studies: the patient/study/series/instance index and the one ingest path."""
