"""Index the provider's message id: Twilio delivery reports look rows up by it.

Revision ID: 0007_provider_ids
Revises: 0006_paging
Create Date: 2026-11-23

"""

from alembic import op

revision = "0007_provider_ids"
down_revision = "0006_paging"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.create_index("ix_notifications_provider_message_id", ["provider_message_id"])


def downgrade():
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_index("ix_notifications_provider_message_id")
