"""measurement (#19): counted links per issue variant, anonymous clicks, analytics consent
the individual clicks of consenting readers, and more/less-like-this votes

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-07 21:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'issue_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('issue_id', sa.Integer(), nullable=False),
        sa.Column('variant', sa.String(length=100), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=True),
        sa.Column('feed_id', sa.Integer(), nullable=True),
        sa.Column('section', sa.String(length=100), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name='fk_issue_links_issue_id_issues',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['article_id'], ['articles.id'],
                                name='fk_issue_links_article_id_articles', ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name='pk_issue_links'),
        sa.UniqueConstraint('issue_id', 'variant', 'position',
                            name='uq_issue_links_issue_variant_position'),
    )
    op.create_table(
        'clicks',
        sa.Column('id', BigId, nullable=False),
        sa.Column('click_key', sa.String(length=40), nullable=False),
        sa.Column('issue_id', sa.Integer(), nullable=False),
        sa.Column('link_id', sa.Integer(), nullable=False),
        sa.Column('at', TS, nullable=False),
        sa.Column('machine', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.String(length=20), nullable=True),
        sa.Column('visitor', sa.String(length=16), nullable=True),
        sa.Column('vote', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name='fk_clicks_issue_id_issues',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['link_id'], ['issue_links.id'], name='fk_clicks_link_id_issue_links',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_clicks'),
        sa.UniqueConstraint('click_key', name='uq_clicks_click_key'),
    )
    op.create_index('ix_clicks_issue_link', 'clicks', ['issue_id', 'link_id'])
    op.create_table(
        'analytics_consent',
        sa.Column('subscriber_id', BigId, nullable=False),
        sa.Column('given_at', TS, nullable=False),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'],
                                name='fk_analytics_consent_subscriber_id_subscribers',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('subscriber_id', name='pk_analytics_consent'),
    )
    op.create_table(
        'reader_clicks',
        sa.Column('id', BigId, nullable=False),
        sa.Column('click_key', sa.String(length=40), nullable=False),
        sa.Column('subscriber_id', BigId, nullable=False),
        sa.Column('issue_id', sa.Integer(), nullable=False),
        sa.Column('link_id', sa.Integer(), nullable=False),
        sa.Column('at', TS, nullable=False),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'],
                                name='fk_reader_clicks_subscriber_id_subscribers', ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], name='fk_reader_clicks_issue_id_issues',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['link_id'], ['issue_links.id'],
                                name='fk_reader_clicks_link_id_issue_links', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_reader_clicks'),
        sa.UniqueConstraint('click_key', name='uq_reader_clicks_click_key'),
    )
    op.create_index('ix_reader_clicks_subscriber', 'reader_clicks', ['subscriber_id'])


def downgrade() -> None:
    op.drop_index('ix_reader_clicks_subscriber', table_name='reader_clicks')
    op.drop_table('reader_clicks')
    op.drop_table('analytics_consent')
    op.drop_index('ix_clicks_issue_link', table_name='clicks')
    op.drop_table('clicks')
    op.drop_table('issue_links')
