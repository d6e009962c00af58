"""The clock moves (freezegun): daylight-saving changes, and downtime shorter and longer
than the grace window, through the real APScheduler with the job store on our database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

import schedule
from core.config import load_config
from core.models import job_runs
from pipeline.jobs import registry as jobs
from tests.conftest import write_config
from tests.feedgen import KP_ITEMS, rss

LONDON = {"timezone": "Europe/London", "day": "thu", "time": "08:00", "misfire_grace_minutes": 360}


def _runs(cfg, start, n):
    trigger, prev, now, out = jobs.weekly_trigger(cfg), None, start, []
    for _ in range(n):
        prev = now = trigger.get_next_fire_time(prev, now)
        out.append(prev)
    return out


@pytest.mark.parametrize(("start", "utc_hours", "gap_hours"), [
    ("2026-10-20 12:00", [7, 8], 169),  # clocks go back on Sun 25 Oct: BST -> GMT
    ("2026-03-24 12:00", [8, 7], 167),  # clocks go forward on Sun 29 Mar: GMT -> BST
])
def test_weekly_send_stays_at_local_0800_across_dst(ctx, start, utc_hours, gap_hours):
    ctx.config.schedule.timezone = "Europe/London"
    with freeze_time(start):
        first = jobs.schedule_status(ctx)[1]["next_run"]
    a, b = _runs(ctx.config, first - timedelta(seconds=1), 2)
    assert a == first
    assert [a.astimezone(UTC).hour, b.astimezone(UTC).hour] == utc_hours
    assert b.astimezone(UTC) - a.astimezone(UTC) == timedelta(hours=gap_hours)
    assert {r.astimezone(jobs.weekly_trigger(ctx.config).timezone).strftime("%a %H:%M") for r in (a, b)} \
        == {"Thu 08:00"}


def test_repeated_and_missing_local_hours_fire_once(tmp_path):
    cfg = load_config(write_config(tmp_path), {"schedule": {**LONDON, "day": "sun", "time": "01:30"}})
    back = _runs(cfg, datetime(2026, 10, 24, tzinfo=UTC), 2)  # 01:30 happens twice on 25 Oct
    assert [r.astimezone(UTC) for r in back] == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                                                 datetime(2026, 11, 1, 1, 30, tzinfo=UTC)]
    fwd = _runs(cfg, datetime(2026, 3, 28, tzinfo=UTC), 2)  # 01:30 does not exist on 29 Mar
    assert [r.astimezone(UTC) for r in fwd] == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                                                datetime(2026, 4, 5, 0, 30, tzinfo=UTC)]


def _boot(ctx):
    sched = schedule.build_scheduler(ctx)
    sched.start(paused=True)
    schedule.sync_jobs(sched, ctx.config)
    return sched


def _wait_weekly_row(ctx):
    for _ in range(400):  # time.monotonic is frozen; count sleeps instead
        with ctx.engine.connect() as conn:
            row = conn.execute(select(job_runs).where(job_runs.c.job == "weekly",
                                                      job_runs.c.result != "running")).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError("the weekly job neither ran nor was recorded as missed")


@pytest.mark.parametrize("down_hours", [2, 7])
def test_downtime_within_grace_runs_late_beyond_it_is_recorded_missed(make_ctx, tmp_path, down_hours):
    feed = tmp_path / "one.xml"
    feed.write_bytes(rss("One", KP_ITEMS[:1]))
    ctx = make_ctx(feeds=[("One", str(feed), ["kp"])], schedule=LONDON)
    with freeze_time("2026-11-26 07:00:00"):  # Thursday, an hour before the send
        _boot(ctx).shutdown(wait=False)  # ...and the machine goes down
    jobs.bind(ctx, threading.Event())
    back = datetime(2026, 11, 26, 8, 0, tzinfo=UTC) + timedelta(hours=down_hours)
    with freeze_time(back):
        sched = _boot(ctx)
        stored = sched.get_job("weekly").next_run_time
        sched.resume()
        try:
            row = _wait_weekly_row(ctx)
        finally:
            sched.shutdown(wait=True)
    assert stored.astimezone(UTC) == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # kept, not recomputed
    assert row.result == "skipped"
    if down_hours == 2:  # ran two hours late; the thin week is itself a skip with its reason
        assert row.message == "issue skipped for 2026-W48: 1 new item, 3 needed"
    else:
        assert row.message == ("missed: due 2026-11-26 08:00 GMT, the scheduler was not running until "
                               "2026-11-26 15:00 GMT; 7h00m late is past the 6h00m grace window")
    status = {s["id"]: s for s in jobs.schedule_status(ctx)}["weekly"]
    assert status["next_run_source"] == "store"
    assert status["next_run"] == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_a_changed_schedule_replaces_the_stored_job(make_ctx):
    ctx = make_ctx(schedule=LONDON)
    with freeze_time("2026-11-23 12:00:00"):
        _boot(ctx).shutdown(wait=False)
        ctx.config.schedule.time = "09:15"
        sched = _boot(ctx)
        try:
            nxt = sched.get_job("weekly").next_run_time
        finally:
            sched.shutdown(wait=False)
    assert nxt.astimezone(UTC) == datetime(2026, 11, 26, 9, 15, tzinfo=UTC)
