"""The scheduler process: runs the newsletter unattended (see docs/operations.md).

    python schedule.py            run until SIGTERM/SIGINT: collect, weekly, dispatch, maintenance
    python schedule.py --once     run the weekly job now, record it, and exit

Jobs live in APScheduler's SQLAlchemy job store on the project database, so a restart
knows which fire time it missed: within the grace window the job runs late, past it the
run is recorded as `skipped` ("missed: ..."). The job bodies are in pipeline/jobs/registry.py.

On PostgreSQL any number of these processes may run, on any hosts: one leads and runs the
jobs, the others stand by and take over when it dies (pipeline/jobs/leader.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import DBAPIError

from core.config import Config
from core.context import Context
from core.errors import KpdigestError
from pipeline.deliver import lane
from pipeline.jobs import registry as jobs
from pipeline.jobs.leader import Leadership, close_orphaned_runs

log = logging.getLogger("kpdigest.schedule")
JOB_FUNC = "pipeline.jobs:scheduled"  # stored in the job store: a stable name


def grace_seconds(cfg: Config, job: str) -> int:
    """The weekly issue has the configured window; the others run once late after any
    downtime (coalesced, their grace is one period), since late is better than never."""
    return {"weekly": cfg.schedule.misfire_grace_minutes * 60,
            "collect": int(cfg.collect.interval_hours * 3600),
            "dispatch": cfg.schedule.dispatch_seconds,
            "maintenance": 24 * 3600}[job]


class JobStore(SQLAlchemyJobStore):
    """APScheduler's store, tolerant of a second scheduler creating its table at the same
    moment (CREATE TABLE races are errors on PostgreSQL and SQLite alike)."""

    def start(self, scheduler: Any, alias: str) -> None:
        try:
            super().start(scheduler, alias)
        except DBAPIError:
            log.info("job store table created by another process meanwhile; using it")
            super().start(scheduler, alias)


def build_scheduler(ctx: Context) -> BackgroundScheduler:
    store = JobStore(engine=ctx.engine, tablename=jobs.JOBSTORE_TABLE)
    sched = BackgroundScheduler(jobstores={"default": store},
                                executors={"default": ThreadPoolExecutor(4)},
                                job_defaults={"coalesce": True, "max_instances": 1},
                                timezone=ZoneInfo(ctx.config.schedule.timezone))
    sched.add_listener(lambda ev: on_missed(ctx, ev), EVENT_JOB_MISSED)
    return sched


def on_missed(ctx: Context, event: JobExecutionEvent) -> None:
    """Record a fire time that came and went while the scheduler was not running (past the
    grace window), with the reason, where `schedule status` shows it."""
    cfg = ctx.config
    tz = ZoneInfo(cfg.schedule.timezone)
    due = event.scheduled_run_time.astimezone(tz)
    late = datetime.now(UTC) - due
    msg = (f"missed: due {due:%Y-%m-%d %H:%M %Z}, the scheduler was not running until "
           f"{datetime.now(tz):%Y-%m-%d %H:%M %Z}; {_span(late)} late is past the "
           f"{_span(timedelta(seconds=grace_seconds(cfg, event.job_id)))} grace window")
    log.warning("job %s: %s", event.job_id, msg)
    jobs.record_run(ctx, event.job_id, "skipped", msg)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def sync_jobs(sched: BackgroundScheduler, cfg: Config) -> None:
    """Make the stored jobs match config.toml without losing a pending (missed) fire time.

    An unchanged schedule keeps its stored next run; a changed one is replaced and counts
    from now. Call while the scheduler is started paused.
    """
    wanted = {spec.id: spec for spec in jobs.job_specs(cfg)}
    for job in sched.get_jobs():
        if job.id not in wanted:
            job.remove()
    for spec in wanted.values():
        opts: dict[str, Any] = {"misfire_grace_time": grace_seconds(cfg, spec.id),
                                "max_instances": 1, "coalesce": True, "name": spec.description}
        job = sched.get_job(spec.id)
        same = job is not None and jobs.trigger_fingerprint(job.trigger) == \
            jobs.trigger_fingerprint(spec.trigger)
        if job is not None and same:
            if any(getattr(job, k) != v for k, v in opts.items()):
                job.modify(**opts)
            continue
        sched.add_job(JOB_FUNC, spec.trigger, args=[spec.id], id=spec.id,
                      replace_existing=True, **opts)


class ShutdownRace(logging.Filter):
    """APScheduler can try to submit a due job in the instant its executor shuts down. That
    job was not going to run (we are stopping); its traceback would only alarm the reader."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (self.stop.is_set() and isinstance(exc, RuntimeError) and "after shutdown" in str(exc))


def run_forever(ctx: Context) -> int:
    """Stand by until this process leads (at once on SQLite), then run the jobs until a
    signal, or until the lead is lost (exit 1: systemd restarts it as a standby)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s received: taking no new jobs, letting batches in flight finish",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lead = Leadership(ctx)
    if not lead.wait_for_lead(stop):
        lead.release()
        log.info("scheduler stopped (was standby)")
        return 0
    try:
        lost = run_leading(ctx, stop, lead)
    finally:
        lead.release()
    # A repeated SIGTERM while the interpreter exits must not turn a clean stop into a kill.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info("scheduler stopped")
    return 1 if lost else 0


def run_leading(ctx: Context, stop: threading.Event, lead: Leadership) -> bool:
    """Run the jobs while leading; True when the lead was lost (the lock session died)."""
    jobs.bind(ctx, stop)
    logging.getLogger("apscheduler.scheduler").addFilter(ShutdownRace(stop))
    interrupted = jobs.close_interrupted(ctx) + close_orphaned_runs(ctx)
    if interrupted:
        log.warning("%d job run(s) were interrupted by a previous stop; recorded as failed", interrupted)
    sched = build_scheduler(ctx)
    sched.start(paused=True)
    sync_jobs(sched, ctx.config)
    sched.modify_job("dispatch", next_run_time=datetime.now(UTC))  # resume anything left mid-send
    for job in sched.get_jobs():
        log.info("job %s (%s): next run %s", job.id, job.name, job.next_run_time)
    sched.resume()
    worker = lane.start_worker(ctx, stop)  # people who are waiting never wait behind an issue
    log.info("scheduler running (pid %s)", os.getpid())
    lost, beat = False, time.monotonic()
    while not stop.wait(1.0):
        if time.monotonic() - beat >= min(lead.poll, 5.0):
            beat = time.monotonic()
            if not lead.still_leading():
                log.error("lost the lead (the database session holding it ended): stopping so "
                          "that a standby runs the jobs; restart this process as a standby")
                lost = True
                stop.set()
    lane.WAKE.set()
    sched.shutdown(wait=True)
    worker.join(timeout=30)
    return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="settings file (default: KPDIGEST_CONFIG or config.toml)")
    parser.add_argument("--once", action="store_true", help="run the weekly job now and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    ctx: Context | None = None
    try:
        ctx = Context.load(args.config)
        ctx.require_schema()
        if args.once:
            stop = threading.Event()
            seen = Leadership(ctx)
            seen.present()  # a new leader must not take this run for an orphan
            try:
                outcome = jobs.run_recorded(ctx, "weekly", jobs.body_for("weekly", ctx, stop))
            finally:
                seen.release()
            return 1 if outcome.result == "failed" else 0
        return run_forever(ctx)
    except KpdigestError as exc:
        log.error("%s", exc)
        return exc.exit_code
    finally:
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
