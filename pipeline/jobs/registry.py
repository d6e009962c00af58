"""The scheduler's jobs: what each one does, when it fires, and the record of every run.

Every run (and every run the machine missed) is a `job_runs` row, so `kpdigest schedule
status` and the admin dashboard can answer "did this week's issue go out, and if not, why"
without reading logs. Triggers are built here from config.toml, not in schedule.py, so the
status page can show the next run even when the scheduler process is not running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Column as SAColumn
from sqlalchemy import Float, MetaData, String, Table, delete, desc, insert, inspect, select, update

from core.clock import hhmm, weekly_trigger
from core.config import Config
from core.context import Context
from core.db import new_id, utcnow
from core.models import issues, job_runs
from core.owners import alive_here, this_process
from core.runs import JobResult
from core.states import FINISHED, DeliveryState, IssueStatus, JobOutcome
from pipeline.collect.run import collect
from pipeline.compose.issues import delivery_counts, period_for
from pipeline.deliver import lane
from pipeline.deliver.doctor.rates import enforce
from pipeline.jobs import send_orders
from pipeline.jobs.weekly import run_weekly
from subscribers import maintenance, ratelimit

log = logging.getLogger("kpdigest.jobs")

#: APScheduler's own table (SQLAlchemyJobStore); not part of our schema or migrations.
JOBSTORE_TABLE = "apscheduler_jobs"

DESCRIPTIONS = {
    "collect": "fetch every enabled feed",
    "weekly": "build, check and send this week's issue",
    "dispatch": "send waiting sign-up mail, run due send orders, resume interrupted sends, "
                "send approved drafts, apply review deadlines",
    "maintenance": "expire unconfirmed sign-ups, purge old webhook events",
}
JOB_IDS = tuple(DESCRIPTIONS)
RUNS_KEPT_DAYS = 180  # job_runs history kept by the daily maintenance job


@dataclass
class JobSpec:
    id: str
    trigger: BaseTrigger
    description: str


def job_specs(cfg: Config) -> list[JobSpec]:
    s = cfg.schedule
    mh, mm = hhmm(s.maintenance_time)
    triggers: dict[str, BaseTrigger] = {
        "collect": IntervalTrigger(hours=cfg.collect.interval_hours, timezone=s.timezone),
        "weekly": weekly_trigger(cfg),
        "dispatch": IntervalTrigger(seconds=s.dispatch_seconds, timezone=s.timezone),
        "maintenance": CronTrigger(hour=mh, minute=mm, timezone=s.timezone),
    }
    return [JobSpec(j, triggers[j], DESCRIPTIONS[j]) for j in JOB_IDS]


def trigger_fingerprint(trigger: BaseTrigger) -> str:
    """What identifies a schedule: a changed config replaces the stored job, an unchanged
    one keeps its stored next run time (that is how a missed run is noticed after downtime)."""
    if isinstance(trigger, IntervalTrigger):
        return f"interval[{trigger.interval}]"
    return repr(trigger)


# --- the record of runs --------------------------------------------------------------------------


def start_run(ctx: Context, job: str) -> int:
    with ctx.engine.begin() as conn:
        return int(new_id(conn.execute(insert(job_runs).values(
            job=job, started_at=utcnow(), result="running",
            message=f"running in {this_process()}"))))


def finish_run(ctx: Context, run_id: int, result: str, message: str) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(update(job_runs).where(job_runs.c.id == run_id).values(
            finished_at=utcnow(), result=result, message=message[:4000]))


def record_run(ctx: Context, job: str, result: str, message: str) -> None:
    """A run that never started: a missed fire time."""
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(insert(job_runs).values(job=job, started_at=now, finished_at=now,
                                             result=result, message=message))



def close_interrupted(ctx: Context) -> int:
    """Runs left `running` by a scheduler process that died (SIGKILL, power loss)."""
    with ctx.engine.begin() as conn:
        rows = conn.execute(select(job_runs.c.id, job_runs.c.message)
                            .where(job_runs.c.result == "running")).all()
        dead = [r.id for r in rows if alive_here((r.message or "").removeprefix("running in ")) is False]
        if dead:
            conn.execute(update(job_runs).where(job_runs.c.id.in_(dead)).values(
                finished_at=utcnow(), result="failed",
                message="interrupted: the scheduler process stopped before the job finished"))
    return len(dead)


def run_recorded(ctx: Context, job: str, body: Callable[[], JobResult]) -> JobResult:
    """Run one job body, recording and logging what ran, for how long, with what result.

    An exception is a `failed` run with the error, never a crashed scheduler.
    """
    run_id = start_run(ctx, job)
    t0 = time.monotonic()
    # dispatch runs every minute and usually finds nothing: only its results are news
    log.log(logging.DEBUG if job == "dispatch" else logging.INFO, "job %s: started", job)
    try:
        outcome = body()
    except Exception as exc:  # a failed job must not take the scheduler down
        log.exception("job %s: failed", job)
        outcome = JobResult(JobOutcome.FAILED, f"{type(exc).__name__}: {exc}")
    took = time.monotonic() - t0
    if outcome.noop:
        with ctx.engine.begin() as conn:
            conn.execute(delete(job_runs).where(job_runs.c.id == run_id))
    else:
        finish_run(ctx, run_id, outcome.result, outcome.message)
    level = logging.ERROR if outcome.result == "failed" else logging.DEBUG if outcome.noop else logging.INFO
    log.log(level, "job %s: %s in %.1fs: %s", job, outcome.result, took, outcome.message)
    return outcome


def purge_runs(ctx: Context, now: datetime | None = None) -> int:
    """Forget finished job runs older than RUNS_KEPT_DAYS; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=RUNS_KEPT_DAYS)
    with ctx.engine.begin() as conn:
        return conn.execute(delete(job_runs).where(job_runs.c.started_at < cutoff,
                                                   job_runs.c.result != "running")).rowcount or 0


