"""Storage keys for instance blobs: random, PHI-free, and dated so age can be told.

A key looks like ``instances/3f/20261123T105943Z-3f9c...``: a shard of two hex
digits, the time the key was made, and a random UUID. Nothing in it comes
from the file. The time lets ``storage verify --repair-orphans`` leave alone a
blob whose ingest may still be on its way to committing its index row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from portal import clock

INSTANCE_PREFIX = "instances/"
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def new_instance_key() -> str:
    """Return a fresh, unique key for an instance blob."""
    token = uuid.uuid4().hex
    return f"{INSTANCE_PREFIX}{token[:2]}/{clock.now().strftime(_TIME_FORMAT)}-{token}"


def key_created_at(key: str) -> datetime | None:
    """Return when an instance key was made, or ``None`` if the key has another shape."""
    stamp = key.rsplit("/", 1)[-1].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
