"""Issues: select, render once per variant, and freeze content and audience together.

Freezing writes the issue, its articles, its rendered variants and one delivery row per
recipient (a single INSERT ... SELECT) in one transaction: a crash leaves either no issue
or a complete one. One issue per list and period is a unique key in the database.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.config import Config
from core.context import Context
from core.db import new_id, utcnow
from core.errors import InvalidInput, NotFound
from core.models import (
    articles,
    deliveries,
    issue_articles,
    issue_variants,
    issues,
    lists,
    queue_items,
    subscribers,
    subscriptions,
    suppressions,
)
from core.states import DeliveryState, QueueState
from pipeline.compose.personalize import Personalizer, new_key
from pipeline.compose.render import Rendered, render_issue
from pipeline.curate.select import Selection, select_articles
from pipeline.measure.links import record_links
from subscribers.store import DEFAULT_LIST, ensure_default_list, receiving

DELIVERY_STATES = tuple(DeliveryState)


@dataclass
class BuildResult:
    issue_id: int | None
    number: int | None
    status: str
    period: str
    created: bool
    reason: str | None = None
    recipients: int = 0
    notes: list[str] = field(default_factory=list)


def period_for(now: datetime, cfg: Config) -> str:
    """The ISO week of `now` in the schedule's timezone: one weekly issue per period."""
    iso = now.astimezone(ZoneInfo(cfg.schedule.timezone)).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


_ISO_WEEK = re.compile(r"(\d{4})-W(\d{2})\Z")


def check_period(period: str) -> str:
    """An ISO week such as 2026-W48 that exists (W53 only in long years), else InvalidInput."""
    m = _ISO_WEEK.match(period.strip())
    if m:
        year, week = int(m.group(1)), int(m.group(2))
        weeks = date(year, 12, 28).isocalendar().week  # 28 December is always in the last week
        if 1 <= week <= weeks:
            return f"{year}-W{week:02d}"
    raise InvalidInput(f"--period {period!r}: expected an ISO week such as 2026-W48")


def web_url(cfg: Config, number: int) -> str:
    return f"{cfg.site.base_url.rstrip('/')}/issues/{number}"


def make_subject(cfg: Config, number: int, picked: list[dict[str, Any]], now: datetime) -> str:
    headline = picked[0]["title"] if picked else "this week"
    return cfg.digest.subject.format(name=cfg.site.name, number=number, headline=headline,
                                     date=now.strftime("%-d %B %Y"))


def variant_articles(picked: list[dict[str, Any]], variant: str) -> list[dict[str, Any]]:
    """Editor picks go to everyone; feed articles to readers of one of their topics."""
    if not variant:
        return picked
    wanted = set(variant.split(","))
    return [a for a in picked if a["picked_by"] == "editor" or wanted & set(a.get("topics") or [])]


def _audience_variants(conn: Connection, list_id: int, now: datetime) -> list[str]:
    rows = conn.execute(select(func.coalesce(subscriptions.c.topics, "")).distinct()
                        .where(subscriptions.c.list_id == list_id,
                               receiving(now))).scalars().all()
    return sorted(set(rows) | {""})


def _existing(conn: Connection, list_id: int, period: str) -> Any:
    return conn.execute(select(issues).where(issues.c.list_id == list_id,
                                             issues.c.period == period)).first()


def freeze_audience(conn: Connection, issue_id: int, list_id: int,
                    now: datetime | None = None) -> int:
    """One delivery row per active (or back from a pause), unsuppressed subscriber: a
    single INSERT ... SELECT."""
    suppressed = select(suppressions.c.id).where(suppressions.c.email == subscribers.c.email).exists()
    src = (
        select(literal(issue_id), subscribers.c.id, subscribers.c.email, subscribers.c.name,
               func.coalesce(subscriptions.c.topics, ""), literal("queued"), literal(0))
        .select_from(subscriptions.join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id))
        .where(subscriptions.c.list_id == list_id, receiving(now or utcnow()), ~suppressed)
    )
    conn.execute(insert(deliveries).from_select(
        ["issue_id", "subscriber_id", "email", "name", "variant", "state", "attempts"], src))
    return int(conn.execute(select(func.count()).select_from(deliveries)
                            .where(deliveries.c.issue_id == issue_id)).scalar_one())


