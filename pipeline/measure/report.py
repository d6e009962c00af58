"""What editors see: aggregate clicks per issue, link, section, source and feed.

Readers are counted by `clicks.visitor` (a hash under a salt that lives one day in memory),
so "unique clickers" is exact within a day and a slight over-count across days; machine
traffic is always shown apart and never in the readers' figures.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, distinct, func, select
from sqlalchemy.engine import Connection

from core.context import Context
from core.models import clicks, deliveries, feeds, issue_links, issues
from core.states import DeliveryState
from pipeline.compose.issues import get_issue


@dataclass
class Row:
    """One line of a breakdown: readers' clicks, unique readers and machine clicks."""

    key: str
    clicks: int = 0
    unique: int = 0
    machine: int = 0
    share: float = 0.0  # of the issue's readers' clicks
    rate: float = 0.0  # unique readers / recipients (click-through)


@dataclass
class Votes:
    """Readers' "more / less like this" for one topic section or source."""

    kind: str  # section | source
    key: str
    more: int
    less: int


@dataclass
class IssueClicks:
    number: int
    recipients: int
    clicks: int
    unique: int
    machine: int
    machine_reasons: dict[str, int]
    links: list[Row] = field(default_factory=list)
    sections: list[Row] = field(default_factory=list)
    sources: list[Row] = field(default_factory=list)
    votes: list[Votes] = field(default_factory=list)  # per section, then per source


def _click_of_link() -> Any:
    """Clicks (not votes) on a link row."""
    return and_(clicks.c.link_id == issue_links.c.id, clicks.c.vote.is_(None))


def _human() -> Any:
    return func.sum(case((clicks.c.machine.is_(False), 1), else_=0))


def _breakdown(conn: Connection, issue_id: int, key: Any, total: int,
               recipients: int) -> list[Row]:
    q = (select(key.label("k"), _human().label("c"),
                func.count(distinct(case((clicks.c.machine.is_(False), clicks.c.visitor)))).label("u"),
                func.sum(case((clicks.c.machine.is_(True), 1), else_=0)).label("m"))
         .select_from(issue_links.outerjoin(clicks, _click_of_link()))
         .where(issue_links.c.issue_id == issue_id).group_by(key))
    rows = [Row(str(r.k), int(r.c or 0), int(r.u or 0), int(r.m or 0))
            for r in conn.execute(q)]
    for r in rows:
        r.share = r.clicks / total if total else 0.0
        r.rate = r.unique / recipients if recipients else 0.0
    return sorted(rows, key=lambda r: (-r.clicks, r.key))


