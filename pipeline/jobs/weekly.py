"""The weekly job: collect, build (or reuse) this period's issue, check it, send it.

The CLI's `kpdigest run`, `schedule.py` and `schedule.py --once` all call run_weekly. It
is safe to run twice for one period, even at the same moment in two processes: the
database allows one issue per list and period, and the delivery ledger one mail per
recipient.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.context import Context
from core.states import FINISHED, IssueStatus
from pipeline.collect.run import collect
from pipeline.compose.check import ensure_sendable
from pipeline.compose.issues import BuildResult, build_issue
from pipeline.deliver.engine import SendReport, send_issue
from pipeline.deliver.review import SEND_LOCK, mark_auto_approved, set_deadline


@dataclass
class WeeklyResult:
    result: str  # ok | skipped | waiting
    summary: str
    build: BuildResult | None = None
    send: SendReport | None = None
    status: str = ""  # the issue's status at the end ("" when there is no issue to send)


def run_weekly(ctx: Context, *, now: datetime | None = None, force: bool = False,
               collect_first: bool = True, stop: threading.Event | None = None,
               echo: Callable[[str], None] | None = None) -> WeeklyResult:
    """Raises CheckFailed when the issue fails its pre-send checks (unless `force`)."""
    say = echo or (lambda _m: None)
    if collect_first:
        report = collect(ctx)
        say(f"collected {report.new} new articles from {len(report.outcomes)} feeds "
            f"({len(report.failed)} failed)")
    built = build_issue(ctx, now=now)
    if built.status == "skipped":
        return WeeklyResult("skipped", f"issue skipped for {built.period}: {built.reason}", built)
    say(f"issue #{built.number} for {built.period}: "
        f"{'built' if built.created else 'already built'}, status {built.status}")
    if built.status in (*FINISHED, IssueStatus.CANCELLED, IssueStatus.PAUSED):
        return WeeklyResult("ok", f"issue #{built.number} is already {built.status}", built,
                            status=built.status)
    deadline = set_deadline(ctx, built.issue_id or 0, now) if built.status == "draft" else None
    if not force and built.status != "sending":  # a send in progress was checked when it began
        ensure_sendable(ctx, built.number or 0)
    if deadline is not None:
        return WeeklyResult("waiting", f"issue #{built.number} is a draft awaiting approval; "
                                       f"deadline {deadline:%Y-%m-%d %H:%M} UTC "
                                       f"({ctx.config.schedule.review_deadline_action} then)", built,
                            status=IssueStatus.DRAFT)
    mark_auto_approved(ctx, built.issue_id or 0, now)
    return _send(ctx, built, stop)


def _send(ctx: Context, built: BuildResult, stop: threading.Event | None) -> WeeklyResult:
    with SEND_LOCK:
        # Checked above (or forced): the checks are slow (SpamAssassin), so not twice.
        sent = send_issue(ctx, built.number or 0, stop=stop, force=True)
    c = sent.counts
    tail = "; stopped for shutdown, the rest resumes at the next start" if sent.stopped else ""
    return WeeklyResult("ok", f"issue #{built.number} {sent.status}: {c['sent']} sent, "
                              f"{c['failed']} failed, {c['unknown']} unknown, "
                              f"{c['queued']} queued{tail}", built, sent, status=sent.status)