def build_issue(ctx: Context, *, now: datetime | None = None, period: str | None = None,
                list_slug: str = DEFAULT_LIST, review: bool | None = None) -> BuildResult:
    """Select and freeze this period's issue, or return the one that already exists."""
    ctx.require_schema()
    cfg = ctx.config
    now = now or utcnow()
    period = check_period(period) if period else period_for(now, cfg)
    review = cfg.schedule.review if review is None else review
    try:
        with ctx.engine.begin() as conn:
            lid = ensure_default_list(conn, cfg.site.name) if list_slug == DEFAULT_LIST else \
                conn.execute(select(lists.c.id).where(lists.c.slug == list_slug)).scalar_one()
            row = _existing(conn, lid, period)
            if row is not None and row.status != "skipped":
                return BuildResult(row.id, row.number, row.status, period, created=False)
            sel = select_articles(conn, cfg, now)
            if not sel.enough(cfg):
                return _record_skip(conn, row, lid, period, sel, cfg, now)
            number = (conn.execute(select(func.max(issues.c.number))
                                   .where(issues.c.list_id == lid)).scalar() or 0) + 1
            return _freeze(conn, cfg, row, lid, period, number, sel, now, review)
    except IntegrityError:
        # Another builder (a second scheduler, a double click) froze this period first.
        with ctx.engine.connect() as conn:
            lid = conn.execute(select(lists.c.id).where(lists.c.slug == list_slug)).scalar_one()
            row = _existing(conn, lid, period)
        if row is None:
            raise
        return BuildResult(row.id, row.number, row.status, period, created=False)


def _record_skip(conn: Connection, row: Any, lid: int, period: str, sel: Selection,
                 cfg: Config, now: datetime) -> BuildResult:
    reason = sel.reason(cfg)
    if row is None:
        issue_id = new_id(conn.execute(insert(issues).values(
            list_id=lid, period=period, status="skipped", skip_reason=reason, created_at=now,
        )))
    else:
        issue_id = row.id
        conn.execute(update(issues).where(issues.c.id == row.id).values(skip_reason=reason))
    return BuildResult(int(issue_id), None, "skipped", period, created=row is None, reason=reason)


def _freeze(conn: Connection, cfg: Config, row: Any, lid: int, period: str, number: int,
            sel: Selection, now: datetime, review: bool) -> BuildResult:
    key = new_key()
    subject = make_subject(cfg, number, sel.picked, now)
    values = dict(number=number, list_id=lid, period=period,
                  status="draft" if review else "frozen", subject=subject,
                  intro=cfg.digest.intro, placeholder_key=key, skip_reason=None,
                  created_at=now, frozen_at=now)
    if row is None:
        issue_id = int(new_id(conn.execute(insert(issues).values(**values))))
    else:
        issue_id = row.id
        conn.execute(update(issues).where(issues.c.id == issue_id).values(**values))
    conn.execute(insert(issue_articles), [
        {"issue_id": issue_id, "article_id": a["id"], "position": i, "picked_by": a["picked_by"],
         "section": (a.get("topics") or [""])[0]}
        for i, a in enumerate(sel.picked)])
    if sel.queue_ids:
        conn.execute(update(queue_items).where(queue_items.c.id.in_(sel.queue_ids))
                     .values(state="used", issue_id=issue_id, updated_at=now))
    notes: list[str] = []
    web_html = ""
    for variant in _audience_variants(conn, lid, now):
        chosen = variant_articles(sel.picked, variant)
        counted = record_links(conn, cfg, issue_id, variant, chosen)  # None: counting off
        r = render_issue(cfg, number=number, date=now, subject=subject, intro=cfg.digest.intro,
                         articles=chosen, key=key, web_url=web_url(cfg, number), links=counted)
        notes += r.notes
        conn.execute(insert(issue_variants).values(
            issue_id=issue_id, variant=variant, article_ids=[a["id"] for a in chosen],
            html_template=r.html, text_template=r.text, html_bytes=r.html_bytes, notes=r.notes))
        if variant == "":
            web_html = archive_html(cfg, r, key)
            conn.execute(update(issues).where(issues.c.id == issue_id)
                         .values(preheader=r.preheader, web_html=web_html))
    recipients = freeze_audience(conn, issue_id, lid, now)
    return BuildResult(issue_id, number, values["status"], period, created=True,
                       recipients=recipients, notes=notes)


