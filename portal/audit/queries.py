"""Read the audit log: filtered listings and exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Select, select

from portal.audit.models import AuditEvent
from portal.extensions import db

EXPORT_FIELDS = (
    "seq",
    "created_at",
    "actor_id",
    "actor_email",
    "action",
    "case_id",
    "target",
    "ip",
    "details",
    "prev_hash",
    "hash",
)


@dataclass
class AuditFilter:
    user: str = ""
    case: str = ""
    action: str = ""

    def apply(self, query: Select) -> Select:
        if self.user.strip():
            value = self.user.strip()
            query = (
                query.where(AuditEvent.actor_id == int(value))
                if value.isdigit()
                else query.where(AuditEvent.actor_email.ilike(f"%{value}%"))
            )
        if self.case.strip().isdigit():
            query = query.where(AuditEvent.case_id == int(self.case.strip()))
        if self.action.strip():
            query = query.where(AuditEvent.action.startswith(self.action.strip()))
        return query


def list_events(filters: AuditFilter, page: int, per_page: int = 50):
    """Return one page of events, newest first."""
    query = filters.apply(select(AuditEvent)).order_by(AuditEvent.seq.desc())
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


def _rows(filters: AuditFilter) -> Iterator[dict]:
    query = filters.apply(select(AuditEvent)).order_by(AuditEvent.seq)
    for event in db.session.scalars(query.execution_options(yield_per=500)):
        row = {field: getattr(event, field) for field in EXPORT_FIELDS}
        row["created_at"] = event.created_at.isoformat()
        yield row


def export_csv(filters: AuditFilter) -> Iterator[str]:
    """Yield the matching events as CSV text, header first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    for row in _rows(filters):
        writer.writerow({key: _spreadsheet_safe(value) for key, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _spreadsheet_safe(value):
    """Quote a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_json(filters: AuditFilter) -> Iterator[str]:
    """Yield the matching events as one JSON array."""
    yield "["
    for index, row in enumerate(_rows(filters)):
        row["details"] = json.loads(row["details"])
        yield ("," if index else "") + json.dumps(row, sort_keys=True)
    yield "]\n"
