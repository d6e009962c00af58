"""Cancelling an issue that reached nobody gives its editor picks back for the next issue."""

from __future__ import annotations

from sqlalchemy import select, update

from core.models import deliveries, issue_articles, queue_items
from pipeline.compose.issues import build_issue
from pipeline.curate import queue as q
from pipeline.deliver.control import cancel_issue
from subscribers.store import add_subscriber


def _tips(ctx, n: int = 3) -> list[int]:
    return [q.add_markdown(ctx, f"Tip {i} on urea for KP", "Urea helps.", approve=True)
            for i in range(n)]


def _states(ctx) -> dict[int, tuple[str, int | None]]:
    with ctx.engine.connect() as conn:
        return {r.id: (r.state, r.issue_id) for r in conn.execute(select(queue_items))}


def test_an_unsent_cancelled_issue_returns_its_picks_to_approved(ctx):
    tips = _tips(ctx)
    add_subscriber(ctx, "r@example.com")
    first = build_issue(ctx, period="2026-W01")
    assert {s for s, _ in _states(ctx).values()} == {"used"}
    cancel_issue(ctx, first.number)
    assert _states(ctx) == {t: ("approved", None) for t in tips}
    q.set_state(ctx, tips[0], "queued")  # the editor can work them again (was: "already used")
    q.set_state(ctx, tips[0], "approved")
    second = build_issue(ctx, period="2026-W02")
    with ctx.engine.connect() as conn:
        carried = conn.execute(select(issue_articles.c.article_id)
                               .where(issue_articles.c.issue_id == second.issue_id)).all()
    assert second.status == "frozen" and len(carried) == 3
    assert {s for s, _ in _states(ctx).values()} == {"used"}


def test_an_issue_that_reached_someone_keeps_its_picks_when_cancelled(ctx):
    _tips(ctx)
    add_subscriber(ctx, "r@example.com")
    add_subscriber(ctx, "s@example.com")
    built = build_issue(ctx, period="2026-W01")
    with ctx.engine.begin() as conn:
        first = conn.execute(select(deliveries.c.id).order_by(deliveries.c.id)).scalars().first()
        conn.execute(update(deliveries).where(deliveries.c.id == first).values(state="sent"))
    cancel_issue(ctx, built.number)
    assert {v for v in _states(ctx).values()} == {("used", built.issue_id)}
