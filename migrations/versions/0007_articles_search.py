"""articles full-text search: an FTS5 index on SQLite, a tsvector GIN index on PostgreSQL

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07 21:45:00
"""
from alembic import op


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None

# Must equal core.search.pg_vector(): PostgreSQL uses the index only for the same expression.
PG_EXPR = "to_tsvector('english', title || ' ' || excerpt)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_articles_search ON articles USING gin ({PG_EXPR})")
        return
    op.execute("CREATE VIRTUAL TABLE articles_fts USING fts5(title, excerpt, content='articles', "
               "content_rowid='id', tokenize='porter unicode61')")
    op.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_articles_search")
        return
    op.execute("DROP TABLE articles_fts")