# --- status --------------------------------------------------------------------------------------

def _stored_next_runs(ctx: Context) -> dict[str, datetime | None] | None:
    """Next run times from the scheduler's job store; None when it has never started."""
    if not inspect(ctx.engine).has_table(JOBSTORE_TABLE):
        return None
    t = Table(JOBSTORE_TABLE, MetaData(), SAColumn("id", String(191)),
              SAColumn("next_run_time", Float))
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.next_run_time)).all()
    return {r.id: (datetime.fromtimestamp(r.next_run_time, UTC) if r.next_run_time else None)
            for r in rows}


def _last_runs(ctx: Context) -> dict[str, Any]:
    last: dict[str, Any] = {}
    with ctx.engine.connect() as conn:
        for job in JOB_IDS:
            last[job] = conn.execute(select(job_runs).where(job_runs.c.job == job)
                                     .order_by(desc(job_runs.c.id)).limit(1)).first()
    return last


def schedule_status(ctx: Context) -> list[dict[str, Any]]:
    """Each job: id, description, next run (aware UTC datetime or None), whether that time
    comes from the running scheduler's store ("store") or only from config.toml ("config"),
    and its last run: result (ok | skipped | failed | running), message (the skip reason
    or the error), started/finished times and duration in seconds."""
    ctx.require_schema()
    stored = _stored_next_runs(ctx)
    last = _last_runs(ctx)
    now = utcnow()
    out = []
    for spec in job_specs(ctx.config):
        if stored is not None and spec.id in stored:
            next_run, source = stored[spec.id], "store"
        else:
            next_run, source = spec.trigger.get_next_fire_time(None, now), "config"
        row = last[spec.id]
        result, message = (row.result, row.message) if row else (None, None)
        if spec.id == "weekly" and row is not None:
            result, message = _by_the_issue(ctx, row) or (result, message)
        out.append({
            "id": spec.id,
            "description": spec.description,
            "next_run": next_run,
            "next_run_source": source,
            "last_result": result,
            "last_message": message,
            "last_run": row.started_at if row else None,
            "last_finished": row.finished_at if row else None,
            "last_duration": (row.finished_at - row.started_at).total_seconds()
            if row and row.finished_at else None,
        })
    return out


