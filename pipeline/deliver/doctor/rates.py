"""Complaint and hard-bounce rates of the sending domain over a rolling window (30 days),
from what is already stored: recipients the ledger marked `sent`, and the provider
reports the webhooks stored in `webhook_events` (kinds `complaint`, `hard_bounce`).

Gmail's line is a 0.3 % spam-complaint rate (5.7.28 beyond it); 0.1 % is its "keep
below". Past `reputation.complaint_pause` or `reputation.hard_bounce_pause` the issue
that is sending is paused (`enforce`); `complaint_warn` is shown on the dashboard and in
`issue status`. One installation sends from one From domain, so every stored send and
report counts for `sender.domain` (the tables keep no domain per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from core.context import Context
from core.db import utcnow
from core.errors import StateError
from core.models import deliveries, issues, webhook_events
from core.states import DeliveryState, IssueStatus, RateLevel


@dataclass
class Rates:
    domain: str
    days: int
    sent: int
    complaints: int
    hard_bounces: int
    level: RateLevel
    reason: str  # why the level (empty when ok)

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    @property
    def hard_bounce_rate(self) -> float:
        return self.hard_bounces / self.sent if self.sent else 0.0

    def line(self) -> str:
        head = (
            f"{self.domain}, last {self.days} days: {self.sent} sent, complaints "
            f"{self.complaints} ({self.complaint_rate:.2%}), hard bounces {self.hard_bounces} "
            f"({self.hard_bounce_rate:.2%})"
        )
        return f"{head}: {self.level.value}{' - ' + self.reason if self.reason else ''}"


def sending_rates(ctx: Context) -> Rates:
    cfg = ctx.config
    rep = cfg.reputation
    since = utcnow() - timedelta(days=rep.window_days)
    with ctx.engine.connect() as conn:
        sent = conn.execute(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.state == DeliveryState.SENT, deliveries.c.sent_at >= since)
        ).scalar_one()
        kinds = dict(
            conn.execute(
                select(webhook_events.c.kind, func.count())
                .where(
                    webhook_events.c.received_at >= since,
                    webhook_events.c.kind.in_(("complaint", "hard_bounce")),
                )
                .group_by(webhook_events.c.kind)
            ).all()
        )
    complaints, bounces = int(kinds.get("complaint", 0)), int(kinds.get("hard_bounce", 0))
    level, reason = _judge(ctx, int(sent), complaints, bounces)
    return Rates(cfg.sender.domain, rep.window_days, int(sent), complaints, bounces, level, reason)


def _judge(ctx: Context, sent: int, complaints: int, bounces: int) -> tuple[RateLevel, str]:
    rep = ctx.config.reputation
    if not sent:
        return RateLevel.OK, ""
    c, b = complaints / sent, bounces / sent
    small = sent < rep.min_sent
    if c >= rep.complaint_pause and not small:
        return RateLevel.PAUSE, (
            f"complaint rate {c:.2%} reaches {rep.complaint_pause:.1%} "
            "(Gmail rejects bulk mail past 0.3 %)"
        )
    if b > rep.hard_bounce_pause and not small:
        return RateLevel.PAUSE, (
            f"hard-bounce rate {b:.2%} is over {rep.hard_bounce_pause:.1%}: "
            "clean the list before sending more"
        )
    if c >= rep.complaint_warn:
        return RateLevel.WARN, (
            f"complaint rate {c:.2%} reaches {rep.complaint_warn:.1%}; "
            f"sending pauses at {rep.complaint_pause:.1%}"
            + (f" (only {sent} sent: not enforced yet)" if small else "")
        )
    return RateLevel.OK, ""


def enforce(ctx: Context) -> list[int]:
    """Pause every issue that is sending when the rates are past a pause line; returns
    their numbers. A sender reads its issue's status before each claim, so it stops
    within a batch."""
    rates = sending_rates(ctx)
    if rates.level != RateLevel.PAUSE:
        return []
    with ctx.engine.begin() as conn:
        rows = conn.execute(
            select(issues.c.id, issues.c.number).where(
                issues.c.status.in_((IssueStatus.SENDING, IssueStatus.FROZEN)),
                issues.c.send_started_at.is_not(None),
            )
        ).all()
        if rows:
            conn.execute(
                update(issues)
                .where(
                    issues.c.id.in_([r.id for r in rows]),
                    issues.c.status.in_((IssueStatus.SENDING, IssueStatus.FROZEN)),
                )
                .values(status=IssueStatus.PAUSED, pause_reason=rates.reason)
            )
    numbers = [r.number for r in rows]
    return [int(n) for n in numbers]


def ensure_reputation(ctx: Context) -> Rates:
    """The pre-send gate: refuse to start while the rates are past a pause line."""
    rates = sending_rates(ctx)
    if rates.level == RateLevel.PAUSE:
        raise StateError(
            f"sending from {rates.domain} is paused: {rates.reason} "
            f"({rates.complaints} complaints, {rates.hard_bounces} hard bounces in "
            f"{rates.sent} sent over {rates.days} days; use --force to send anyway)"
        )
    return rates
