"""The weekly job: collect, build (or reuse) this period's issue, send it.

The CLI's `kpdigest run`, `schedule.py` and `schedule.py --once` all call run_weekly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kpdigest.context import Context
from pipeline.collect import collect
from pipeline.issues import BuildResult, build_issue
from pipeline.send import SendReport, send_issue


@dataclass
class WeeklyResult:
    result: str  # ok | skipped | waiting
    summary: str
    build: BuildResult | None = None
    send: SendReport | None = None


def run_weekly(ctx: Context, *, now: datetime | None = None, force: bool = False,
               collect_first: bool = True, stop: threading.Event | None = None,
               echo: Callable[[str], None] | None = None) -> WeeklyResult:
    say = echo or (lambda _m: None)
    if collect_first:
        report = collect(ctx)
        say(f"collected {report.new} new articles from {len(report.outcomes)} feeds "
            f"({len(report.failed)} failed)")
    built = build_issue(ctx, now=now)
    if built.status == "skipped":
        return WeeklyResult("skipped", f"issue skipped for {built.period}: {built.reason}", built)
    if built.status == "draft":
        return WeeklyResult("waiting", f"issue #{built.number} is a draft awaiting approval", built)
    say(f"issue #{built.number} for {built.period}: "
        f"{'built' if built.created else 'already built'}, status {built.status}")
    if built.status in ("sent", "cancelled"):
        return WeeklyResult("ok", f"issue #{built.number} is already {built.status}", built)
    sent = send_issue(ctx, built.number or 0, stop=stop)
    c = sent.counts
    return WeeklyResult("ok", f"issue #{built.number}: {c['sent']} sent, {c['failed']} failed, "
                              f"{c['unknown']} unknown, {c['queued']} queued", built, sent)
