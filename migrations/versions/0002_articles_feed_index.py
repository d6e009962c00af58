"""articles by feed: the collector reads each feed's latest stored identities

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:40:00
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.create_index('ix_articles_feed', ['feed_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_index('ix_articles_feed')
