"""pacing_budgets: one provider account's sending budget (per second, per day, a hold after
a 429), shared by every sender process on every host (pipeline/deliver/pacing.py)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 22:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pacing_budgets',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('tat', sa.Float(), nullable=False),
        sa.Column('day_start', sa.Float(), nullable=False),
        sa.Column('day_used', sa.Integer(), nullable=False),
        sa.Column('hold_until', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('pacing_budgets')
