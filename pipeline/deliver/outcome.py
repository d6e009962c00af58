"""What happened to an issue, in words an operator can act on: its outcome once nothing is
left in flight, its errors grouped by reason with counts, and the next step.

An issue is `sent` only when every recipient was accepted (or suppressed); some refusals
make it `sent with failures`, any `unknown` row `needs attention` (nobody knows whether
those readers got it), and nothing accepted at all `failed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from core.models import deliveries
from core.states import DeliveryState, IssueStatus

LEFT = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.POSTED)


def final_status(counts: dict[str, int]) -> IssueStatus | None:
    """The outcome once nothing is queued or in flight, else None (still sending)."""
    if any(counts.get(s, 0) for s in LEFT):
        return None
    if counts.get(DeliveryState.UNKNOWN, 0):
        return IssueStatus.NEEDS_ATTENTION
    failed = counts.get(DeliveryState.FAILED, 0)
    if failed and not counts.get(DeliveryState.SENT, 0):
        return IssueStatus.FAILED
    return IssueStatus.SENT_WITH_FAILURES if failed else IssueStatus.SENT


@dataclass
class ErrorGroup:
    state: str  # failed | unknown
    reason: str
    count: int


def error_groups(conn: Connection, issue_id: int, limit: int = 5) -> list[ErrorGroup]:
    """Failed and unknown rows grouped by their recorded reason, largest first."""
    d = deliveries.c
    n = func.count().label("n")
    rows = conn.execute(select(d.state, d.last_error, n).where(
        d.issue_id == issue_id, d.state.in_((DeliveryState.FAILED, DeliveryState.UNKNOWN)))
        .group_by(d.state, d.last_error).order_by(n.desc(), d.state).limit(limit)).all()
    return [ErrorGroup(r.state, r.last_error or "no reason recorded", r.n) for r in rows]


def next_step(status: str, number: int, counts: dict[str, int], reason: str | None) -> str:
    """One sentence: what the operator should do about an issue in this state."""
    unknown, failed = counts.get(DeliveryState.UNKNOWN, 0), counts.get(DeliveryState.FAILED, 0)
    if status == IssueStatus.NEEDS_ATTENTION:
        return (f"{unknown} recipient{'s' if unknown != 1 else ''} may not have it: run "
                f"`kpdigest issue reconcile {number}` to ask the provider, then `kpdigest issue "
                f"retry {number} --unknown` for the rest (they may get it twice)")
    if status in (IssueStatus.FAILED, IssueStatus.PAUSED):
        why = f" ({reason})" if reason else ""
        if status == IssueStatus.FAILED and not any(counts.get(s, 0) for s in LEFT):
            return (f"nothing was accepted{why}: fix the cause, then `kpdigest issue retry "
                    f"{number} --failed` and `kpdigest issue send {number}`")
        return f"fix the cause{why}, then `kpdigest issue resume {number}` and send again"
    if status == IssueStatus.SENT_WITH_FAILURES:
        return (f"{failed} recipient{'s' if failed != 1 else ''} refused: see the reasons; "
                f"`kpdigest issue retry {number} --failed` once they are fixed")
    if status in (IssueStatus.FROZEN, IssueStatus.SENDING):
        return f"run `kpdigest issue send {number}` (or let the scheduler continue it)"
    return ""
