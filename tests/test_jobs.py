"""The record of job runs and what `schedule status` (CLI and dashboard) reads from it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from core.config import load_config
from core.db import utcnow
from core.errors import ConfigError
from core.models import job_runs
from kpdigest.main import main as cli
from pipeline.jobs import registry as jobs
from tests.conftest import write_config
from tests.feedgen import KP_ITEMS, rss


def _row(ctx, job):
    with ctx.engine.connect() as conn:
        return conn.execute(select(job_runs).where(job_runs.c.job == job)
                            .order_by(job_runs.c.id.desc())).first()


def test_status_before_the_scheduler_ever_ran(ctx):
    status = {s["id"]: s for s in jobs.schedule_status(ctx)}
    assert list(status) == ["collect", "weekly", "dispatch", "maintenance"]
    weekly = status["weekly"]
    assert weekly["next_run_source"] == "config" and weekly["last_result"] is None
    local = weekly["next_run"].astimezone(jobs.weekly_trigger(ctx.config).timezone)
    assert (local.strftime("%a %H:%M"), local > datetime.now(UTC)) == ("Thu 08:00", True)


def test_a_thin_week_is_recorded_as_skipped_with_its_reason(make_ctx, tmp_path):
    feed = tmp_path / "one.xml"
    feed.write_bytes(rss("One", KP_ITEMS[:1]))
    ctx = make_ctx(feeds=[("One", str(feed), ["kp"])])
    out = jobs.run_recorded(ctx, "weekly", jobs.body_for("weekly", ctx, threading.Event()))
    reason = f"issue skipped for {_period(ctx)}: 1 new item, 3 needed"
    assert (out.result, out.message) == ("skipped", reason)
    row = _row(ctx, "weekly")
    assert (row.result, row.message) == ("skipped", out.message)
    assert row.finished_at >= row.started_at

    result = CliRunner().invoke(cli, ["--config", str(ctx.config.source), "schedule", "status"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "1 new item, 3 needed" in result.output


def _period(ctx):
    from pipeline.compose.issues import period_for

    return period_for(utcnow(), ctx.config)


def test_a_failing_job_is_recorded_with_its_error_not_raised(ctx):
    def boom():
        raise RuntimeError("feed database on fire")

    out = jobs.run_recorded(ctx, "collect", boom)
    assert (out.result, out.message) == ("failed", "RuntimeError: feed database on fire")
    status = {s["id"]: s for s in jobs.schedule_status(ctx)}["collect"]
    assert status["last_result"] == "failed" and status["last_message"] == out.message
    assert status["last_duration"] is not None


def test_a_dispatch_with_nothing_to_do_is_not_kept(ctx):
    out = jobs.run_recorded(ctx, "dispatch", jobs.body_for("dispatch", ctx, threading.Event()))
    assert (out.result, out.message, out.noop) == ("ok", "nothing to send", True)
    assert _row(ctx, "dispatch") is None


def test_runs_of_a_dead_process_are_closed_as_interrupted(ctx):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()[:40]
    with ctx.engine.begin() as conn:
        for owner in (f"{host}:{dead}", f"{host}:{os.getpid()}", f"elsewhere:{dead}"):
            conn.execute(insert(job_runs).values(job="weekly", started_at=utcnow(), result="running",
                                                 message=f"running in {owner}"))
    assert jobs.close_interrupted(ctx) == 1
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(job_runs.c.result, job_runs.c.message).order_by(job_runs.c.id)).all()
    assert [r.result for r in rows] == ["failed", "running", "running"]
    assert rows[0].message.startswith("interrupted:")


@pytest.mark.parametrize(("cron", "expected"), [
    ("30 7 * * mon", "Mon 07:30:00"),
    ("15 30 7 * * mon", "Mon 07:30:15"),
])
def test_cron_override(tmp_path, cron, expected):
    cfg = load_config(write_config(tmp_path), {"schedule": {"cron": cron, "timezone": "UTC"}})
    t = jobs.weekly_trigger(cfg)
    nxt = t.get_next_fire_time(None, datetime(2026, 11, 26, tzinfo=UTC))
    assert nxt.strftime("%a %H:%M:%S") == expected


@pytest.mark.parametrize("cron", ["* * *", "99 * * * *"])
def test_bad_cron_names_the_key(tmp_path, cron):
    with pytest.raises(ConfigError, match=r"^schedule\.cron: "):
        load_config(write_config(tmp_path), {"schedule": {"cron": cron}})


def test_two_weekly_runs_at_once_make_one_issue_and_mail_each_person_once(make_ctx, tmp_path):
    from pipeline.compose.issues import delivery_counts
    from pipeline.jobs.weekly import run_weekly
    from subscribers.store import add_subscriber
    from tests.feedgen import BEAUTY_ITEMS

    feed = tmp_path / "all.xml"
    feed.write_bytes(rss("All", KP_ITEMS + BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("All", str(feed), ["kp"])])
    for i in range(5):
        add_subscriber(ctx, f"p{i}@example.com")
    from pipeline.collect.run import collect

    collect(ctx)
    barrier = threading.Barrier(2)
    results = []

    def weekly():
        barrier.wait()
        results.append(run_weekly(ctx, collect_first=False, force=True))

    threads = [threading.Thread(target=weekly) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.build.created for r in results) == [False, True]
    assert {r.build.number for r in results} == {1}
    with ctx.engine.connect() as conn:
        assert delivery_counts(conn, results[0].build.issue_id)["sent"] == 5
    files = list(ctx.config.path("var/outbox").glob("issue-0001-*.eml"))
    assert len(files) == 5


def test_once_runs_the_weekly_job_and_records_it(make_ctx, tmp_path):
    import schedule

    ctx = make_ctx()
    assert schedule.main(["--config", str(ctx.config.source), "--once"]) == 0
    row = _row(ctx, "weekly")
    assert row.result == "skipped" and row.message.endswith("0 new items, 3 needed")


def test_an_issue_failing_its_checks_is_not_sent_and_the_run_says_why(make_ctx, tmp_path):
    from pipeline.compose.issues import delivery_counts
    from subscribers.store import add_subscriber
    from tests.feedgen import BEAUTY_ITEMS

    feed = tmp_path / "all.xml"
    feed.write_bytes(rss("All", KP_ITEMS + BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("All", str(feed), ["kp"])], digest={"max_html_bytes": 2000})
    add_subscriber(ctx, "ann@example.com")
    out = jobs.run_recorded(ctx, "weekly", jobs.body_for("weekly", ctx, threading.Event()))
    assert out.result == "failed"
    assert out.message.startswith("CheckFailed: issue #1 fails its checks: ")
    assert "over the 2000-byte budget" in out.message
    assert _row(ctx, "weekly").message == out.message
    with ctx.engine.connect() as conn:
        from pipeline.compose.issues import get_issue

        issue = get_issue(conn, 1)
        assert (issue.status, issue.approved_at) == ("frozen", None)  # dispatch will not send it
        assert delivery_counts(conn, issue.id)["queued"] == 1
