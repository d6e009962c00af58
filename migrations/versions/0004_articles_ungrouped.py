"""articles_ungrouped: new articles are stored as their own story and listed for grouping,
so that grouping rewrites only the rows that join another story

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 13:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'articles_ungrouped',
        sa.Column('article_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['article_id'], ['articles.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('article_id'),
    )
    # Articles a run stored but did not group yet (it stopped before): listed, own story.
    op.execute("INSERT INTO articles_ungrouped (article_id) SELECT id FROM articles WHERE story_id IS NULL")
    op.execute("UPDATE articles SET story_id = id WHERE story_id IS NULL")


def downgrade() -> None:
    op.execute("UPDATE articles SET story_id = NULL WHERE id IN (SELECT article_id FROM articles_ungrouped)")
    op.drop_table('articles_ungrouped')
