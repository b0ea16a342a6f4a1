"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from portal.extensions import db

pytestmark = pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)


def schema_differences(app) -> list:
    """What autogenerate would write: empty when migrations and models agree."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def tables(app) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def test_upgrade_matches_the_models(app):
    assert schema_differences(app) == []
    assert set(db.metadata.tables) <= tables(app)


def test_downgrade_to_base_and_up_again(app):
    with app.app_context():
        downgrade(revision="base")
    assert tables(app) == {"alembic_version"}
    with app.app_context():
        upgrade()
    assert schema_differences(app) == []


def test_flask_db_check_finds_nothing_to_generate(app, runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
