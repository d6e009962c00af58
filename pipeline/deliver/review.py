"""Draft for review: the weekly job builds and checks the issue, an editor approves or
rejects it (web or CLI), and a deadline decides when nobody does.

Approval is what lets the scheduler send a frozen issue on its own: an approved issue that
is not sent yet (an editor approved it, or a crash came between build and send) goes out
on the next dispatch, and so does any issue left mid-send. Rejection, or the deadline with
`review_deadline_action = "skip"`, turns the draft into a skipped period: no number used,
its articles and editor picks free for next week.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from core.context import Context
from core.db import utcnow
from core.errors import StateError
from core.models import deliveries, issue_articles, issue_variants, issues, queue_items
from core.runs import JobResult
from core.states import JobOutcome
from pipeline.compose.check import check_issue, ensure_sendable
from pipeline.compose.issues import get_issue
from pipeline.deliver.engine import send_issue

log = logging.getLogger("kpdigest.review")

#: One sender per process: dispatch does not start a second sender beside the weekly job.
SEND_LOCK = threading.Lock()
AUTO_APPROVER = "scheduler (review off)"
DEADLINE_APPROVER = "scheduler (review deadline)"


def set_deadline(ctx: Context, issue_id: int, now: datetime | None = None) -> datetime:
    """Give a fresh draft its deadline (once); returns the deadline in force."""
    now = now or utcnow()
    with ctx.engine.begin() as conn:
        row = conn.execute(select(issues.c.review_deadline, issues.c.frozen_at)
                           .where(issues.c.id == issue_id)).one()
        if row.review_deadline is not None:
            return row.review_deadline
        deadline = (row.frozen_at or now) + timedelta(minutes=ctx.config.schedule.review_deadline_minutes)
        conn.execute(update(issues).where(issues.c.id == issue_id).values(review_deadline=deadline))
    return deadline


def approve_issue(ctx: Context, number: int, by: str, *, force: bool = False,
                  now: datetime | None = None) -> Any:
    """Draft -> frozen, recording who and when; the next dispatch sends it.

    The pre-send checks run first (an editor should not approve what cannot go out);
    `force` approves anyway.
    """
    issue = _draft(ctx, number, by, "an approval needs the approver's name or address")
    if not force:
        ensure_sendable(ctx, number)
    _approve(ctx, issue.id, by, now or utcnow())
    log.info("issue #%d approved by %s", number, by)
    with ctx.engine.connect() as conn:
        return get_issue(conn, number)


def _draft(ctx: Context, number: int, by: str, anonymous: str) -> Any:
    """Issue `number` if it is a draft and the actor is named; else StateError."""
    if not by.strip():
        raise StateError(anonymous)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    if issue.status != "draft":
        raise StateError(f"issue #{number} is {issue.status}, not a draft awaiting approval")
    return issue


def _approve(ctx: Context, issue_id: int, by: str, now: datetime) -> bool:
    with ctx.engine.begin() as conn:
        done = conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.status == "draft")
                            .values(status="frozen", approved_by=by, approved_at=now)).rowcount
    return bool(done)


def mark_auto_approved(ctx: Context, issue_id: int, now: datetime | None = None) -> None:
    """Without review mode the scheduler approves its own frozen issue before sending, so a
    crash between build and send is finished by the next dispatch."""
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.status == "frozen",
                                          issues.c.approved_at.is_(None))
                     .values(approved_by=AUTO_APPROVER, approved_at=now or utcnow()))


def reject_issue(ctx: Context, number: int, by: str, reason: str = "",
                 now: datetime | None = None) -> str:
    """Draft -> skipped for its period; returns the recorded reason."""
    issue = _draft(ctx, number, by, "a rejection needs the editor's name or address")
    now = now or utcnow()
    why = f"rejected by {by} at {now:%Y-%m-%d %H:%M} UTC" + (f": {reason}" if reason else "")
    if not _withdraw(ctx, issue.id, why):
        raise StateError(f"issue #{number} changed meanwhile; it is no longer a draft")
    log.info("issue #%d %s", number, why)
    return why


def _withdraw(ctx: Context, issue_id: int, reason: str) -> bool:
    """Undo a draft: no deliveries, no number, its articles and queue picks free again."""
    with ctx.engine.begin() as conn:
        done = conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.status == "draft")
                            .values(status="skipped", number=None, skip_reason=reason)).rowcount
        if not done:
            return False
        for table in (deliveries, issue_variants, issue_articles):
            conn.execute(delete(table).where(table.c.issue_id == issue_id))
        conn.execute(update(queue_items).where(queue_items.c.issue_id == issue_id)
                     .values(state="approved", issue_id=None, updated_at=utcnow()))
    return True


def apply_deadlines(ctx: Context, now: datetime | None = None) -> list[str]:
    """Drafts past their deadline are approved or skipped per schedule.review_deadline_action."""
    now = now or utcnow()
    action = ctx.config.schedule.review_deadline_action
    with ctx.engine.connect() as conn:
        due = conn.execute(select(issues.c.id, issues.c.number, issues.c.review_deadline).where(
            issues.c.status == "draft", issues.c.review_deadline.is_not(None),
            issues.c.review_deadline <= now)).all()
    return [note for row in due if (note := _deadline_passed(ctx, row, action, now))]


def _deadline_passed(ctx: Context, row: Any, action: str, now: datetime) -> str | None:
    why = f"not approved by the review deadline {row.review_deadline:%Y-%m-%d %H:%M} UTC"
    if action == "send":
        problems = check_issue(ctx, row.number).problems
        if not problems:
            return f"#{row.number}: {why}, sending" if _approve(ctx, row.id, DEADLINE_APPROVER, now) \
                else None
        why += "; it fails its checks: " + "; ".join(problems)
    return f"#{row.number}: {why}, skipped" if _withdraw(ctx, row.id, why) else None


def sendable_numbers(ctx: Context) -> list[int]:
    """Issues the scheduler may send without being asked: left mid-send, or approved."""
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(issues.c.number).where(
            issues.c.number.is_not(None),
            (issues.c.status == "sending")
            | ((issues.c.status == "frozen") & issues.c.approved_at.is_not(None)))
            .order_by(issues.c.number)).scalars())


def dispatch(ctx: Context, *, stop: threading.Event | None = None,
             now: datetime | None = None) -> JobResult:
    """The scheduler's frequent job (and its start-up step): deadlines, then sending."""

    notes = apply_deadlines(ctx, now)
    numbers = sendable_numbers(ctx)
    if numbers and not SEND_LOCK.acquire(blocking=False):  # the weekly job is sending
        return JobResult(JobOutcome.OK, "; ".join([*notes, "a send is already running in this process"]),
                         noop=not notes)
    try:
        for number in numbers:
            if stop and stop.is_set():
                notes.append("stopping: the rest resumes at the next start")
                break
            # Checked already: at approval, at the deadline, or before the send began.
            r = send_issue(ctx, number, stop=stop, force=True)
            c = r.counts
            notes.append(f"issue #{number}: {r.sent_now} sent now; {c['sent']} sent, "
                         f"{c['failed']} failed, {c['unknown']} unknown, {c['queued']} queued")
    finally:
        if numbers:
            SEND_LOCK.release()
    return JobResult(JobOutcome.OK, "; ".join(notes) or "nothing to send", noop=not notes)
