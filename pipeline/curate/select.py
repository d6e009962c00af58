"""Choosing an issue's articles: editor picks first, then the best new feed stories.

The same walk says why every article it looked at was or was not picked (`Selection.verdicts`),
and `explain` gives the reason for any other article from the same rules, so the editors'
inbox shows exactly what `issue build` will do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.engine import Connection

from core.config import Config
from core.models import articles, issue_articles, issues, queue_items
from core.states import IssueStatus, Origin, QueueState, Verdict

CANDIDATES_PER_ITEM = 20  # the walk reads at most max_items x this many feed candidates


@dataclass
class Selection:
    picked: list[dict[str, Any]] = field(default_factory=list)
    queue_ids: list[int] = field(default_factory=list)
    new_count: int = 0
    verdicts: dict[int, tuple[Verdict, str]] = field(default_factory=dict)  # article id -> why

    def enough(self, cfg: Config) -> bool:
        return len(self.picked) >= cfg.selection.min_items

    def reason(self, cfg: Config) -> str:
        n = len(self.picked)
        return f"{n} new item{'' if n == 1 else 's'}, {cfg.selection.min_items} needed"


@lru_cache(maxsize=1)
def _used_story_clause() -> Any:
    """An article whose story (near-duplicate group) was in an earlier issue is not new."""
    used = articles.alias("used")
    return exists(
        select(1).select_from(issue_articles.join(issues, issues.c.id == issue_articles.c.issue_id)
                              .join(used, used.c.id == issue_articles.c.article_id))
        .where(issues.c.status.notin_((IssueStatus.SKIPPED, IssueStatus.CANCELLED)),
               or_(used.c.id == articles.c.id, used.c.story_id == articles.c.story_id))
    )


@lru_cache(maxsize=1)
def _rejected_story_clause() -> Any:
    """A story an editor rejected stays out, whichever copy of it a feed brings."""
    rejected = articles.alias("rejected")
    return exists(
        select(1).select_from(queue_items.join(rejected, rejected.c.id == queue_items.c.article_id))
        .where(queue_items.c.state == QueueState.REJECTED,
               or_(rejected.c.id == articles.c.id, rejected.c.story_id == articles.c.story_id)))


def _cutoff(cfg: Config, now: datetime) -> datetime:
    return now - timedelta(days=cfg.selection.max_age_days)


# What the walk itself reads: the inbox, which needs only the verdicts, asks for just these.
WALK_COLUMNS = ("id", "story_id", "source", "score", "title", "topics", "published_at")


def select_articles(conn: Connection, cfg: Config, now: datetime, *,
                    verdicts_only: bool = False) -> Selection:
    """Approved editor items first, in editor order (pinned, then position); then the
    best-scoring new feed stories (relevance >= selection.min_score, not older than
    max_age_days, no story already in an earlier issue), at most `per_source` per source,
    each near-duplicate group once, up to `max_items`. `verdicts_only` reads fewer columns
    (the picks lack the summaries then); the walk is the same."""
    sel = Selection()
    cols = [articles.c[k] for k in WALK_COLUMNS] if verdicts_only else [articles]
    seen_stories: dict[int, int] = {}  # story -> the picked article
    max_items = cfg.selection.max_items
    editor_rows = conn.execute(
        select(*cols, queue_items.c.id.label("queue_id"), queue_items.c.section)
        .join(queue_items, queue_items.c.article_id == articles.c.id)
        .where(queue_items.c.state == QueueState.APPROVED)
        .order_by(queue_items.c.pinned.desc(), queue_items.c.position, queue_items.c.id)
    ).mappings().all()
    for row in editor_rows[max_items:]:
        sel.verdicts[row["id"]] = (Verdict.ISSUE_FULL, f"{max_items} editor picks come first")
    for row in editor_rows[:max_items]:
        sel.picked.append({**row, "picked_by": Origin.EDITOR})
        sel.queue_ids.append(row["queue_id"])
        sel.verdicts[row["id"]] = (Verdict.PICKED, "approved by an editor")
        seen_stories.setdefault(row["story_id"] or row["id"], row["id"])
    cutoff = _cutoff(cfg, now)
    candidates = conn.execute(
        select(*cols)
        .where(articles.c.origin == Origin.FEED, articles.c.score >= cfg.selection.min_score,
               or_(articles.c.published_at >= cutoff,
                   and_(articles.c.published_at.is_(None), articles.c.created_at >= cutoff)),
               ~_used_story_clause(), ~_rejected_story_clause())
        .order_by(articles.c.score.desc(), articles.c.published_at.desc().nulls_last(), articles.c.id)
        .limit(max_items * CANDIDATES_PER_ITEM)
    ).mappings().all()
    per_source: dict[str, int] = {}
    for row in candidates:
        story = row["story_id"] or row["id"]
        if story in seen_stories:
            sel.verdicts.setdefault(row["id"], (Verdict.SAME_STORY,
                                                f"article {seen_stories[story]} tells it"))
            continue
        sel.new_count += 1
        if len(sel.picked) >= max_items:
            sel.verdicts[row["id"]] = (Verdict.ISSUE_FULL, f"{max_items} better items first")
            continue
        if per_source.get(row["source"], 0) >= cfg.selection.per_source:
            sel.verdicts[row["id"]] = (Verdict.SOURCE_CAP, f"{cfg.selection.per_source} from "
                                       f"{row['source'] or 'this source'} already")
            continue
        per_source[row["source"]] = per_source.get(row["source"], 0) + 1
        seen_stories[story] = row["id"]
        sel.picked.append({**row, "picked_by": Origin.FEED})
        sel.verdicts[row["id"]] = (Verdict.PICKED, f"score {row['score']:g}")
    return sel


def story_flags() -> tuple[Any, Any]:
    """Columns for a query on `articles`: (carried, rejected), the two story rules above."""
    return _used_story_clause().label("carried"), _rejected_story_clause().label("story_rejected")


def explain(sel: Selection, row: Any, cfg: Config, now: datetime) -> tuple[Verdict, str]:
    """Why the selection `sel` picks article `row` or not. `row` has the article's columns,
    `queue_state` (or None) and the `story_flags` columns. Articles the walk looked at have
    its verdict; for the others, the candidate query's rules in its order."""
    if row.id in sel.verdicts:
        return sel.verdicts[row.id]
    if row.origin != Origin.FEED:
        if row.queue_state == QueueState.REJECTED:
            return Verdict.REJECTED, "an editor rejected it"
        if row.queue_state == QueueState.USED:
            return Verdict.CARRIED, "used in an issue"
        return Verdict.WAITING, "an editor's item goes out once approved"
    if row.score < cfg.selection.min_score:
        return Verdict.BELOW_THRESHOLD, f"score {row.score:g} < {cfg.selection.min_score:g}"
    when = row.published_at if row.published_at is not None else row.created_at
    if when < _cutoff(cfg, now):
        return Verdict.TOO_OLD, f"older than {cfg.selection.max_age_days} days"
    if row.carried:
        return Verdict.CARRIED, "its story was in an earlier issue"
    if row.story_rejected:
        return Verdict.REJECTED, "an editor rejected its story"
    limit = cfg.selection.max_items * CANDIDATES_PER_ITEM
    return Verdict.ISSUE_FULL, f"ranked below the {limit} best candidates"
