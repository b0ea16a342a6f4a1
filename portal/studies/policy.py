"""What ingest accepts: the configured limits, and the refusals it answers with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from portal.errors import InvalidInput

MB = 1024 * 1024


class IngestRejected(InvalidInput):
    """The file cannot be ingested; the message is the reason shown to the uploader."""

    title = "File rejected"


class IngestSkipped(InvalidInput):
    """The file is valid but holds no instance to store (a DICOMDIR, for one)."""

    title = "File skipped"


@dataclass(frozen=True)
class IngestLimits:
    """Caps on what one upload may cost, from ``OVERREAD_INGEST_*`` settings."""

    max_file_bytes: int
    max_pixels: int
    max_inflated_bytes: int
    zip_max_members: int
    zip_max_total_bytes: int
    spool_dir: Path
    max_deid_bytes: int = 1024 * MB  # larger files are not de-identified

    @classmethod
    def from_config(cls, config: Mapping) -> IngestLimits:
        """Read the limits from a Flask config mapping, making the spool folder."""
        spool_dir = Path(config["SPOOL_DIR"])
        spool_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            max_file_bytes=config["INGEST_MAX_FILE_MB"] * MB,
            max_pixels=config["INGEST_MAX_PIXELS"],
            max_inflated_bytes=config["INGEST_MAX_INFLATE_MB"] * MB,
            zip_max_members=config["INGEST_ZIP_MAX_MEMBERS"],
            zip_max_total_bytes=config["INGEST_ZIP_MAX_TOTAL_MB"] * MB,
            spool_dir=spool_dir,
            max_deid_bytes=config.get("INGEST_MAX_DEID_MB", 1024) * MB,
        )


def megabytes(size: int) -> str:
    """Render a byte count for a reason text, e.g. ``"12.5 MB"``."""
    return f"{size / MB:.1f} MB"
