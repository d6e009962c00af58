"""Admin actions on an issue being sent: pause, resume, cancel, retry, progress.

The CLI (`kpdigest issue pause/resume/cancel/retry/status`) and the web admin pages call
these. A running sender reads the issue's status before every claim, so pausing or
cancelling from another process stops it after the batches in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput, StateError
from core.models import deliveries, events, issues
from core.states import FINISHED, SENDABLE, DeliveryState, IssueStatus
from pipeline.compose.issues import delivery_counts, get_issue, return_editor_picks
from pipeline.deliver.outcome import LEFT, ErrorGroup, error_groups, next_step

RATE_WINDOW = 60  # seconds of recent sends the rate is measured over


@dataclass
class Progress:
    number: int
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    rate: float = 0.0  # recipients per second
    eta_seconds: float | None = None
    pause_reason: str | None = None
    started_at: datetime | None = None
    sent_at: datetime | None = None
    errors: list[ErrorGroup] = field(default_factory=list)  # by reason, largest first
    resent: int = 0  # recipients told they may have it twice
    next_step: str = ""

    @property
    def done(self) -> int:
        return self.total - sum(self.counts.get(s, 0) for s in LEFT)


def _issue(ctx: Context, number: int) -> Any:
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        return get_issue(conn, number)


def _set_status(ctx: Context, issue_id: int, allowed: tuple[str, ...], **values: Any) -> bool:
    with ctx.engine.begin() as conn:
        n = conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.status.in_(allowed))
                         .values(**values)).rowcount
    return bool(n)


def pause_issue(ctx: Context, number: int, reason: str | None = None) -> None:
    """Stop claiming new batches; what is in flight finishes and is recorded."""
    row = _issue(ctx, number)
    if row.status == "paused":
        return
    if not _set_status(ctx, row.id, SENDABLE, status=IssueStatus.PAUSED,
                       pause_reason=reason or "paused by an admin"):
        raise StateError(f"issue #{number} is {row.status}: only a frozen or sending issue can be paused")


def resume_issue(ctx: Context, number: int) -> None:
    """Make a paused issue, or one a configuration error stopped (`failed` with a
    reason), sendable again (`issue send N` or the scheduler continues it)."""
    row = _issue(ctx, number)
    status = IssueStatus.SENDING if row.send_started_at else IssueStatus.FROZEN
    stopped = (IssueStatus.PAUSED, IssueStatus.FAILED) if row.pause_reason else (IssueStatus.PAUSED,)
    if not _set_status(ctx, row.id, stopped, status=status, pause_reason=None):
        raise StateError(f"issue #{number} is {row.status}, not paused")


def cancel_issue(ctx: Context, number: int) -> None:
    """No more sending for this issue; queued rows stay queued as the record of who
    did not get it. Sent, failed and unknown rows are kept. If it reached nobody, its
    editor picks go back to "approved"."""
    row = _issue(ctx, number)
    if row.status == "cancelled":
        return
    if not _set_status(ctx, row.id, (IssueStatus.DRAFT, *SENDABLE, IssueStatus.PAUSED),
                       status=IssueStatus.CANCELLED):
        raise StateError(f"issue #{number} is {row.status}: it cannot be cancelled")
    with ctx.engine.begin() as conn:
        return_editor_picks(conn, row.id)  # unsent: its picks are "approved" again


def retry_issue(ctx: Context, number: int, *, failed: bool = False, unknown: bool = False) -> int:
    """Queue `failed` and/or `unknown` recipients again; returns how many.

    Retrying `unknown` is deliberate: those recipients may already have the issue, so
    only an admin who accepts a possible duplicate asks for it, and each of them gets an
    event on their history ("may have received issue N twice") that `issue status` counts.
    """
    states = [s for s, on in (("failed", failed), ("unknown", unknown)) if on]
    if not states:
        raise InvalidInput("say what to retry: failed and/or unknown")
    row = _issue(ctx, number)
    if row.status in ("cancelled", "skipped", "draft"):
        raise StateError(f"issue #{number} is {row.status}: nothing to retry")
    with ctx.engine.begin() as conn:
        if unknown:
            _note_resends(conn, row.id, number)
        n = conn.execute(update(deliveries).where(deliveries.c.issue_id == row.id,
                                                  deliveries.c.state.in_(states))
                         .values(state="queued", attempts=0, batch_key=None, claimed_by=None,
                                 last_error=deliveries.c.state + " before; retried by an admin")).rowcount
        if n:
            conn.execute(update(issues).where(issues.c.id == row.id,
                                              issues.c.status.in_(FINISHED))
                         .values(status=IssueStatus.SENDING, sent_at=None, pause_reason=None))
    return int(n or 0)


RESEND = "possible_duplicate"  # the event kind a deliberate resend of `unknown` rows leaves


def _note_resends(conn: Connection, issue_id: int, number: int) -> None:
    """One event per recipient about to be sent an issue they may already have."""
    ids = conn.execute(select(deliveries.c.subscriber_id).where(
        deliveries.c.issue_id == issue_id, deliveries.c.state == DeliveryState.UNKNOWN,
        deliveries.c.subscriber_id.is_not(None))).scalars().all()
    now = utcnow()
    detail = {"issue": number, "note": f"may have received issue {number} twice"}
    for i in range(0, len(ids), 1000):
        conn.execute(insert(events), [{"subscriber_id": sid, "kind": RESEND, "detail": detail,
                                       "actor": "issue retry --unknown", "created_at": now}
                                      for sid in ids[i:i + 1000]])


def resend_count(conn: Connection, number: int) -> int:
    """Recipients told they may have received issue `number` twice."""
    return int(conn.execute(select(func.count()).select_from(events).where(
        events.c.kind == RESEND, events.c.detail["issue"].as_integer() == number)).scalar_one())


def issue_progress(ctx: Context, number: int) -> Progress:
    """Counts per state, the recent sending rate and the time left at that rate."""
    row = _issue(ctx, number)
    now = utcnow()
    with ctx.engine.connect() as conn:
        counts = delivery_counts(conn, row.id)
        errors = error_groups(conn, row.id)
        resent = resend_count(conn, number)
        recent = conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.issue_id == row.id, deliveries.c.state == "sent",
            deliveries.c.sent_at >= now - timedelta(seconds=RATE_WINDOW))).scalar_one()
        first = conn.execute(select(func.min(deliveries.c.sent_at)).where(
            deliveries.c.issue_id == row.id, deliveries.c.sent_at >= now - timedelta(seconds=RATE_WINDOW))
        ).scalar()
    span = max(1.0, (now - first).total_seconds()) if first else RATE_WINDOW
    rate = recent / span if recent else 0.0
    left = sum(counts[s] for s in LEFT)
    eta = (left / rate if rate else None) if left else 0.0
    return Progress(number=number, status=row.status, counts=counts, total=sum(counts.values()),
                    rate=rate, eta_seconds=eta, pause_reason=row.pause_reason,
                    started_at=row.send_started_at, sent_at=row.sent_at, errors=errors,
                    resent=resent,
                    next_step=next_step(row.status, number, counts, row.pause_reason))
