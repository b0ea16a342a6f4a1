"""Audit log: the append-only record of who did what."""
