"""Send orders: "Send at" is run by the scheduler's dispatch when due, once, and can be
cancelled before; an order that cannot send says why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.db import utcnow
from core.errors import StateError
from core.models import issues
from pipeline.curate import queue as q
from pipeline.jobs import send_orders
from pipeline.jobs.registry import body_for
from subscribers.store import add_subscriber


def test_a_due_order_is_run_by_the_dispatch_job_once(ctx):
    for n in range(3):
        q.add_markdown(ctx, f"Tip {n} on urea", "Urea.", approve=True)
    add_subscriber(ctx, "r@example.com")
    later = send_orders.order_send(ctx, "ed@example.com", utcnow() + timedelta(hours=2))
    soon = send_orders.order_send(ctx, "ed@example.com", utcnow() + timedelta(seconds=1))
    assert send_orders.run_due(ctx) == []  # nothing due yet
    notes = send_orders.run_due(ctx, now=utcnow() + timedelta(minutes=1))
    assert notes == [f"send order {soon}: issue #1: 1 sent, 0 failed, 0 unknown, 0 queued"]
    assert send_orders.run_order(ctx, soon) is None  # claimed once only
    with ctx.engine.connect() as conn:
        row = conn.execute(select(issues.c.status, issues.c.approved_by)).one()
    assert tuple(row) == ("sent", "ed@example.com")
    send_orders.cancel_order(ctx, later)
    with pytest.raises(StateError, match="not pending"):
        send_orders.cancel_order(ctx, later)
    states = {o.id: (o.state, o.number) for o in send_orders.recent_orders(ctx)}
    assert states == {soon: ("done", 1), later: ("cancelled", None)}


def test_an_order_that_would_skip_fails_with_the_reason_and_dispatch_reports_it(ctx):
    import threading

    q.add_markdown(ctx, "The only tip", "Urea.", approve=True)
    order = send_orders.order_send(ctx, "ed@example.com")
    result = body_for("dispatch", ctx, threading.Event())()
    assert f"send order {order}: failed: the issue was skipped: 1 new item, 3 needed" \
        in result.message
    (row,) = send_orders.recent_orders(ctx)
    assert (row.state, row.result) == ("failed", "the issue was skipped: 1 new item, 3 needed")
