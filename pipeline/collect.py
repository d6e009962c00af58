"""`kpdigest collect`: fetch every enabled feed and store new articles, one feed at a time
isolated from the others (a broken feed is recorded and the run goes on)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from kpdigest.context import Context
from kpdigest.db import utcnow
from kpdigest.errors import FetchError
from kpdigest.models import articles, feeds
from pipeline.fetch import FetchGone, fetch, make_session
from pipeline.parse import parse_feed

log = logging.getLogger(__name__)


@dataclass
class FeedOutcome:
    feed_id: int
    name: str
    new: int = 0
    seen: int = 0
    not_modified: bool = False
    error: str | None = None
    warning: str | None = None


@dataclass
class CollectReport:
    outcomes: list[FeedOutcome] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(o.new for o in self.outcomes)

    @property
    def failed(self) -> list[FeedOutcome]:
        return [o for o in self.outcomes if o.error]


def sync_config_feeds(ctx: Context) -> None:
    """Register the feeds named in config.toml; feeds added by CLI/web stay as they are."""
    now = utcnow()
    with ctx.engine.begin() as conn:
        known = set(conn.execute(select(feeds.c.url)).scalars())
        for f in ctx.config.feeds:
            if f.url not in known:
                conn.execute(insert(feeds).values(name=f.name, url=f.url, topics=f.topics,
                                                  enabled=f.enabled, created_at=now))


def store_articles(conn: Connection, records: list[dict[str, Any]], feed_id: int | None,
                   origin: str = "feed") -> tuple[int, list[int]]:
    """Insert records whose identity is new; returns (seen-before count, new ids)."""
    if not records:
        return 0, []
    idents = [r["identity"] for r in records]
    existing = set(conn.execute(select(articles.c.identity)
                                .where(articles.c.identity.in_(idents))).scalars())
    new_ids: list[int] = []
    now = utcnow()
    for rec in records:
        if rec["identity"] in existing:
            continue
        existing.add(rec["identity"])
        values = {k: v for k, v in rec.items() if not k.startswith("_")}
        new_id = conn.execute(insert(articles).values(
            feed_id=feed_id, origin=origin, created_at=now, **values)).inserted_primary_key[0]
        conn.execute(update(articles).where(articles.c.id == new_id).values(story_id=new_id))
        new_ids.append(int(new_id))
    return len(records) - len(new_ids), new_ids


def collect_feed(ctx: Context, session: requests.Session, feed: Any, now: datetime) -> FeedOutcome:
    """Fetch, parse and store one feed; every failure is recorded on the feed row."""
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name)
    try:
        result = fetch(session, feed.url, ctx.config, feed.etag, feed.last_modified)
        if result.not_modified:
            outcome.not_modified = True
            parsed = None
        else:
            parsed = parse_feed(result.body, result.headers, result.final_url or feed.url,
                                ctx.config, feed.name, now)
    except FetchError as exc:
        outcome.error = str(exc)
        with ctx.engine.begin() as conn:
            failures = feed.consecutive_failures + 1
            values: dict[str, Any] = dict(last_error=outcome.error, last_error_at=now,
                                          last_fetched_at=now, consecutive_failures=failures)
            if isinstance(exc, FetchGone):
                values.update(enabled=False, paused=True, paused_reason=outcome.error)
            elif failures >= ctx.config.collect.max_failures:
                values.update(paused=True, paused_reason=f"{failures} failures in a row")
            conn.execute(update(feeds).where(feeds.c.id == feed.id).values(**values))
        log.warning("feed %s failed: %s", feed.name, outcome.error)
        return outcome
    with ctx.engine.begin() as conn:
        values = dict(last_fetched_at=now, last_success_at=now, consecutive_failures=0,
                      last_error=None, etag=result.headers.get("ETag") or feed.etag,
                      last_modified=result.headers.get("Last-Modified") or feed.last_modified)
        if parsed is not None:
            outcome.warning = parsed.warning
            values["last_warning"] = parsed.warning
            outcome.seen, new_ids = store_articles(conn, parsed.entries, feed.id)
            outcome.new = len(new_ids)
        conn.execute(update(feeds).where(feeds.c.id == feed.id).values(**values))
    return outcome


def collect(ctx: Context) -> CollectReport:
    """Collect every enabled, unpaused feed."""
    ctx.require_schema()
    sync_config_feeds(ctx)
    now = utcnow()
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(feeds).where(feeds.c.enabled, ~feeds.c.paused)
                            .order_by(feeds.c.id)).all()
    report = CollectReport()
    with make_session(ctx.config) as session:
        for feed in rows:
            report.outcomes.append(collect_feed(ctx, session, feed, now))
    return report
