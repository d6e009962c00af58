"""Reconciling `unknown` rows with the provider: which of the messages whose answer was
lost did it accept? `kpdigest issue reconcile N` runs it, and so does every send first.

Where the provider's API can tell (Postmark's outbound message search, Mailgun's events)
the accepted rows become `sent` with the provider's message id and the rest stay
`unknown`; with an idempotency key (Resend, within its window; the outbox) the rows go
back to the queue with their batch key and the provider answers without sending again;
elsewhere (SendGrid, SMTP, SES) they stay `unknown`, and the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update

from core.context import Context
from core.db import utcnow
from core.errors import TransportError
from core.models import deliveries, issues
from core.states import DeliveryState, IssueStatus
from pipeline.compose.issues import delivery_counts, get_issue
from pipeline.deliver.outcome import final_status
from pipeline.deliver.transports import get_transport
from pipeline.deliver.transports.base import Transport

log = logging.getLogger(__name__)

PAGE = 1000  # unknown rows asked about at a time: memory stays flat whatever the count


@dataclass
class ReconcileReport:
    number: int
    asked: int = 0  # unknown rows looked up
    accepted: int = 0  # found accepted: now `sent`
    requeued: int = 0  # back in the queue with their idempotency key
    still_unknown: int = 0
    how: str = ""  # what the transport can do, in words
    status: str = ""  # the issue's status afterwards


def reconcile_issue(ctx: Context, number: int, transport: Transport | None = None) -> ReconcileReport:
    """Ask the provider about every `unknown` row of issue `number`."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    transport = transport or get_transport(ctx.config)
    report = ReconcileReport(number=issue.number, how=transport.reconcile)
    for rows in _unknown_pages(ctx, issue.id):  # a provider outage can leave every row unknown
        report.asked += len(rows)
        if transport.idempotent:
            report.requeued += _requeue_keyed(ctx, rows, transport)
        else:
            found = transport.lookup(issue.number, rows) or {}
            report.accepted += _mark_accepted(ctx, rows, found)
    report.still_unknown = report.asked - report.accepted - report.requeued
    with ctx.engine.begin() as conn:
        counts = delivery_counts(conn, issue.id)
        outcome = final_status(counts)
        if outcome is not None and outcome != issue.status:
            conn.execute(update(issues).where(issues.c.id == issue.id,
                                              issues.c.status == IssueStatus.NEEDS_ATTENTION)
                         .values(status=outcome))
        elif outcome is None:  # rows went back to the queue: the issue is sending again
            conn.execute(update(issues).where(issues.c.id == issue.id,
                                              issues.c.status == IssueStatus.NEEDS_ATTENTION)
                         .values(status=IssueStatus.SENDING))
        report.status = str(conn.execute(select(issues.c.status)
                                         .where(issues.c.id == issue.id)).scalar_one())
    return report


def _unknown_pages(ctx: Context, issue_id: int) -> Iterator[list[Any]]:
    """The issue's `unknown` rows (id, email, claimed_at) in id order, PAGE at a time."""
    d, after = deliveries.c, 0
    while True:
        with ctx.engine.connect() as conn:
            rows = list(conn.execute(select(d.id, d.email, d.claimed_at).where(
                d.issue_id == issue_id, d.state == DeliveryState.UNKNOWN, d.id > after)
                .order_by(d.id).limit(PAGE)))
        if not rows:
            return
        yield rows
        after = rows[-1].id


def reconcile_quietly(ctx: Context, number: int, transport: Transport) -> ReconcileReport | None:
    """The same at the start of a send, which goes on if the provider cannot be asked."""
    try:
        return reconcile_issue(ctx, number, transport)
    except TransportError as exc:
        log.warning("issue #%s: could not reconcile unknown rows: %s", number, exc)
        return None


def _mark_accepted(ctx: Context, rows: list, found: dict[int, str]) -> int:
    """Rows the provider accepted become `sent`, at the time they were handed over."""
    when = {r.id: r.claimed_at or utcnow() for r in rows}
    params = [{"p_id": i, "p_pmid": pmid, "p_at": when[i]} for i, pmid in found.items()
              if i in when]
    if not params:
        return 0
    d = deliveries.c
    with ctx.engine.begin() as conn:
        conn.execute(update(deliveries).where(d.id == bindparam("p_id"),
                                              d.state == DeliveryState.UNKNOWN)
                     .values(state=DeliveryState.SENT, provider_message_id=bindparam("p_pmid"),
                             sent_at=bindparam("p_at"),
                             last_error="answer lost; the provider confirmed it accepted it"),
                     params)
    return len(params)


def _requeue_keyed(ctx: Context, rows: list, transport: Transport) -> int:
    """Unknown rows of an idempotent transport, within its key's lifetime, go back to the
    queue with their batch key: the retry is answered without a second message."""
    hours = transport.idempotency_hours
    since = utcnow() - timedelta(hours=hours) if hours else None
    ids = [r.id for r in rows if since is None or (r.claimed_at and r.claimed_at >= since)]
    d = deliveries.c
    with ctx.engine.begin() as conn:
        for i in range(0, len(ids), 900):
            conn.execute(update(deliveries).where(d.id.in_(ids[i:i + 900]),
                                                  d.state == DeliveryState.UNKNOWN)
                         .values(state=DeliveryState.QUEUED, claimed_by=None))
    return len(ids)
