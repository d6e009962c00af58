"""Article storage: the single insert path for new articles (a collect run's feeds and an
editor's queue add both come through here).

A new article goes in as its own story (story_id = id) and is listed in `articles_ungrouped`
for `pipeline.collect.dedupe.group_pending`, which compares it with the others later. An
identity already stored is counted as seen, never an error: a concurrent writer that stored
the same story first wins. Anything kept in step with the articles (a search index, say)
belongs beside these inserts.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from itertools import repeat
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from core.db import utcnow
from core.models import articles, articles_ungrouped
from core.search import index_articles

__all__ = ["has_ungrouped", "store_articles", "store_feed_articles"]


def store_articles(conn: Connection, records: list[dict[str, Any]], feed_id: int | None,
                   origin: str = "feed", now: datetime | None = None) -> tuple[int, list[int]]:
    """Insert records whose identity is new; returns (seen-before count, new ids).

    New rows are stories of their own, listed for `pipeline.collect.dedupe.group_pending`, which
    compares them with the others once the run has stored everything.
    """
    rows = _fresh_rows(conn, records, feed_id, origin, now)
    new_ids = sorted(aid for aid, _ in _insert_ignoring_duplicates(conn, rows))
    _list_ungrouped(conn, new_ids)
    if new_ids:
        index_articles(conn, new_ids[0], new_ids[-1])  # the full-text search's hook
    return len(records) - len(new_ids), new_ids


def store_feed_articles(conn: Connection, records: list[dict[str, Any]], feed_id: int,
                        now: datetime) -> tuple[int, int]:
    """`store_articles` for a collect run: (seen, new) counts only.

    On SQLite the rows go in as one executemany of INSERT ... ON CONFLICT DO NOTHING, whose
    row count sqlite3 sums: no look-up of the stored identities first, no RETURNING, and the
    parameters converted by SQLAlchemy's own bind processors but without its per-row
    machinery (the collector's writer spent most of its time there). psycopg reports no
    count for executemany, so PostgreSQL looks up and counts the ids RETURNING gives."""
    if conn.dialect.name == "sqlite":
        unique = list({r["identity"]: r for r in reversed(records)}.values())[::-1]  # first one wins
        if not unique:
            return len(records), 0
        ids = _new_ids(conn, len(unique))
        new = _sqlite_insert_many(conn, unique, {"feed_id": feed_id, "origin": "feed", "created_at": now},
                                  {"id": ids, "story_id": ids})
        if new:  # the ids a duplicate did not take
            conn.execute(articles_ungrouped.insert().from_select(
                ["article_id"], select(articles.c.id).where(articles.c.id.between(ids[0], ids[-1]))))
            index_articles(conn, ids[0], ids[-1])  # the full-text search's hook (FTS5)
    else:
        rows = _fresh_rows(conn, records, feed_id, "feed", now)
        ids = [aid for aid, _ in _insert_ignoring_duplicates(conn, rows)]
        _list_ungrouped(conn, ids)
        new = len(ids)
    return len(records) - new, new


def _new_ids(conn: Connection, n: int) -> list[int]:
    """Ids for `n` new articles, taken before inserting them, so that each row goes in as its
    own story (story_id = id) in one write. SQLite: the transaction began IMMEDIATE, so it
    alone writes and the next ids are known; PostgreSQL: from the id sequence. A duplicate
    that is not inserted leaves its id unused."""
    if conn.dialect.name == "postgresql":
        return list(conn.execute(text("SELECT nextval(pg_get_serial_sequence('articles', 'id')) "
                                      "FROM generate_series(1, :n)"), {"n": n}).scalars())
    first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM articles").scalar_one())
    return list(range(first, first + n))


def _list_ungrouped(conn: Connection, ids: list[int]) -> None:
    """New articles `ids`, listed for grouping."""
    if ids:
        conn.execute(articles_ungrouped.insert(), [{"article_id": i} for i in ids])


def _rows(records: list[dict[str, Any]], feed_id: int | None, origin: str,
          now: datetime) -> list[dict[str, Any]]:
    return [{**{k: v for k, v in r.items() if not k.startswith("_")},
             "feed_id": feed_id, "origin": origin, "created_at": now, "story_id": None} for r in records]


def _sqlite_insert_many(conn: Connection, records: list[dict[str, Any]], constants: dict[str, Any],
                        columns: dict[str, list[Any]] | None = None) -> int:
    """INSERT ... ON CONFLICT (identity) DO NOTHING of `records`, plus the `constants` every
    row shares (converted once) and `columns` given a value per row; how many rows went in.
    Values are converted a column at a time, and a JSON column's equal lists (a feed's
    topics, its empty tags) are encoded once."""
    if not records:
        return 0
    given = columns or {}
    keys = tuple(k for k in records[0] if not k.startswith("_")) + tuple(given) + tuple(constants)
    sql, order, processors = _sqlite_insert(conn.dialect, keys)
    params: list[Any] = []
    for k, p in zip(order, processors, strict=True):
        if k in constants:
            params.append(repeat(constants[k] if p is None else p(constants[k]), len(records)))
        else:
            values = given[k] if k in given else [r[k] for r in records]
            params.append(values if p is None else _converted(values, p))
    return int(conn.exec_driver_sql(sql, list(zip(*params, strict=True))).rowcount)


def _converted(values: list[Any], processor: Any) -> list[Any]:
    """`processor` applied to each value; lists of strings (JSON columns) encoded once each."""
    if not any(isinstance(v, list) for v in values):
        return list(map(processor, values))
    done: dict[tuple[Any, ...], Any] = {}
    out = []
    for v in values:
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            key = tuple(v)
            if key not in done:
                done[key] = processor(v)
            out.append(done[key])
        else:
            out.append(processor(v))
    return out


@lru_cache(maxsize=8)
def _sqlite_insert(dialect: Any, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
    """The compiled statement, its parameter order and each column type's bind processor."""
    stmt = sqlite.insert(articles).on_conflict_do_nothing(index_elements=["identity"])
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup or ())
    return str(compiled), order, tuple(articles.c[k].type.dialect_impl(dialect).bind_processor(dialect)
                                       for k in order)


