"""Daily housekeeping: expired sign-ups and old webhook payloads go, the rest stays."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, insert, select

from core.db import utcnow
from core.models import events, job_runs, subscribers, subscriptions, webhook_events
from pipeline.jobs.registry import RUNS_KEPT_DAYS, body_for
from subscribers.maintenance import expire_pending, purge_webhook_events
from subscribers.store import add_subscriber


def run_maintenance(ctx):
    """The daily job as the scheduler runs it."""
    return body_for("maintenance", ctx, threading.Event())()


def _count(ctx, table) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_expire_pending_removes_only_stale_unconfirmed_signups(ctx):
    add_subscriber(ctx, "old@example.com", confirmed=False)
    add_subscriber(ctx, "fresh@example.com", confirmed=False)
    add_subscriber(ctx, "member@example.com")
    later = utcnow() + timedelta(hours=ctx.config.web.confirm_expiry_hours + 1)
    add_subscriber(ctx, "fresh@example.com", confirmed=False)  # signed up again: clock restarts
    with ctx.engine.begin() as conn:
        conn.execute(subscriptions.update().where(subscriptions.c.subscriber_id == select(
            subscribers.c.id).where(subscribers.c.email == "fresh@example.com").scalar_subquery())
            .values(consent_at=later - timedelta(hours=1)))

    assert expire_pending(ctx, now=later) == 1
    with ctx.engine.connect() as conn:
        left = set(conn.execute(select(subscribers.c.email)).scalars())
        pending_events = conn.execute(select(func.count()).select_from(events)
                                      .where(events.c.kind == "signup_pending")).scalar_one()
    assert left == {"fresh@example.com", "member@example.com"}
    assert pending_events == 2  # fresh signed up twice; old@ went with its events
    assert expire_pending(ctx, now=later) == 0
    assert expire_pending(ctx) == 0  # nothing is old yet by the real clock


def test_purge_webhook_events_keeps_the_retention_window(ctx):
    now = utcnow()
    days = ctx.config.webhooks.retention_days
    with ctx.engine.begin() as conn:
        conn.execute(insert(webhook_events), [
            {"provider": "postmark", "event_id": str(i), "kind": "bounce", "email": "a@example.com",
             "payload": "{}", "received_at": now - timedelta(days=age)}
            for i, age in enumerate((days + 5, days + 1, days - 1, 0))])
    assert purge_webhook_events(ctx) == 2
    assert _count(ctx, webhook_events) == 2
    result = run_maintenance(ctx)
    assert result.result == "ok"
    assert result.message == ("0 unconfirmed sign-ups expired, 0 webhook events purged, "
                              "0 paused readers back, 0 old job runs forgotten, "
                              "0 old rate-limit windows")


def test_old_job_runs_are_forgotten_but_never_a_running_one(ctx):
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(insert(job_runs), [
            {"job": "weekly", "started_at": now - timedelta(days=age), "result": result}
            for age, result in ((RUNS_KEPT_DAYS + 1, "ok"), (RUNS_KEPT_DAYS + 1, "running"),
                                (RUNS_KEPT_DAYS - 1, "skipped"))])
    assert "1 old job runs forgotten" in run_maintenance(ctx).message
    with ctx.engine.connect() as conn:
        assert sorted(conn.execute(select(job_runs.c.result)).scalars()) == ["running", "skipped"]
