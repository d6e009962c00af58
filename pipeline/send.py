"""Sending a frozen issue: claim a batch from the delivery ledger, hand it to the
transport, record each recipient's own result.

The ledger is the truth. A batch is claimed atomically (state -> sending) before it is
handed over; if the sender dies before recording the answer, those rows are `unknown`
on recovery (or re-queued with the same idempotency key where the transport has one),
never silently resent and never silently dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.engine import Connection

from kpdigest.context import Context
from kpdigest.db import is_postgres, utcnow
from kpdigest.errors import StateError
from kpdigest.models import deliveries, issue_variants, issues, suppressions
from pipeline.issues import delivery_counts, get_issue
from pipeline.message import Recipient
from pipeline.prepare import PreparedVariant
from pipeline.transports import get_transport
from pipeline.transports.base import Outcome, RetryBatch, Transport, UnknownOutcome
from subscribers.tokens import link

log = logging.getLogger(__name__)
SENDABLE = ("frozen", "sending", "paused")


def sender_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class SendReport:
    issue_number: int
    counts: dict[str, int] = field(default_factory=dict)
    sent_now: int = 0
    stopped: bool = False
    recovered_unknown: int = 0
    requeued: int = 0


def _pid_alive(claimed_by: str) -> bool | None:
    """True/False for a claim made on this host, None for another host (use the lease)."""
    host, _, rest = (claimed_by or "").partition(":")
    if host != socket.gethostname()[:40]:
        return None
    pid = int(rest.split(":")[0] or 0)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(ctx: Context, issue_id: int, transport: Transport, me: str) -> tuple[int, int]:
    """Rows left in `sending` by a dead sender: unknown, or queued again if idempotent."""
    lease = utcnow() - timedelta(seconds=ctx.config.sending.lease_seconds)
    with ctx.engine.begin() as conn:
        rows = conn.execute(select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.claimed_at)
                            .where(deliveries.c.issue_id == issue_id,
                                   deliveries.c.state == "sending")).all()
        stale_ids = [r.id for r in rows if r.claimed_by != me and (
            _pid_alive(r.claimed_by) is False
            or (_pid_alive(r.claimed_by) is None and (r.claimed_at is None or r.claimed_at < lease)))]
        if not stale_ids:
            return 0, 0
        if transport.idempotent:
            conn.execute(update(deliveries).where(deliveries.c.id.in_(stale_ids))
                         .values(state="queued", claimed_by=None))
            return 0, len(stale_ids)
        conn.execute(update(deliveries).where(deliveries.c.id.in_(stale_ids)).values(
            state="unknown", last_error="sender stopped after hand-off; outcome unknown"))
        return len(stale_ids), 0


def claim_batch(conn: Connection, issue_id: int, variant: str, size: int, me: str) -> list[Any]:
    """Atomically move up to `size` queued rows to `sending`, owned by this sender.

    PostgreSQL: FOR UPDATE SKIP LOCKED lets several senders share an issue. SQLite: the
    transaction began IMMEDIATE, so claims are serialised.
    """
    pick = (select(deliveries.c.id)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.state == "queued",
                   deliveries.c.variant == variant)
            .order_by(deliveries.c.batch_key.is_(None), deliveries.c.batch_key, deliveries.c.id)
            .limit(size))
    if is_postgres(conn):
        pick = pick.with_for_update(skip_locked=True)
    ids = list(conn.execute(pick).scalars())
    if not ids:
        return []
    first_key = conn.execute(select(deliveries.c.batch_key)
                             .where(deliveries.c.id == ids[0])).scalar()
    if first_key:  # a batch being retried keeps its idempotency key and its members
        ids = list(conn.execute(select(deliveries.c.id).where(
            deliveries.c.id.in_(ids), deliveries.c.batch_key == first_key)).scalars())
    key = first_key or uuid.uuid4().hex
    conn.execute(update(deliveries).where(deliveries.c.id.in_(ids)).values(
        state="sending", claimed_by=me, claimed_at=utcnow(), batch_key=key,
        attempts=deliveries.c.attempts + 1))
    rows = conn.execute(select(deliveries).where(deliveries.c.id.in_(ids))
                        .order_by(deliveries.c.id)).all()
    suppressed = set(conn.execute(select(suppressions.c.email).where(
        suppressions.c.email.in_([r.email for r in rows]))).scalars())
    if suppressed:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(ids),
                                              deliveries.c.email.in_(suppressed))
                     .values(state="suppressed", last_error="suppressed before sending"))
    return [r for r in rows if r.email not in suppressed]


def record(conn: Connection, outcomes: list[Outcome], me: str, max_attempts: int = 5) -> None:
    """Store each recipient's result; a retryable one goes back to the queue until it has
    used its attempts, then fails with the provider's reason."""
    now = utcnow()
    for o in outcomes:
        values: dict[str, Any] = {"state": o.state, "last_error": o.error, "claimed_by": None}
        if o.state == "retry":
            values["state"] = case((deliveries.c.attempts >= max_attempts, "failed"),
                                   else_="queued")
        if o.state == "sent":
            values.update(sent_at=now, provider_message_id=o.provider_message_id, batch_key=None)
        conn.execute(update(deliveries).where(and_(deliveries.c.id == o.delivery_id,
                                                   deliveries.c.claimed_by == me)).values(**values))
        if o.state == "suppressed":
            from subscribers.store import suppress

            email = conn.execute(select(deliveries.c.email)
                                 .where(deliveries.c.id == o.delivery_id)).scalar()
            if email:
                suppress(conn, email, "bounced", o.error)


