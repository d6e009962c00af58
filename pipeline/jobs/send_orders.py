"""One-off sends ordered from the composer: "Send now" and "Send at".

An order is a row, so it survives restarts and every process sees it: the web app runs a
"send now" order at once in a thread of its own, and the scheduler's dispatch job runs every
order that is due (a "send at", or a "send now" whose web process died). Claiming is one
UPDATE ... WHERE state = 'pending', so two processes never run one order.

Running an order is what the weekly job does without collecting: check the composition,
build (or reuse) this period's issue, released by the editor who ordered it, send it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from core.context import Context
from core.db import new_id, utcnow
from core.errors import CheckFailed, KpdigestError, NotFound, StateError
from core.models import issues, send_orders
from core.runs import JobResult
from core.states import IssueStatus, OrderState
from pipeline.compose.check import ensure_sendable
from pipeline.compose.composer import compose_next, this_period
from pipeline.compose.issues import build_issue
from pipeline.deliver.engine import send_issue
from pipeline.deliver.review import SEND_LOCK
from pipeline.deliver.review import dispatch as review_dispatch

log = logging.getLogger(__name__)


def order_send(ctx: Context, by: str | None, at: datetime | None = None, *,
               force: bool = False) -> int:
    """Record an order to send the next issue at `at` (None: now); returns its id.
    `force` sends despite failed pre-send checks (the desk allows it to admins only)."""
    now = utcnow()
    if at is not None and at.tzinfo is None:
        raise ValueError("order_send needs an aware datetime")
    with ctx.engine.begin() as conn:
        return int(new_id(conn.execute(insert(send_orders).values(
            run_at=at or now, state=OrderState.PENDING, requested_by=by, force=force,
            created_at=now))
            ))


def cancel_order(ctx: Context, order_id: int) -> None:
    with ctx.engine.begin() as conn:
        n = conn.execute(update(send_orders).where(send_orders.c.id == order_id,
                                                   send_orders.c.state == OrderState.PENDING)
                         .values(state=OrderState.CANCELLED, finished_at=utcnow())).rowcount
    if not n:
        raise StateError(f"send order {order_id} is not pending: it cannot be cancelled")


def recent_orders(ctx: Context, limit: int = 10) -> list[Any]:
    """Pending orders first (soonest first), then the latest finished ones."""
    with ctx.engine.connect() as conn:
        pending = conn.execute(select(send_orders).where(send_orders.c.state.in_(
            (OrderState.PENDING, OrderState.RUNNING))).order_by(send_orders.c.run_at)).all()
        done = conn.execute(select(send_orders).where(send_orders.c.state.notin_(
            (OrderState.PENDING, OrderState.RUNNING)))
            .order_by(send_orders.c.id.desc()).limit(limit)).all()
    return [*pending, *done]


def get_order(ctx: Context, order_id: int) -> Any:
    with ctx.engine.connect() as conn:
        row = conn.execute(select(send_orders).where(send_orders.c.id == order_id)).first()
    if row is None:
        raise NotFound(f"no send order {order_id}")
    return row


def _claim(ctx: Context, order_id: int) -> bool:
    with ctx.engine.begin() as conn:
        return bool(conn.execute(update(send_orders).where(
            send_orders.c.id == order_id, send_orders.c.state == OrderState.PENDING)
            .values(state=OrderState.RUNNING)).rowcount)


def _finish(ctx: Context, order_id: int, state: OrderState, result: str,
            number: int | None = None) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(update(send_orders).where(send_orders.c.id == order_id).values(
            state=state, result=result, number=number, finished_at=utcnow()))


def run_order(ctx: Context, order_id: int, stop: threading.Event | None = None) -> str | None:
    """Run a pending order (None if another process has it); its outcome, in words, is
    also stored on the order."""
    if not _claim(ctx, order_id):
        return None
    order = get_order(ctx, order_id)
    number = None
    try:
        if not order.force and this_period(ctx, utcnow()) is None:  # else: checked as built
            _check_first(ctx)
        built = build_issue(ctx, review=False)
        number = built.number
        if built.status == IssueStatus.SKIPPED:
            raise StateError(f"the issue was skipped: {built.reason}")
        if built.status in (IssueStatus.SENT, IssueStatus.CANCELLED, IssueStatus.DRAFT):
            raise StateError(f"this week's issue #{built.number} is {built.status} already")
        _release(ctx, built.issue_id or 0, order.requested_by)
        if not built.created and built.status != IssueStatus.SENDING and not order.force:
            ensure_sendable(ctx, built.number or 0)  # built before, by the weekly job
        with SEND_LOCK:
            sent = send_issue(ctx, built.number or 0, stop=stop, force=True)
    except KpdigestError as exc:
        _finish(ctx, order_id, OrderState.FAILED, str(exc), number)
        return f"failed: {exc}"
    except Exception as exc:  # recorded, then raised: a bug must not look like a pending order
        _finish(ctx, order_id, OrderState.FAILED, f"error: {exc}", number)
        raise
    c = sent.counts
    result = (f"issue #{built.number}: {c['sent']} sent, {c['failed']} failed, "
              f"{c['unknown']} unknown, {c['queued']} queued")
    _finish(ctx, order_id, OrderState.DONE, result, built.number)
    return result


def _check_first(ctx: Context) -> None:
    """The pre-send check on the composition about to be frozen, before freezing it: a
    failed check leaves nothing built, so the composer still shows the issue to fix."""
    comp = compose_next(ctx, spam=True)
    if comp.checks is not None and not comp.checks.ok:
        raise CheckFailed(f"issue #{comp.number} fails its checks: "
                          + "; ".join(comp.checks.problems))


def _release(ctx: Context, issue_id: int, by: str | None) -> None:
    """The editor who ordered the send approved the issue."""
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.approved_at.is_(None))
                     .values(approved_by=by or "send order", approved_at=utcnow()))


def start_now(ctx: Context, order_id: int) -> threading.Thread:
    """Run an order in a thread of this process (the web app's "Send now")."""
    thread = threading.Thread(target=_run_logged, args=(ctx, order_id), daemon=True,
                              name=f"send-order-{order_id}")
    thread.start()
    return thread


def _run_logged(ctx: Context, order_id: int) -> None:
    try:
        log.info("send order %d: %s", order_id, run_order(ctx, order_id))
    except Exception:
        log.exception("send order %d failed", order_id)


def run_due(ctx: Context, now: datetime | None = None,
            stop: threading.Event | None = None) -> list[str]:
    """Every pending order whose time has come, oldest first."""
    now = now or utcnow()
    with ctx.engine.connect() as conn:
        due = conn.execute(select(send_orders.c.id).where(
            send_orders.c.state == OrderState.PENDING, send_orders.c.run_at <= now)
            .order_by(send_orders.c.run_at, send_orders.c.id)).scalars().all()
    notes = []
    for order_id in due:
        if stop and stop.is_set():
            break
        outcome = run_order(ctx, order_id, stop)
        if outcome is not None:
            notes.append(f"send order {order_id}: {outcome}")
    return notes


def dispatch(ctx: Context, stop: threading.Event | None = None) -> JobResult:
    """The scheduler's frequent job: due send orders, then the review dispatch."""
    notes = run_due(ctx, stop=stop)
    result = review_dispatch(ctx, stop=stop)
    if not notes:
        return result
    return JobResult(result.result, "; ".join([*notes, result.message]), noop=False)