def issue_clicks(ctx: Context, number: int) -> IssueClicks:
    """Clicks of issue `number`: totals, and by link, section and source."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        recipients = conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.issue_id == issue.id,
            deliveries.c.state == DeliveryState.SENT)).scalar_one()
        reasons = dict(conn.execute(select(func.coalesce(clicks.c.reason, ""), func.count())
                                    .where(clicks.c.issue_id == issue.id, clicks.c.vote.is_(None))
                                    .group_by(clicks.c.reason)).all())
        human = int(reasons.pop("", 0))
        unique = conn.execute(select(func.count(distinct(clicks.c.visitor))).where(
            clicks.c.issue_id == issue.id, clicks.c.machine.is_(False),
            clicks.c.vote.is_(None))).scalar_one()
        out = IssueClicks(number, int(recipients), human, int(unique),
                          sum(reasons.values()), {k: int(v) for k, v in reasons.items()})
        # A link is its URL: the same article in several variants is one line.
        for name, col in (("links", issue_links.c.url), ("sections", issue_links.c.section),
                          ("sources", issue_links.c.source)):
            setattr(out, name, _breakdown(conn, issue.id, col, human, out.recipients))
        out.votes = _votes(conn, [issue.id])
    return out


def _votes(conn: Connection, issue_ids: list[int]) -> list[Votes]:
    """Readers' votes (machines' apart: not counted) per section and per source."""
    out: list[Votes] = []
    for kind, col in (("section", issue_links.c.section), ("source", issue_links.c.source)):
        q = (select(col, func.sum(case((clicks.c.vote > 0, 1), else_=0)),
                    func.sum(case((clicks.c.vote < 0, 1), else_=0)))
             .select_from(clicks.join(issue_links, issue_links.c.id == clicks.c.link_id))
             .where(clicks.c.issue_id.in_(issue_ids), clicks.c.vote.is_not(None),
                    clicks.c.machine.is_(False)).group_by(col).order_by(col))
        out += [Votes(kind, k, int(m or 0), int(n or 0)) for k, m, n in conn.execute(q)]
    return out


@dataclass
class Suggestion:
    """A topic weight the votes suggest: shown with its numbers, applied only on approval."""

    topic: str
    more: int
    less: int
    current: float
    suggested: float


PRIOR_VOTES = 10  # votes of no opinion mixed in, so a handful of votes moves little
MAX_CHANGE = 0.5  # at most +-50 % of the current weight per suggestion


def weight_suggestions(ctx: Context, last: int = 4) -> list[Suggestion]:
    """Per configured topic, over the last `last` issues: suggested weight =
    current x (1 + 0.5 x (more - less) / (more + less + 10)), rounded to 0.05."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        ids = conn.execute(select(issues.c.id).where(issues.c.number.is_not(None))
                           .order_by(issues.c.number.desc()).limit(last)).scalars().all()
        votes = {v.key: v for v in _votes(conn, list(ids)) if v.kind == "section"}
    out = []
    for slug, topic in ctx.config.topics.items():
        v = votes.get(slug)
        if v is None:
            continue
        net = (v.more - v.less) / (v.more + v.less + PRIOR_VOTES)
        suggested = round(topic.weight * (1 + MAX_CHANGE * net) * 20) / 20
        out.append(Suggestion(slug, v.more, v.less, topic.weight, suggested))
    return out


def feed_clicks(ctx: Context, last: int = 12) -> list[dict[str, Any]]:
    """Readers' clicks per feed in each of the last `last` issues, oldest first: a feed
    whose links never earn a click shows a row of zeros."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        numbers = conn.execute(select(issues.c.id, issues.c.number).where(
            issues.c.number.is_not(None)).order_by(issues.c.number.desc()).limit(last)).all()
        ids = [i for i, _ in numbers]
        q = (select(issue_links.c.feed_id, issue_links.c.issue_id, _human().label("c"),
                    func.count(distinct(issue_links.c.article_id)).label("n"))
             .select_from(issue_links.outerjoin(clicks, _click_of_link()))
             .where(issue_links.c.issue_id.in_(ids), issue_links.c.feed_id.is_not(None))
             .group_by(issue_links.c.feed_id, issue_links.c.issue_id))
        counts = {(f, i): (int(c or 0), int(n)) for f, i, c, n in conn.execute(q)}
        names = dict(conn.execute(select(feeds.c.id, feeds.c.name)).all())
    by_number = sorted(numbers, key=lambda r: r.number)
    out = []
    for fid in sorted({f for f, _ in counts}, key=lambda f: names.get(f, "")):
        per = [counts.get((fid, i), (0, 0)) for i, _ in by_number]
        out.append({"feed_id": fid, "feed": names.get(fid, f"feed {fid}"),
                    "issues": [n for _, n in by_number], "clicks": [c for c, _ in per],
                    "links": [n for _, n in per], "total": sum(c for c, _ in per)})
    return out


def issue_csv(report: IssueClicks) -> str:
    """One line per link, section and source: the figures of `issue_clicks`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["issue", "kind", "key", "clicks", "unique_readers", "machine_clicks", "share",
                "click_through"])
    w.writerow([report.number, "issue", "", report.clicks, report.unique, report.machine,
                "1.0000" if report.clicks else "0.0000",
                f"{report.unique / report.recipients:.4f}" if report.recipients else "0.0000"])
    for kind, rows in (("link", report.links), ("section", report.sections),
                       ("source", report.sources)):
        for r in rows:
            w.writerow([report.number, kind, r.key, r.clicks, r.unique, r.machine,
                        f"{r.share:.4f}", f"{r.rate:.4f}"])
    w.writerow([])
    w.writerow(["issue", "votes_by", "key", "more_like_this", "less_like_this"])
    for v in report.votes:
        w.writerow([report.number, v.kind, v.key, v.more, v.less])
    return buf.getvalue()
