"""DIMSE: the C-ECHO / C-STORE listener (pynetdicom)."""
