"""Choosing an issue's articles: editor picks first, then the best new feed stories."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Connection

from core.config import Config
from core.models import articles, issue_articles, issues, queue_items


@dataclass
class Selection:
    picked: list[dict[str, Any]] = field(default_factory=list)
    queue_ids: list[int] = field(default_factory=list)
    new_count: int = 0

    def enough(self, cfg: Config) -> bool:
        return len(self.picked) >= cfg.selection.min_items

    def reason(self, cfg: Config) -> str:
        n = len(self.picked)
        return f"{n} new item{'' if n == 1 else 's'}, {cfg.selection.min_items} needed"


def _used_story_clause() -> Any:
    """An article whose story (near-duplicate group) was in an earlier issue is not new."""
    used = articles.alias("used")
    return exists(
        select(1).select_from(issue_articles.join(issues, issues.c.id == issue_articles.c.issue_id)
                              .join(used, used.c.id == issue_articles.c.article_id))
        .where(issues.c.status.notin_(("skipped", "cancelled")),
               or_(used.c.id == articles.c.id, used.c.story_id == articles.c.story_id))
    )


def _rejected_story_clause() -> Any:
    """A story an editor rejected stays out, whichever copy of it a feed brings."""
    rejected = articles.alias("rejected")
    return exists(
        select(1).select_from(queue_items.join(rejected, rejected.c.id == queue_items.c.article_id))
        .where(queue_items.c.state == "rejected",
               or_(rejected.c.id == articles.c.id, rejected.c.story_id == articles.c.story_id)))


def select_articles(conn: Connection, cfg: Config, now: datetime) -> Selection:
    """Approved editor items first, in editor order (pinned, then position); then the
    best-scoring new feed stories (relevance >= selection.min_score, not older than
    max_age_days, no story already in an earlier issue), at most `per_source` per source,
    each near-duplicate group once, up to `max_items`."""
    sel = Selection()
    seen_stories: set[int] = set()
    editor_rows = conn.execute(
        select(articles, queue_items.c.id.label("queue_id"))
        .join(queue_items, queue_items.c.article_id == articles.c.id)
        .where(queue_items.c.state == "approved")
        .order_by(queue_items.c.pinned.desc(), queue_items.c.position, queue_items.c.id)
    ).mappings().all()
    for row in editor_rows[: cfg.selection.max_items]:
        sel.picked.append({**row, "picked_by": "editor"})
        sel.queue_ids.append(row["queue_id"])
        seen_stories.add(row["story_id"] or row["id"])
    cutoff = now - timedelta(days=cfg.selection.max_age_days)
    candidates = conn.execute(
        select(articles)
        .where(articles.c.origin == "feed", articles.c.score >= cfg.selection.min_score,
               or_(articles.c.published_at >= cutoff,
                   and_(articles.c.published_at.is_(None), articles.c.created_at >= cutoff)),
               ~_used_story_clause(), ~_rejected_story_clause())
        .order_by(articles.c.score.desc(), articles.c.published_at.desc().nulls_last(), articles.c.id)
        .limit(cfg.selection.max_items * 20)
    ).mappings().all()
    per_source: dict[str, int] = {}
    for row in candidates:
        story = row["story_id"] or row["id"]
        if story in seen_stories:
            continue
        sel.new_count += 1
        if len(sel.picked) >= cfg.selection.max_items:
            continue
        if per_source.get(row["source"], 0) >= cfg.selection.per_source:
            continue
        per_source[row["source"]] = per_source.get(row["source"], 0) + 1
        seen_stories.add(story)
        sel.picked.append({**row, "picked_by": "feed"})
    return sel