def load_variants(ctx: Context, issue: Any) -> dict[str, PreparedVariant]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue.id)).all()
    return {r.variant: PreparedVariant(ctx.config, issue.id, issue.number, r.variant,
                                       issue.placeholder_key, issue.subject, r.html_template,
                                       r.text_template) for r in rows}


def recipients_for(ctx: Context, rows: list[Any]) -> list[Recipient]:
    base, secret = ctx.config.site.base_url, ctx.config.secret_key
    return [Recipient(r.id, r.email, r.name or "",
                      link(base, secret, "unsubscribe", r.subscriber_id or 0),
                      link(base, secret, "preferences", r.subscriber_id or 0)) for r in rows]


def send_issue(ctx: Context, number: int, *, transport: Transport | None = None,
               stop: threading.Event | None = None,
               progress: Callable[[int], None] | None = None) -> SendReport:
    """Send every queued delivery of issue `number`; safe to run again at any time."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    if issue.status == "draft":
        raise StateError(f"issue #{number} is a draft awaiting approval")
    if issue.status in ("cancelled", "skipped"):
        raise StateError(f"issue #{number} is {issue.status}")
    transport = transport or get_transport(ctx.config)
    me = sender_id()
    report = SendReport(issue_number=number)
    report.recovered_unknown, report.requeued = recover_stale(ctx, issue.id, transport, me)
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue.id, issues.c.status == "frozen")
                     .values(status="sending", send_started_at=utcnow()))
    variants = load_variants(ctx, issue)
    size = ctx.config.sending.batch_size or transport.max_batch
    transport.open()
    try:
        for name, variant in variants.items():
            while not (stop and stop.is_set()):
                with ctx.engine.begin() as conn:
                    rows = claim_batch(conn, issue.id, name, size, me)
                if not rows:
                    break
                outcomes = _send_one(transport, variant, recipients_for(ctx, rows), rows[0].batch_key)
                with ctx.engine.begin() as conn:
                    record(conn, outcomes, me, ctx.config.sending.max_attempts)
                retry_after = _retry_after(outcomes)
                if retry_after:
                    (stop or threading.Event()).wait(retry_after)
                sent = sum(1 for o in outcomes if o.state == "sent")
                report.sent_now += sent
                if progress:
                    progress(len(outcomes))
    finally:
        transport.close()
    report.stopped = bool(stop and stop.is_set())
    with ctx.engine.begin() as conn:
        report.counts = delivery_counts(conn, issue.id)
        if report.counts["queued"] == 0 and report.counts["sending"] == 0:
            conn.execute(update(issues).where(issues.c.id == issue.id,
                                              issues.c.status.in_(SENDABLE))
                         .values(status="sent", sent_at=utcnow()))
    return report


def _retry_after(outcomes: list[Outcome]) -> float:
    """Back off when a whole batch was refused for now (429/5xx)."""
    if outcomes and all(o.state == "retry" for o in outcomes):
        return min(30.0, max(0.5, getattr(outcomes[0], "retry_after", None) or 1.0))
    return 0.0


def _send_one(transport: Transport, variant: PreparedVariant, recipients: list[Recipient],
              batch_key: str) -> list[Outcome]:
    try:
        return transport.send_batch(variant, recipients, batch_key)
    except RetryBatch as exc:
        return [Outcome(r.delivery_id, "retry", error=str(exc)) for r in recipients]
    except UnknownOutcome as exc:
        return [Outcome(r.delivery_id, "unknown", error=str(exc)) for r in recipients]
