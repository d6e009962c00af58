"""The scheduler process: nothing but wiring from config.toml to library functions.

    python schedule.py            run forever: collect every N hours, the weekly issue on its cron
    python schedule.py --once     run the weekly job now and exit
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from kpdigest.context import Context
from kpdigest.errors import KpdigestError

log = logging.getLogger("kpdigest.schedule")


def collect_job(ctx: Context) -> None:
    from pipeline.collect import collect

    report = collect(ctx)
    log.info("collect: %d new articles, %d feeds failed", report.new, len(report.failed))


def weekly_job(ctx: Context) -> None:
    from pipeline.weekly import run_weekly

    result = run_weekly(ctx, echo=log.info)
    log.info("weekly: %s", result.summary)


def build_scheduler(ctx: Context) -> BlockingScheduler:
    cfg = ctx.config
    sched = BlockingScheduler(timezone=cfg.schedule.timezone)
    hh, mm = (int(x) for x in cfg.schedule.time.split(":"))
    grace = cfg.schedule.misfire_grace_minutes * 60
    sched.add_job(collect_job, IntervalTrigger(hours=cfg.collect.interval_hours), args=[ctx],
                  id="collect", max_instances=1, coalesce=True, misfire_grace_time=grace)
    sched.add_job(weekly_job, CronTrigger(day_of_week=cfg.schedule.day, hour=hh, minute=mm,
                                          timezone=cfg.schedule.timezone),
                  args=[ctx], id="weekly", max_instances=1, coalesce=True, misfire_grace_time=grace)
    return sched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="settings file (default: KPDIGEST_CONFIG or config.toml)")
    parser.add_argument("--once", action="store_true", help="run the weekly job now and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx = Context.load(args.config)
        ctx.require_schema()
        if args.once:
            weekly_job(ctx)
            return 0
        sched = build_scheduler(ctx)
        now = datetime.now(UTC)
        for job in sched.get_jobs():
            log.info("job %s: next run %s", job.id, job.trigger.get_next_fire_time(None, now))
        sched.start()
    except KpdigestError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