def _fresh_rows(conn: Connection, records: list[dict[str, Any]], feed_id: int | None, origin: str,
                now: datetime | None) -> list[dict[str, Any]]:
    """Rows for the records whose identity is not stored yet (first occurrence wins), each
    with the id it will take."""
    if not records:
        return []
    unique = {r["identity"]: r for r in reversed(records)}
    existing = set(conn.execute(select(articles.c.identity)
                                .where(articles.c.identity.in_(list(unique)))).scalars())
    fresh = _rows([r for ident, r in reversed(unique.items()) if ident not in existing], feed_id, origin,
                  now or utcnow())
    for row, new_id in zip(fresh, _new_ids(conn, len(fresh)), strict=True):
        row["id"] = row["story_id"] = new_id  # its own story until grouped
    return fresh


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """INSERT ... ON CONFLICT (identity) DO NOTHING RETURNING id, identity: a concurrent
    writer that stored the same story first wins, without an error."""
    if not rows:
        return []
    stmt = (upsert_for(conn)(articles).on_conflict_do_nothing(index_elements=["identity"])
            .returning(articles.c.id, articles.c.identity))
    return [(int(r.id), r.identity) for r in conn.execute(stmt, rows)]


def upsert_for(conn: Connection) -> Any:
    """The connection's INSERT that takes ON CONFLICT. PostgreSQL's dialect is imported only
    there, where its engine has loaded it already: on SQLite it costs 0.2 s of start-up."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # lazy: start-up time (see above)

        return postgresql.insert
    return sqlite.insert


def has_ungrouped(conn: Connection) -> bool:
    """Whether any article waits for grouping: a run of 304s asks this and loads nothing else."""
    return conn.execute(select(articles_ungrouped.c.article_id).limit(1)).first() is not None
