"""Daily housekeeping: data we promised not to keep.

An unconfirmed sign-up is an address someone typed, possibly not their own; it has no
consent behind it, so it goes once the confirmation link has expired. Raw webhook payloads
are evidence for a while, then only personal data at rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select

from core.context import Context
from core.db import utcnow
from core.models import subscribers, subscriptions, webhook_events
from core.runs import JobResult
from core.states import JobOutcome
from subscribers.consent import end_pauses


def expire_pending(ctx: Context, now: datetime | None = None) -> int:
    """Remove sign-ups still `pending` web.confirm_expiry_hours after the (latest) sign-up;
    returns how many.

    The subscriber row goes too when it has no other subscription (nothing else to keep).
    """
    cutoff = (now or utcnow()) - timedelta(hours=ctx.config.web.confirm_expiry_hours)
    with ctx.engine.begin() as conn:
        stale = conn.execute(select(subscriptions.c.id, subscriptions.c.subscriber_id).where(
            subscriptions.c.status == "pending",
            func.coalesce(subscriptions.c.consent_at, subscriptions.c.created_at) < cutoff)).all()
        if not stale:
            return 0
        conn.execute(delete(subscriptions).where(subscriptions.c.id.in_([r.id for r in stale])))
        others = exists().where(subscriptions.c.subscriber_id == subscribers.c.id)
        conn.execute(delete(subscribers).where(
            subscribers.c.id.in_({r.subscriber_id for r in stale}), ~others))
    return len(stale)


def purge_webhook_events(ctx: Context, now: datetime | None = None) -> int:
    """Delete raw webhook events older than webhooks.retention_days; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=ctx.config.webhooks.retention_days)
    with ctx.engine.begin() as conn:
        return conn.execute(delete(webhook_events)
                            .where(webhook_events.c.received_at < cutoff)).rowcount or 0


def run_maintenance(ctx: Context) -> JobResult:
    """The scheduler's daily job."""
    expired = expire_pending(ctx)
    purged = purge_webhook_events(ctx)
    back = end_pauses(ctx)
    return JobResult(JobOutcome.OK, f"{expired} unconfirmed sign-ups expired, "
                     f"{purged} webhook events purged, {back} paused readers back")
