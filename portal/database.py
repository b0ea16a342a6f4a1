"""Database set-up: column types and the SQLite pragmas of the embedded default."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import DateTime, Engine, event
from sqlalchemy.types import TypeDecorator

from portal.extensions import db

CONNECT_TIMEOUT_SECONDS = 10
READ_ONLY = "overread_read_only"  # execution option: see begin_read_only
_QUERY_ONLY = "overread_query_only"  # connection info: PRAGMA query_only is on


class UTCDateTime(TypeDecorator):
    """Store UTC datetimes and always hand back aware ones, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy's "begin" event below issue BEGIN IMMEDIATE: every
    # transaction takes the write lock up front, so two writers never meet
    # a stale snapshot (the audit chain and the outbox depend on it). Only
    # those begun with begin_read_only() do not, and they cannot write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:
    if conn.dialect.name != "sqlite":
        return
    # Straight to sqlite3: these run at the start of every transaction.
    sqlite = conn.connection.driver_connection
    if conn.get_execution_options().get(READ_ONLY):
        sqlite.execute("BEGIN")
        if not conn.info.get(_QUERY_ONLY):
            sqlite.execute("PRAGMA query_only=ON")
            conn.info[_QUERY_ONLY] = True
        return
    if conn.info.pop(_QUERY_ONLY, False):
        sqlite.execute("PRAGMA query_only=OFF")
    sqlite.execute("BEGIN IMMEDIATE")


def begin_read_only() -> None:
    """Begin the session's transaction as one that only reads: on SQLite, without the write lock.

    Such a transaction reads a snapshot and waits for no writer; any write in
    it fails (``PRAGMA query_only``), so it can never meet a stale snapshot.
    End it before anything writes.

    :raise RuntimeError: the session is in a transaction already.
    """
    if db.session().in_transaction():
        raise RuntimeError("begin_read_only() needs the session's transaction to be ended first")
    db.session.connection(execution_options={READ_ONLY: True})


def commit_keeping_loaded() -> None:
    """Commit the session's transaction, leaving the objects it loaded as they are.

    For ending a transaction that was only held, not used to change what
    others wrote (a read, or a caller's transaction an ingest must not keep
    the write lock through): the objects read stay usable without being
    read again. Objects are expired as usual by every other commit.
    """
    session = db.session()
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def init_app(app: Flask) -> None:
    """Set engine options that suit the configured database."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    # Bound values (patient names, say) stay out of error messages and so out of logs.
    options.setdefault("hide_parameters", True)
    if uri.startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    else:
        options.setdefault("pool_pre_ping", True)
        # A server that does not answer must fail /healthz, not hang it (and a worker).
        options.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_SECONDS})
