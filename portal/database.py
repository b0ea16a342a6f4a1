"""Database set-up: column types and the SQLite pragmas of the embedded default."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import DateTime, Engine, event
from sqlalchemy.types import TypeDecorator

CONNECT_TIMEOUT_SECONDS = 10


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
    # a stale snapshot (the audit chain and the outbox depend on it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
