"""The append-only, hash-chained audit log."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from portal import clock
from portal.audit.models import AuditEvent
from portal.audit.operations import GENESIS, _content_hash, record, verify_chain
from portal.extensions import db


# --- helpers ------------------------------------------------------------------
def append(app, count: int, action: str = "test.event") -> None:
    """Record ``count`` events, each in its own transaction."""
    with app.app_context():
        for n in range(count):
            record(action, target=f"thing:{n}", n=n)
            db.session.commit()


def chain(app) -> list[AuditEvent]:
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        db.session.expunge_all()
        return events


def verify(app):
    with app.app_context():
        return verify_chain()


def raw_sql(app, statement: str) -> None:
    with app.app_context():
        db.session.execute(text(statement))
        db.session.commit()


# --- the chain ----------------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_events_are_chained(app):
    append(app, 4)
    events = chain(app)
    assert [event.seq for event in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == GENESIS == "0" * 64
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert verify(app).ok and verify(app).checked == 4


def test_events_in_one_transaction_chain_too(app):
    with app.app_context():
        first, second = record("a.one"), record("a.two", case_id=3, reason="x")
        db.session.commit()
        assert (first.seq, second.seq, second.prev_hash) == (1, 2, first.hash)
    assert verify(app).ok


def test_an_event_is_inserted_at_once_not_at_the_next_flush(app):
    with app.app_context():
        event = record("a.one")
        assert event not in db.session
        assert db.session.execute(text("SELECT count(*) FROM audit_events")).scalar() == 1
        db.session.rollback()
        assert db.session.execute(text("SELECT count(*) FROM audit_events")).scalar() == 0
        db.session.rollback()


def test_request_address_is_recorded(app):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        record("login.failed", reason="wrong password")
        db.session.commit()
    assert chain(app)[0].ip == "203.0.113.9"
    assert chain(app)[0].details == '{"reason": "wrong password"}'


def test_clock_in_another_time_zone_still_verifies(app, frozen_clock):
    clock.freeze(datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))))
    append(app, 2)
    assert verify(app).ok
    assert chain(app)[0].created_at == datetime(2026, 3, 1, 7, 30, 15, 123456, tzinfo=UTC)


def test_empty_chain_is_ok(app):
    assert verify(app).ok and verify(app).checked == 0


def test_edited_details_are_named(app):
    append(app, 5)
    raw_sql(app, "UPDATE audit_events SET details = '{\"n\": 99}' WHERE seq = 3")
    report = verify(app)
    assert (report.ok, report.broken_seq, report.checked) == (False, 3, 2)
    assert "content" in report.reason


def test_forged_row_with_a_fresh_hash_breaks_the_next_link(app):
    append(app, 3)
    forged = chain(app)[1]
    forged.details = '{"n": 99}'
    raw_sql(app, f"UPDATE audit_events SET details = '{forged.details}', "
                 f"hash = '{_content_hash(forged)}' WHERE seq = 2")  # fmt: skip
    report = verify(app)
    assert (report.broken_seq, report.checked) == (3, 2)
    assert "previous-hash" in report.reason


def test_deleted_middle_row_is_reported_missing(app):
    append(app, 5)
    raw_sql(app, "DELETE FROM audit_events WHERE seq = 3")
    report = verify(app)
    assert (report.broken_seq, report.checked) == (3, 2)
    assert "missing" in report.reason


# --- append-only --------------------------------------------------------------
def edit(event: AuditEvent) -> None:
    event.action = "nothing.happened"
    db.session.flush()


def remove(event: AuditEvent) -> None:
    db.session.delete(event)
    db.session.flush()


def bulk_update(event: AuditEvent) -> None:
    db.session.execute(update(AuditEvent).values(details="{}"))


def bulk_delete(event: AuditEvent) -> None:
    db.session.execute(delete(AuditEvent).where(AuditEvent.id == event.id))


@pytest.mark.parametrize("change", [edit, remove, bulk_update, bulk_delete])
def test_orm_refuses_to_change_events(app, change):
    append(app, 2)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent)).first()
        with pytest.raises(RuntimeError, match="append-only"):
            change(event)
        db.session.rollback()
    assert verify(app).checked == 2


@pytest.mark.postgres
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET details = '{}' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
    ],
)
def test_postgres_trigger_refuses_raw_changes(app, statement):
    append(app, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        raw_sql(app, statement)
    assert verify(app).checked == 2


@pytest.mark.postgres
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_concurrent_appends_keep_one_chain(app):
    start = threading.Barrier(6)

    def writer() -> None:
        start.wait()
        append(app, 20)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    report = verify(app)
    assert report.ok and report.checked == 120


# --- flask audit verify -------------------------------------------------------
def test_cli_verify(app, runner):
    append(app, 3)
    result = runner.invoke(args=["audit", "verify"])
    assert (result.exit_code, result.output) == (0, "audit chain ok: 3 events\n")
    raw_sql(app, "DELETE FROM audit_events WHERE seq = 2")
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert "audit chain broken at event 2" in result.output
