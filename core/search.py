"""The full-text index of articles (title and excerpt): SQLite FTS5, PostgreSQL tsvector.

PostgreSQL keeps it itself: a GIN index on the same `to_tsvector` expression the search
uses, so every insert and update is indexed by the database. SQLite's FTS5 table is an
external-content index of `articles` that the writers of articles keep in step by calling
`index_articles` (the collector's insert path) and `reindex_article` (an editor's edit).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, literal_column, select, text
from sqlalchemy.engine import Connection

from core.models import articles

FTS_TABLE = "articles_fts"
PG_CONFIG = "english"  # stemming, like FTS5's porter tokenizer
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16  # a pasted paragraph is still one bounded query


def index_articles(conn: Connection, first_id: int, last_id: int) -> None:
    """Index the articles just inserted with ids first_id..last_id (the collector's hook,
    called in the inserting transaction; ids a duplicate left unused are simply absent)."""
    if conn.dialect.name != "sqlite" or last_id < first_id:
        return
    conn.exec_driver_sql(
        f"INSERT INTO {FTS_TABLE} (rowid, title, excerpt) "
        "SELECT id, title, excerpt FROM articles WHERE id BETWEEN ? AND ?", (first_id, last_id))


def reindex_article(conn: Connection, old: Any) -> None:
    """After an update of article `old` (its row before the change): its index entry again."""
    if conn.dialect.name != "sqlite":
        return
    conn.exec_driver_sql(
        f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, title, excerpt) VALUES ('delete', ?, ?, ?)",
        (old.id, old.title, old.excerpt))
    index_articles(conn, old.id, old.id)


def terms(query: str) -> list[str]:
    """The words of a search box's text (operators and quotes are not syntax here)."""
    return _WORD.findall(query.lower())[:MAX_TERMS]


def pg_vector() -> Any:
    """The indexed expression (migration 0007 builds the GIN index on exactly this)."""
    return func.to_tsvector(literal_column(f"'{PG_CONFIG}'"),
                            articles.c.title + literal_column("' '") + articles.c.excerpt)


def match_clause(conn: Connection, query: str) -> Any:
    """A WHERE clause: articles containing every word of `query` (stemmed); None if it has none."""
    words = terms(query)
    if not words:
        return None
    if conn.dialect.name == "postgresql":
        tsquery = func.to_tsquery(literal_column(f"'{PG_CONFIG}'"), " & ".join(words))
        # Materialized: the matches come from the GIN index first. Inline, the planner may
        # walk the score index instead and compute to_tsvector for every article it passes.
        matches = select(articles.c.id).where(pg_vector().op("@@")(tsquery)) \
            .cte("fts_matches").prefix_with("MATERIALIZED")
        return articles.c.id.in_(select(matches.c.id))
    fts = " ".join(f'"{w}"' for w in words)
    return articles.c.id.in_(text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :fts")
                             .bindparams(fts=fts))
