"""deliveries: the claim index holds unclaimed rows, keyed on columns that recording leaves
alone, and the unused provider message index goes, so that recording a result writes no
index entry (a HOT update in PostgreSQL, on pages filled half, fillfactor 50)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 13:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    unclaimed = sa.text("claimed_by IS NULL")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_message')
        batch_op.drop_index('ix_deliveries_queued')
        batch_op.create_index('ix_deliveries_unclaimed', ['issue_id', 'variant', 'batch_key', 'id'], unique=False,
                              postgresql_where=unclaimed, sqlite_where=unclaimed)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE deliveries SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    queued = sa.text("state = 'queued'")
    has_id = sa.text("provider_message_id IS NOT NULL")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_unclaimed')
        batch_op.create_index('ix_deliveries_queued', ['issue_id', 'variant', 'batch_key', 'id'], unique=False,
                              postgresql_where=queued, sqlite_where=queued)
        batch_op.create_index('ix_deliveries_provider_message', ['provider_message_id'], unique=False,
                              postgresql_where=has_id, sqlite_where=has_id)
