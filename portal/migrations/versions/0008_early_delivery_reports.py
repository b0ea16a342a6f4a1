"""Keep delivery reports that arrive before the message id they name is saved.

Revision ID: 0008_early_reports
Revises: 0007_provider_ids
Create Date: 2026-11-23

"""

import sqlalchemy as sa
from alembic import op

revision = "0008_early_reports"
down_revision = "0007_provider_ids"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "early_delivery_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("error_code", sa.String(length=20), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_early_delivery_reports_provider_message_id",
        "early_delivery_reports",
        ["provider_message_id"],
    )


def downgrade():
    op.drop_index(
        "ix_early_delivery_reports_provider_message_id", table_name="early_delivery_reports"
    )
    op.drop_table("early_delivery_reports")
