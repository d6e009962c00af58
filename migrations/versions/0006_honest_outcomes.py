"""issues.status and deliveries.state widened for the outcomes that say what happened
(`sent with failures`, `needs attention`) and the ledger's `posted` (on the wire, no answer)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 21:40:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    """SQLite does not enforce VARCHAR lengths, and altering a column there rebuilds the
    table, whose DROP would cascade to every row referencing it: nothing to do there."""
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    if _sqlite():
        return
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(12), type_=sa.String(24),
                              existing_nullable=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=sa.String(10), type_=sa.String(12),
                              existing_nullable=False)


def downgrade() -> None:
    # The new states do not fit the old widths: name them by their nearest old state.
    op.execute("UPDATE issues SET status = 'sent' WHERE status IN "
               "('sent with failures', 'needs attention')")
    op.execute("UPDATE issues SET status = 'paused' WHERE status = 'failed'")
    op.execute("UPDATE deliveries SET state = 'unknown' WHERE state = 'posted'")
    if _sqlite():
        return
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=sa.String(12), type_=sa.String(10),
                              existing_nullable=False)
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(24), type_=sa.String(12),
                              existing_nullable=False)