def archive_html(cfg: Config, rendered: Rendered, key: str) -> str:
    """The web version: the same HTML with generic links instead of per-recipient ones."""
    base = cfg.site.base_url.rstrip("/")
    return Personalizer(rendered.html, key).fill(
        {"unsubscribe_url": f"{base}/unsubscribe", "preferences_url": f"{base}/preferences",
         "name": "", "email": ""}, escape=html.escape)


def get_issue(conn: Connection, number: int | None = None, list_slug: str = DEFAULT_LIST) -> Any:
    """Issue `number`, or the newest numbered issue."""
    q = select(issues).join(lists, lists.c.id == issues.c.list_id).where(lists.c.slug == list_slug)
    q = q.where(issues.c.number == number) if number is not None else \
        q.where(issues.c.number.is_not(None)).order_by(issues.c.number.desc()).limit(1)
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no issue #{number}" if number is not None else "no issue has been built yet")
    return row


def issue_articles_of(conn: Connection, issue_id: int) -> list[Any]:
    return list(conn.execute(
        select(articles, issue_articles.c.picked_by, issue_articles.c.position)
        .join(issue_articles, issue_articles.c.article_id == articles.c.id)
        .where(issue_articles.c.issue_id == issue_id).order_by(issue_articles.c.position)))


def preview_next(ctx: Context, now: datetime | None = None) -> tuple[str, Selection]:
    """The next issue as it would be mailed, rendered without freezing anything."""
    ctx.require_schema()
    cfg = ctx.config
    now = now or utcnow()
    with ctx.engine.connect() as conn:
        sel = select_articles(conn, cfg, now)
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
    key = new_key()
    r = render_issue(cfg, number=number, date=now, subject=make_subject(cfg, number, sel.picked, now),
                     intro=cfg.digest.intro, articles=sel.picked, key=key,
                     web_url=web_url(cfg, number))
    return archive_html(cfg, r, key), sel


def return_editor_picks(conn: Connection, issue_id: int) -> int:
    """A cancelled issue that reached nobody (no delivery sent, being sent or of unknown
    outcome) gives its editor picks back: "approved" again, for the next issue. Returns
    how many; an issue that reached someone keeps them, as the record of what was mailed."""
    reached = conn.execute(select(deliveries.c.id).where(
        deliveries.c.issue_id == issue_id,
        deliveries.c.state.in_((DeliveryState.SENT, DeliveryState.SENDING, DeliveryState.UNKNOWN))
    ).limit(1)).first()
    if reached is not None:
        return 0
    return int(conn.execute(update(queue_items).where(
        queue_items.c.issue_id == issue_id, queue_items.c.state == QueueState.USED)
        .values(state=QueueState.APPROVED, issue_id=None, updated_at=utcnow())).rowcount or 0)


def delivery_counts(conn: Connection, issue_id: int) -> dict[str, int]:
    rows = conn.execute(select(deliveries.c.state, func.count()).where(
        deliveries.c.issue_id == issue_id).group_by(deliveries.c.state)).all()
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    counts.update({state: n for state, n in rows})
    return counts


def list_issues(ctx: Context, limit: int = 50) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(issues).order_by(issues.c.id.desc()).limit(limit)))
