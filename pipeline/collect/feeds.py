"""Managing feeds: the config's feeds registered, editors' feeds added, removed, paused,
resumed, and every feed's health for `kpdigest feeds list`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from core.context import Context
from core.db import new_id, utcnow
from core.errors import InvalidInput, NotFound, StateError
from core.models import articles, feeds
from pipeline.collect.fetch import is_http
from pipeline.collect.store import upsert_for


def sync_config_feeds(ctx: Context) -> None:
    """Register the feeds named in config.toml; feeds added by CLI/web stay as they are.

    A config feed is matched by URL or by name, so one whose URL moved (permanent redirect)
    is not added a second time under its old address.
    """
    now = utcnow()
    with ctx.engine.connect() as conn:
        known = conn.execute(select(feeds.c.url, feeds.c.name)).all()
    urls, names = {r.url for r in known}, {r.name for r in known}
    missing = [f for f in ctx.config.feeds if f.url not in urls and f.name not in names]
    if not missing:
        return
    with ctx.engine.begin() as conn:
        register_feeds(conn, [dict(name=f.name, url=f.url, topics=f.topics, enabled=f.enabled,
                                   created_at=now) for f in missing])


def register_feeds(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert feed rows, leaving out any whose URL another process registered meanwhile (two
    schedulers starting at once both find the config's feeds missing)."""
    dialect_insert = upsert_for(conn)
    for row in rows:
        conn.execute(dialect_insert(feeds).values(**row).on_conflict_do_nothing(index_elements=["url"]))


def add_feed(ctx: Context, url: str, name: str | None = None, topics: list[str] | None = None,
             allow_local: bool = False) -> int:
    """Add a feed by http(s) URL (a local file path only with `allow_local`: the command line
    may read the machine's files, a web form must not); returns its id."""
    url = url.strip()
    if not url:
        raise InvalidInput("a feed needs a URL")
    if not is_http(url) and not (allow_local and ("://" not in url or url.startswith("file://"))):
        raise InvalidInput(f"not an http(s) URL: {url!r}")
    for t in topics or []:
        if t not in ctx.config.topics:
            raise InvalidInput(f"unknown topic {t!r} (known: {', '.join(ctx.config.topics)})")
    with ctx.engine.begin() as conn:
        existing = conn.execute(select(feeds.c.id).where(feeds.c.url == url)).scalar()
        if existing is not None:
            raise StateError(f"feed {existing} already has this URL")
        return int(new_id(conn.execute(insert(feeds).values(
            name=(name or url)[:200], url=url, topics=topics or [], enabled=True,
            created_at=utcnow()))))


def find_feed(conn: Connection, ref: str | int) -> Any:
    """A feed by id, URL or exact name."""
    cond = [feeds.c.url == str(ref), feeds.c.name == str(ref)]
    if str(ref).isdigit():
        cond.append(feeds.c.id == int(ref))
    rows = conn.execute(select(feeds).where(or_(*cond))).all()
    if not rows:
        raise NotFound(f"no feed {ref!r}")
    if len(rows) > 1:
        raise InvalidInput(f"{ref!r} names {len(rows)} feeds; use the id")
    return rows[0]


def remove_feed(ctx: Context, ref: str | int) -> str:
    """Delete a feed (its articles stay, without a feed). A feed from config.toml would come
    back on the next collect, so it is refused with a hint instead."""
    with ctx.engine.begin() as conn:
        row = find_feed(conn, ref)
        if any(f.url == row.url or f.name == row.name for f in ctx.config.feeds):
            raise StateError(f"feed {row.id} ({row.name}) is defined in {ctx.config.source or 'config.toml'}:"
                             " remove it there, or pause it")
        conn.execute(delete(feeds).where(feeds.c.id == row.id))
        return str(row.name)


def pause_feed(ctx: Context, ref: str | int, reason: str = "paused by an editor") -> str:
    with ctx.engine.begin() as conn:
        row = find_feed(conn, ref)
        conn.execute(update(feeds).where(feeds.c.id == row.id).values(paused=True, paused_reason=reason))
        return str(row.name)


def resume_feed(ctx: Context, ref: str | int) -> str:
    """Un-pause (and re-enable a feed that answered 410): fetched on the next collect."""
    with ctx.engine.begin() as conn:
        row = find_feed(conn, ref)
        conn.execute(update(feeds).where(feeds.c.id == row.id).values(
            paused=False, paused_reason=None, enabled=True, consecutive_failures=0,
            next_attempt_at=None))
        return str(row.name)


@dataclass
class FeedHealth:
    id: int
    name: str
    url: str
    state: str  # ok | failing | backing off | paused | disabled | new
    articles: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_warning: str | None
    consecutive_failures: int
    next_attempt_at: datetime | None
    paused_reason: str | None


def _state(row: Any, now: datetime) -> str:
    if not row.enabled:
        return "disabled"
    if row.paused:
        return "paused"
    if row.consecutive_failures:
        return "backing off" if row.next_attempt_at and row.next_attempt_at > now else "failing"
    return "ok" if row.last_success_at else "new"


def feed_health(ctx: Context, now: datetime | None = None) -> list[FeedHealth]:
    """Every feed with its health and article count, for `kpdigest feeds list`."""
    now = now or utcnow()
    counts = (select(articles.c.feed_id, func.count().label("n"))
              .group_by(articles.c.feed_id).subquery())
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(feeds, func.coalesce(counts.c.n, 0).label("n_articles"))
                            .outerjoin(counts, counts.c.feed_id == feeds.c.id)
                            .order_by(feeds.c.id)).all()
    return [FeedHealth(r.id, r.name, r.url, _state(r, now), int(r.n_articles), r.last_success_at,
                       r.last_error, r.last_error_at, r.last_warning, r.consecutive_failures,
                       r.next_attempt_at, r.paused_reason) for r in rows]
