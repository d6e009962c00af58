"""The editors' inbox: every collected article with its topics, score and the keywords that
earned it, its story, and what the automatic selection would do with it now.

The verdicts come from `pipeline.curate.select` itself (one walk per page), so the inbox
says exactly what `issue build` would do at this moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Text, and_, cast, func, not_, or_, select
from sqlalchemy.engine import Connection

from core.config import Config
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.models import articles, feeds, queue_items
from core.search import match_clause
from core.states import ArticleState, QueueState, Verdict
from pipeline.collect.relevance import keyword_hits
from pipeline.collect.sanitize import html_to_text
from pipeline.curate import queue as q
from pipeline.curate.select import Selection, explain, select_articles, story_flags

PAGE_SIZE = 50
SORTS = ("score", "date")
ACTIONS = ("queue", "approve", "reject", "pin", "unpin", "requeue")
MAX_PAGE = 2000  # offsets past this are refused: narrow the filters instead


@dataclass(frozen=True)
class Filters:
    topic: str | None = None
    feed: int | None = None
    state: ArticleState | None = None
    since: date | None = None
    until: date | None = None
    query: str = ""
    sort: str = "score"
    page: int = 1


@dataclass
class Entry:
    id: int
    title: str
    link: str | None
    source: str
    feed: str | None
    when: datetime
    topics: list[str]
    score: float
    excerpt: str
    state: ArticleState
    verdict: Verdict
    why: str
    queue_id: int | None = None
    queue_state: str | None = None
    pinned: bool = False
    copies: int = 1
    copy_sources: list[str] = field(default_factory=list)
    keywords: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def actions(self) -> list[str]:
        """Only the actions that apply to the article's state."""
        if self.queue_state == QueueState.USED or self.state == ArticleState.USED:
            return []
        if self.queue_state == QueueState.REJECTED:
            return ["requeue"]
        if self.queue_state == QueueState.QUEUED:
            return ["approve", "reject", "unpin" if self.pinned else "pin"]
        if self.queue_state == QueueState.APPROVED:
            return ["reject", "unpin" if self.pinned else "pin"]
        return ["queue", "approve", "reject", "pin"]


@dataclass
class Page:
    entries: list[Entry]
    filters: Filters
    has_next: bool
    skip_warning: str | None  # the next issue would be skipped, and why
    picked: int


