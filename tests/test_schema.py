"""The Alembic migrations build exactly the schema core/models.py describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.db import current_revision, make_engine, migrate
from core.models import metadata

OWN_TABLES_OF_OTHERS = {"apscheduler_jobs", "alembic_version"}
# The full-text index (migration 0007) is not in the metadata: FTS5 tables are SQLite's
# own, and the PostgreSQL GIN index is on an expression (see core.search).
SEARCH_INDEX = "ix_articles_search"


def _diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(mc, metadata)
    return [d for d in diffs
            if not (d[0] == "remove_table" and (d[1].name in OWN_TABLES_OF_OTHERS
                                                or d[1].name.startswith("articles_fts")))
            and not (d[0] == "remove_index" and d[1].name == SEARCH_INDEX)]


def test_migrations_match_models(db_url):
    engine = make_engine(db_url)
    try:
        first = migrate(engine)
        assert _diff(engine) == []
        assert migrate(engine) == first == current_revision(engine)  # safe to run twice
    finally:
        engine.dispose()


def test_articles_a_run_left_ungrouped_are_listed_by_the_upgrade(db_url):
    """Before 0004 a stored article waited for grouping with no story; after it, it is its own
    story and listed, so the next grouping pass still compares it."""
    from alembic import command
    from sqlalchemy import insert, select

    from core.db import alembic_config, utcnow
    from core.models import articles, articles_ungrouped

    engine = make_engine(db_url)
    try:
        cfg = alembic_config(db_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
        with engine.begin() as conn:
            conn.execute(insert(articles).values(
                id=1, identity="a", title="grouped", created_at=utcnow(), story_id=1, tags=[], topics=[]))
            conn.execute(insert(articles).values(
                id=2, identity="b", title="waiting", created_at=utcnow(), story_id=None, tags=[], topics=[]))
        migrate(engine)
        with engine.connect() as conn:
            assert conn.execute(select(articles.c.id, articles.c.story_id).order_by(articles.c.id)).all() \
                == [(1, 1), (2, 2)]
            assert conn.execute(select(articles_ungrouped.c.article_id)).scalars().all() == [2]
    finally:
        engine.dispose()