def _by_the_issue(ctx: Context, row: Any) -> tuple[str, str] | None:
    """The weekly run told by what happened to its issue: a run whose process was killed
    mid-send, or that ended with the issue still sending, is judged by the issue that
    dispatch resumed (and perhaps completed) since. None: the run's own record stands."""
    interrupted = row.result == "failed" and (row.message or "").startswith("interrupted")
    if row.result not in ("ok", "running") and not interrupted:
        return None
    with ctx.engine.connect() as conn:
        issue = conn.execute(select(issues).where(
            issues.c.period == period_for(row.started_at, ctx.config),
            issues.c.number.is_not(None)).order_by(issues.c.id).limit(1)).first()
        if issue is None or issue.status not in (*FINISHED, IssueStatus.SENDING):
            return None
        counts = delivery_counts(conn, issue.id)
    sent, total = counts[DeliveryState.SENT], sum(counts.values())
    tail = "; the run was interrupted, dispatch resumed the send" if interrupted else ""
    text = f"issue #{issue.number} {issue.status}: {sent} of {total} sent{tail}"
    if issue.status == IssueStatus.SENDING:
        return ("resuming" if interrupted else row.result), text
    return {IssueStatus.SENT: "ok", IssueStatus.FAILED: "failed"}.get(issue.status,
                                                                       str(issue.status)), text


# --- the bodies --------------------------------------------------------------------------------

class Runtime:
    """What the stored jobs run against in this process: the context and the stop event.

    The persistent job store keeps only a reference and the job id, never the context
    (an engine cannot be pickled), so schedule.py binds one Runtime at start-up.
    """

    def __init__(self, ctx: Context, stop: threading.Event) -> None:
        self.ctx = ctx
        self.stop = stop


_runtime: Runtime | None = None


def bind(ctx: Context, stop: threading.Event) -> Runtime:
    global _runtime
    _runtime = Runtime(ctx, stop)
    return _runtime


def body_for(job: str, ctx: Context, stop: threading.Event) -> Callable[[], JobResult]:
    bodies: dict[str, Callable[[], JobResult]] = {
        "collect": lambda: _collect(ctx),
        "weekly": lambda: _weekly(ctx, stop),
        "dispatch": lambda: _dispatch(ctx, stop),
        "maintenance": lambda: _maintenance(ctx),
    }
    return bodies[job]


def scheduled(job: str) -> None:
    """The callable every stored job points at (`pipeline.jobs:scheduled`, a stable name)."""
    if _runtime is None:
        raise RuntimeError("pipeline.jobs.registry.bind() was not called in this process")
    if _runtime.stop.is_set():
        return
    run_recorded(_runtime.ctx, job, body_for(job, _runtime.ctx, _runtime.stop))


def _maintenance(ctx: Context) -> JobResult:
    """The daily clean-up of personal data, then this record's own old runs."""
    done = maintenance.run_maintenance(ctx)
    return JobResult(done.result, f"{done.message}, {purge_runs(ctx)} old job runs forgotten, "
                                  f"{ratelimit.purge(ctx)} old rate-limit windows")


def _dispatch(ctx: Context, stop: threading.Event) -> JobResult:
    """The scheduler's frequent job: the lane first (a backstop for the lane's own thread:
    sign-up mail never waits behind an issue), then complaint and bounce rates (an issue
    past a pause line is paused and stays so), then due send orders and review's dispatch."""
    mail = lane.run_once(ctx, stop=stop)
    paused = enforce(ctx)
    result = send_orders.dispatch(ctx, stop=stop)
    notes = [f"lane: {mail.summary()}"] if mail.handled or mail.recovered else []
    if paused:
        notes.append(f"paused issue(s) {', '.join(f'#{n}' for n in paused)}: "
                     "complaint or bounce rate")
    if notes:
        result.message = "; ".join([*notes, result.message] if result.message and not result.noop
                                   else notes)
        result.noop = False
    return result


def _collect(ctx: Context) -> JobResult:
    report = collect(ctx)
    msg = f"{report.new} new articles from {len(report.outcomes)} feeds, {len(report.failed)} failed"
    if report.outcomes and len(report.failed) == len(report.outcomes):
        return JobResult(JobOutcome.FAILED, msg)
    return JobResult(JobOutcome.OK, msg)


def _weekly(ctx: Context, stop: threading.Event) -> JobResult:
    result = run_weekly(ctx, stop=stop, echo=log.info)
    skipped = result.result == "skipped"
    return JobResult(JobOutcome.SKIPPED if skipped else JobOutcome.OK, result.summary)