def parse_filters(cfg: Config, args: dict[str, Any]) -> Filters:
    """Filters from a form or the command line; a bad value is an InvalidInput naming it."""
    topic = (args.get("topic") or "").strip() or None
    if topic and topic not in cfg.topics:
        raise InvalidInput(f"topic: {topic!r} is not one of {', '.join(cfg.topics)}")
    state = (args.get("state") or "").strip() or None
    if state and state not in ArticleState.__members__.values():
        raise InvalidInput(f"state: {state!r} is not one of {', '.join(ArticleState)}")
    sort = (args.get("sort") or "score").strip()
    if sort not in SORTS:
        raise InvalidInput(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
    return Filters(topic=topic, feed=_int(args.get("feed"), "feed"),
                   state=ArticleState(state) if state else None,
                   since=_date(args.get("since"), "since"), until=_date(args.get("until"), "until"),
                   query=str(args.get("q") or "")[:500], sort=sort,
                   page=min(max(_int(args.get("page"), "page") or 1, 1), MAX_PAGE))


def _int(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name}: {value!r} is not a number") from exc


def _date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise InvalidInput(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from exc


def _state_clauses(cfg: Config, flags: tuple[Any, Any]) -> dict[ArticleState, Any]:
    """Each state as SQL, in the order `_state` decides it (so the two always agree)."""
    carried, rejected = (f.element for f in flags)
    qs = queue_items.c.state
    no_item = queue_items.c.id.is_(None)
    fresh = and_(no_item, not_(carried), not_(rejected))
    return {
        ArticleState.REJECTED: or_(qs == QueueState.REJECTED, and_(no_item, not_(carried), rejected)),
        ArticleState.USED: and_(or_(no_item, qs != QueueState.REJECTED),
                                or_(qs == QueueState.USED, carried)),
        ArticleState.QUEUED: and_(qs.in_((QueueState.QUEUED, QueueState.APPROVED)), not_(carried)),
        ArticleState.BELOW_THRESHOLD: and_(fresh, articles.c.score < cfg.selection.min_score),
        ArticleState.NEW: and_(fresh, articles.c.score >= cfg.selection.min_score),
    }


def _state(row: Any, cfg: Config) -> ArticleState:
    if row.queue_state == QueueState.REJECTED:
        return ArticleState.REJECTED
    if row.queue_state == QueueState.USED or row.carried:
        return ArticleState.USED
    if row.queue_state in (QueueState.QUEUED, QueueState.APPROVED):
        return ArticleState.QUEUED
    if row.story_rejected:
        return ArticleState.REJECTED
    if row.score < cfg.selection.min_score:
        return ArticleState.BELOW_THRESHOLD
    return ArticleState.NEW


def _base_query(cfg: Config) -> Any:
    flags = story_flags()
    cols = [articles.c[k] for k in ("id", "title", "link", "source", "origin", "published_at",
                                    "created_at", "topics", "score", "excerpt", "story_id")]
    return select(*cols, feeds.c.name.label("feed_name"), queue_items.c.id.label("queue_id"),
                  queue_items.c.state.label("queue_state"), queue_items.c.pinned, *flags) \
        .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id)
                     .outerjoin(queue_items, queue_items.c.article_id == articles.c.id)), flags


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _page_ids(conn: Connection, cfg: Config, f: Filters) -> list[int]:
    """The ids of one page (and one more, to know whether a next page exists): a query over
    `articles` with only what the filters need, so that the per-row story flags and joins
    of the page's rows are computed for those rows alone, never for every match."""
    query = select(articles.c.id)
    if f.state is not None:
        flags = story_flags()
        query = query.select_from(articles.outerjoin(
            queue_items, queue_items.c.article_id == articles.c.id)) \
            .where(_state_clauses(cfg, flags)[f.state])
    if f.topic:
        query = query.where(cast(articles.c.topics, Text).like(f'%"{f.topic}"%'))
    if f.feed is not None:
        query = query.where(articles.c.feed_id == f.feed)
    if f.since:
        query = query.where(articles.c.published_at >= _day_start(f.since))
    if f.until:
        query = query.where(articles.c.published_at < _day_start(f.until + timedelta(days=1)))
    if f.query.strip():
        match = match_clause(conn, f.query)
        if match is None:
            raise InvalidInput(f"search: {f.query!r} has no words to look for")
        query = query.where(match)
    order = (articles.c.published_at.desc().nulls_last(), articles.c.id.desc()) \
        if f.sort == "date" else (articles.c.score.desc(), articles.c.id.desc())
    return list(conn.execute(query.order_by(*order).limit(PAGE_SIZE + 1)
                             .offset((f.page - 1) * PAGE_SIZE)).scalars())


def list_articles(ctx: Context, filters: Filters | None = None,
                  now: datetime | None = None) -> Page:
    """One page of the inbox, newest or best first, each with the selection's verdict."""
    ctx.require_schema()
    cfg, f, now = ctx.config, filters or Filters(), now or utcnow()
    with ctx.engine.connect() as conn:
        ids = _page_ids(conn, cfg, f)
        query, _flags = _base_query(cfg)
        found = {r.id: r for r in conn.execute(query.where(articles.c.id.in_(ids[:PAGE_SIZE])))}
        rows = [found[i] for i in ids if i in found]
        sel = select_articles(conn, cfg, now, verdicts_only=True)
        stories = _stories(conn, [r.story_id or r.id for r in rows[:PAGE_SIZE]])
    entries = [_entry(r, sel, cfg, now, stories) for r in rows[:PAGE_SIZE]]
    warning = None if sel.enough(cfg) else f"The next issue would be skipped: {sel.reason(cfg)}."
    return Page(entries, f, len(ids) > PAGE_SIZE, warning, len(sel.picked))


def feed_names(ctx: Context) -> list[Any]:
    """(id, name) of every feed, for the feed filter (no article counts: that is a scan)."""
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(feeds.c.id, feeds.c.name).order_by(feeds.c.name)))


