"""deliveries: the claim index holds queued rows only, the provider message index only rows
that have an id; a claimed or recorded row version then adds two index entries, not four

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 12:50:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    queued = sa.text("state = 'queued'")
    has_id = sa.text("provider_message_id IS NOT NULL")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_message')
        batch_op.drop_index('ix_deliveries_issue_state')
        batch_op.create_index('ix_deliveries_queued', ['issue_id', 'variant', 'batch_key', 'id'], unique=False,
                              postgresql_where=queued, sqlite_where=queued)
        batch_op.create_index('ix_deliveries_provider_message', ['provider_message_id'], unique=False,
                              postgresql_where=has_id, sqlite_where=has_id)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_message')
        batch_op.drop_index('ix_deliveries_queued')
        batch_op.create_index('ix_deliveries_issue_state', ['issue_id', 'state', 'variant', 'batch_key', 'id'],
                              unique=False)
        batch_op.create_index('ix_deliveries_provider_message', ['provider_message_id'], unique=False)
