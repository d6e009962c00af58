"""The editors' desk: articles full-text search (an FTS5 index on SQLite, a tsvector GIN
index on PostgreSQL), an index on score, queue items' Markdown, section and history, and
one-off send orders

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 21:45:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Must equal core.search.pg_vector(): PostgreSQL uses the index only for the same expression.
PG_EXPR = "to_tsvector('english', title || ' ' || excerpt)"


def upgrade() -> None:
    op.create_index('ix_articles_score', 'articles', ['score', 'id'])
    with op.batch_alter_table('queue_items') as batch:
        batch.add_column(sa.Column('summary_markdown', sa.Text(), nullable=True))
        batch.add_column(sa.Column('section', sa.String(length=100), nullable=True))
    op.create_table(
        'queue_item_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('item_id', sa.Integer(), nullable=False),
        sa.Column('actor', sa.String(length=320), nullable=True),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['queue_items.id'],
                                name='fk_queue_item_events_item_id_queue_items', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_queue_item_events'),
    )
    op.create_index('ix_queue_item_events_item', 'queue_item_events', ['item_id', 'id'])
    op.create_table(
        'send_orders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('requested_by', sa.String(length=320), nullable=True),
        sa.Column('force', sa.Boolean(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=True),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_send_orders'),
    )
    op.create_index('ix_send_orders_state', 'send_orders', ['state', 'run_at'])
    _search_upgrade()


def _search_upgrade() -> None:
    """detail=none, columnsize=0: the search needs only which articles hold every word (no
    phrases, no ranking), which halves what each insert writes to the index."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_articles_search ON articles USING gin ({PG_EXPR})")
        return
    op.execute("CREATE VIRTUAL TABLE articles_fts USING fts5(title, excerpt, content='articles', "
               "content_rowid='id', tokenize='porter unicode61', detail=none, columnsize=0)")
    op.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")


def downgrade() -> None:
    op.drop_table('send_orders')
    op.drop_table('queue_item_events')
    with op.batch_alter_table('queue_items') as batch:
        batch.drop_column('summary_markdown')
        batch.drop_column('section')
    op.drop_index('ix_articles_score', table_name='articles')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_articles_search")
        return
    op.execute("DROP TABLE articles_fts")