def _stories(conn: Connection, story_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """Per story: (feed or source, copies) pairs, bounded by the number of distinct feeds."""
    if not story_ids:
        return {}
    name = func.coalesce(feeds.c.name, articles.c.source)
    rows = conn.execute(select(articles.c.story_id, name, func.count())
                        .select_from(articles.outerjoin(feeds, feeds.c.id == articles.c.feed_id))
                        .where(articles.c.story_id.in_(set(story_ids)))
                        .group_by(articles.c.story_id, name).order_by(articles.c.story_id, name)).all()
    out: dict[int, list[tuple[str, int]]] = {}
    for story, source, n in rows:
        out.setdefault(story, []).append((source or "", int(n)))
    return out


def _entry(row: Any, sel: Selection, cfg: Config, now: datetime,
           stories: dict[int, list[tuple[str, int]]]) -> Entry:
    verdict, why = explain(sel, row, cfg, now)
    copies = stories.get(row.story_id or row.id, [])
    return Entry(
        id=row.id, title=row.title, link=row.link, source=row.source, feed=row.feed_name,
        when=row.published_at or row.created_at, topics=list(row.topics or []), score=row.score,
        excerpt=row.excerpt, state=_state(row, cfg), verdict=verdict, why=why,
        queue_id=row.queue_id, queue_state=row.queue_state, pinned=bool(row.pinned),
        copies=sum(n for _, n in copies) or 1, copy_sources=[s for s, _ in copies],
        keywords=keyword_hits(f"{row.title}\n{row.excerpt}", cfg.topics))


def show_article(ctx: Context, article_id: int, now: datetime | None = None) -> Entry:
    """One article with its verdict, story and keywords (the summary's text included)."""
    ctx.require_schema()
    cfg, now = ctx.config, now or utcnow()
    query, _flags = _base_query(cfg)
    with ctx.engine.connect() as conn:
        row = conn.execute(query.where(articles.c.id == article_id)).first()
        if row is None:
            raise NotFound(f"no article {article_id}")
        summary = conn.execute(select(articles.c.summary_html)
                               .where(articles.c.id == article_id)).scalar_one()
        sel = select_articles(conn, cfg, now, verdicts_only=True)
        stories = _stories(conn, [row.story_id or row.id])
    entry = _entry(row, sel, cfg, now, stories)
    entry.keywords = keyword_hits(f"{row.title}\n{html_to_text(summary)}", cfg.topics)
    return entry


def act(ctx: Context, article_id: int, action: str, by: str | None = None) -> str:
    """One click from the list: queue, approve, reject ("never in a digest"), pin (approve
    and lead the issue), unpin, requeue. Returns what was done, in words."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    item = _item_of(ctx, article_id)
    if item is None:
        if action in ("unpin", "requeue"):
            raise InvalidInput(f"article {article_id} is not in the queue")
        item = q.add_article(ctx, article_id, approve=action in ("approve", "pin"), added_by=by)
        if action == "reject":
            q.set_state(ctx, item, QueueState.REJECTED, by=by)
    elif action in ("approve", "pin"):
        q.set_state(ctx, item, QueueState.APPROVED, by=by)
    elif action == "reject":
        q.set_state(ctx, item, QueueState.REJECTED, by=by)
    elif action in ("requeue", "queue"):
        q.set_state(ctx, item, QueueState.QUEUED, by=by)
    if action in ("pin", "unpin"):
        q.pin(ctx, item, action == "pin", by=by)
    return {"queue": "queued", "approve": "approved", "reject": "rejected: never in a digest",
            "pin": "approved and pinned to the top", "unpin": "unpinned",
            "requeue": "back in the queue"}[action]


def _item_of(ctx: Context, article_id: int) -> int | None:
    with ctx.engine.connect() as conn:
        if conn.execute(select(articles.c.id).where(articles.c.id == article_id)).scalar() is None:
            raise NotFound(f"no article {article_id}")
        return conn.execute(select(queue_items.c.id)
                            .where(queue_items.c.article_id == article_id)).scalar()
