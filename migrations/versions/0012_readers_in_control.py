"""readers in control: subscriptions.paused_until (a pause ends by itself) and
outbound_mail, the lane for people who are waiting (sign-up, confirmation, links, welcome)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 22:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_until', TS, nullable=True))
    op.create_table(
        'outbound_mail',
        sa.Column('id', BigId, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('subscriber_id', BigId, nullable=True),
        sa.Column('dedupe_key', sa.String(length=100), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=True),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('claimed_by', sa.String(length=100), nullable=True),
        sa.Column('claimed_at', TS, nullable=True),
        sa.Column('next_attempt_at', TS, nullable=False),
        sa.Column('provider_message_id', sa.String(length=200), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', TS, nullable=False),
        sa.Column('sent_at', TS, nullable=True),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], ondelete='CASCADE',
                                name='fk_outbound_mail_subscriber_id_subscribers'),
        sa.PrimaryKeyConstraint('id', name='pk_outbound_mail'),
        sa.UniqueConstraint('dedupe_key', name='uq_outbound_mail_dedupe_key'),
    )
    op.create_index('ix_outbound_mail_due', 'outbound_mail', ['state', 'next_attempt_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_outbound_mail_due', table_name='outbound_mail')
    op.drop_table('outbound_mail')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('paused_until')
