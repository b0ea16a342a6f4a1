"""SQLite transactions: writers take the write lock at BEGIN; read-only ones take none."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import OperationalError

from portal.audit.models import AuditEvent
from portal.audit.operations import record, verify_chain
from portal.auth.api_tokens import authenticate_api_token, issue_api_token
from portal.auth.models import ApiToken
from portal.database import begin_read_only, commit_keeping_loaded
from portal.extensions import db


def other_writer(app) -> sqlite3.Connection:
    """Open a second connection to the app's database that gives up on a lock at once."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_a_writer_holds_the_write_lock_from_its_first_statement(app):
    with app.app_context():
        db.session.scalars(select(AuditEvent)).all()  # reads only, yet began IMMEDIATE
        other = other_writer(app)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        db.session.commit()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()


def test_a_read_only_transaction_neither_takes_nor_waits_for_the_write_lock(app):
    with app.app_context():
        other = other_writer(app)
        other.execute("BEGIN IMMEDIATE")
        begin_read_only()
        assert db.session.scalars(select(AuditEvent)).all() == []  # no wait on the writer
        db.session.commit()
        other.execute("ROLLBACK")
        begin_read_only()
        db.session.scalars(select(AuditEvent)).all()
        other.execute("BEGIN IMMEDIATE")  # the reader holds no write lock
        other.execute("ROLLBACK")
        other.close()
        db.session.commit()


def test_a_read_only_transaction_cannot_write(app):
    with app.app_context():
        begin_read_only()
        with pytest.raises(OperationalError, match="readonly"):
            record("test.event")  # the audit row is inserted at once
        db.session.rollback()


def test_a_writer_after_a_read_only_transaction_writes_and_chains(app):
    with app.app_context():
        for n in range(3):
            begin_read_only()
            db.session.scalars(select(AuditEvent)).all()
            db.session.commit()
            record("test.event", n=n)
            db.session.commit()
        assert verify_chain().ok
        assert verify_chain().checked == 3


def test_read_only_needs_the_transaction_ended_first(app):
    with app.app_context():
        db.session.scalars(select(AuditEvent)).all()
        with pytest.raises(RuntimeError):
            begin_read_only()
        db.session.rollback()


def test_commit_keeping_loaded_ends_the_transaction_and_keeps_what_was_read(app, create_user):
    user = create_user("radiologist")
    with app.app_context():
        begin_read_only()
        loaded = db.session.get(type(user), user.id)
        commit_keeping_loaded()
        assert not inspect(loaded).expired_attributes
        queries = []

        def note(*args):
            queries.append(args[2])

        event.listen(db.engine, "before_cursor_execute", note)
        try:
            assert loaded.email == user.email  # read without a query
        finally:
            event.remove(db.engine, "before_cursor_execute", note)
        assert queries == []
        other = other_writer(app)
        other.execute("BEGIN IMMEDIATE")  # the read's transaction is over
        other.execute("ROLLBACK")
        other.close()
        db.session.commit()  # an ordinary commit still expires
        assert "email" in inspect(loaded).expired_attributes


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_token_check_notes_use_once_a_minute(app, create_user, frozen_clock):
    user = create_user("radiologist")
    with app.app_context():
        raw = issue_api_token(user)
        db.session.commit()
        assert authenticate_api_token(raw).id == user.id
        first = db.session.scalars(select(ApiToken.last_used_at)).one()
        assert first is not None
        frozen_clock.advance(timedelta(seconds=30))
        authenticate_api_token(raw)
        assert db.session.scalars(select(ApiToken.last_used_at)).one() == first
        frozen_clock.advance(timedelta(seconds=61))
        authenticate_api_token(raw)
        assert db.session.scalars(select(ApiToken.last_used_at)).one() > first
        assert authenticate_api_token(raw + "x") is None
        db.session.rollback()
