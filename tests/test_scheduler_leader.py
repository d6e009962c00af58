"""One scheduler at a time on PostgreSQL: two real `python schedule.py` processes, one leads
and sends the week's issue, the other stands by; SIGKILL the leader mid-send and the
standby takes over within the stated time and finishes the same issue, nobody mailed twice.
SMTP goes to a real aiosmtpd server that counts what it accepted (tests/test_schedule_process.py).
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select, text
from sqlalchemy.pool import NullPool

from core.db import make_engine, utcnow
from core.models import issues, job_runs
from core.states import FINISHED, IssueStatus
from kpdigest.main import main as cli
from pipeline.jobs.leader import (
    Leadership,
    _parse,
    _tag,
    close_orphaned_runs,
    leader_status,
    lock_key,
)
from pipeline.jobs.leader import me as leader_me
from tests.test_schedule_process import (  # noqa: F401  (setup and smtp are fixtures)
    RECIPIENTS,
    _emails,
    _ledger,
    _set,
    _start,
    _stop,
    _wait,
    setup,
    smtp,
)

pytestmark = pytest.mark.slow
POLL = 1.0
#: the stated takeover time after the leader process dies: one poll, plus start-up slack
#: for a loaded test machine (docs/scaling.md)
TAKEOVER_SECONDS = POLL + 9.0


def _postgres_only(ctx) -> None:
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("leader election is PostgreSQL's; SQLite runs one scheduler as before")


def _status(ctx) -> str:
    result = CliRunner().invoke(cli, ["--config", str(ctx.config.source), "schedule", "status"])
    assert result.exit_code == 0, result.output
    return result.output


def test_sigkill_the_leader_and_the_standby_sends_the_issue_once(setup, smtp, tmp_path):  # noqa: F811
    ctx = setup
    _postgres_only(ctx)
    path = ctx.config.source
    path.write_text(_set(path.read_text(), "leader_poll_seconds = ", str(POLL)))
    smtp.hold_after = 30
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = _start(ctx, logs[0])
    b = None
    try:
        _wait(lambda: "leading: this scheduler" in logs[0].read_text(), "A to lead", a)
        b = _start(ctx, logs[1])
        _wait(lambda: "standby:" in logs[1].read_text(), "B to stand by", a, b)
        assert f":{a.pid} leads" in logs[1].read_text()
        _wait(lambda: smtp.arrived > 30 and _ledger(ctx)[1].get("sent", 0) >= 20,
              "A's batches in flight", a, b)
        out = _status(ctx)
        assert f":{a.pid} since" in out and f":{b.pid}" in out.split("standbys:")[1], out
        assert "job " not in logs[1].read_text()  # the standby ran nothing
    finally:
        a.kill()  # SIGKILL with batches in flight
    a.wait(timeout=10)
    killed = time.monotonic()
    try:
        _wait(lambda: "leading: this scheduler" in logs[1].read_text(), "B to take over", b,
              timeout=60)
        took = time.monotonic() - killed
        assert took <= TAKEOVER_SECONDS, f"took {took:.1f}s"
        smtp.release()
        # `sent`, or `needs attention` when the kill left rows on the wire (unknown)
        _wait(lambda: _ledger(ctx)[0][0].status in FINISHED, "the issue to be finished", b)
        assert f":{b.pid} since" in _status(ctx)
    finally:
        smtp.release()
        code = _stop(b)
    text = logs[1].read_text()
    assert code == 0 and "Traceback" not in text, text
    with ctx.engine.connect() as conn:
        numbered = conn.execute(select(func.count()).select_from(issues)
                                .where(issues.c.number.is_not(None))).scalar_one()
        weekly = conn.execute(select(job_runs).where(job_runs.c.job == "weekly")
                              .order_by(job_runs.c.id)).first()
    (issue,), counts = _ledger(ctx)
    assert numbered == 1
    assert issue.status == (IssueStatus.NEEDS_ATTENTION if counts["unknown"] else IssueStatus.SENT)
    assert counts["queued"] == counts["sending"] == counts["failed"] == 0
    assert counts["sent"] + counts["unknown"] == RECIPIENTS
    assert max(smtp.accepted.values()) == 1  # nobody mailed twice
    sent, unknown = _emails(ctx, "sent"), _emails(ctx, "unknown")
    assert sent <= set(smtp.accepted) <= sent | unknown
    assert (weekly.result, weekly.message[:12]) == ("failed", "interrupted:")


def test_sigterm_stops_a_standby_at_once_and_the_leader_keeps_leading(setup, tmp_path):  # noqa: F811
    ctx = setup
    _postgres_only(ctx)
    path = ctx.config.source
    path.write_text(_set(path.read_text(), "leader_poll_seconds = ", str(POLL)))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = _start(ctx, logs[0])
    try:
        _wait(lambda: "leading: this scheduler" in logs[0].read_text(), "A to lead", a)
        b = _start(ctx, logs[1])
        _wait(lambda: "standby:" in logs[1].read_text(), "B to stand by", a, b)
        assert _stop(b) == 0
        assert "scheduler stopped (was standby)" in logs[1].read_text()
        assert leader_status(ctx).leader.endswith(f":{a.pid}")
        assert leader_status(ctx).standbys == []
    finally:
        code = _stop(a)
    assert code == 0, logs[0].read_text()
    assert leader_status(ctx).leader is None  # a clean stop gives the lead up


def test_one_lock_per_schema_and_a_lost_session_is_noticed(ctx):
    _postgres_only(ctx)
    first, second = Leadership(ctx), Leadership(ctx)
    try:
        assert first.try_lead() and not second.try_lead()
        assert first.still_leading()
        assert leader_status(ctx).leader.endswith(f":{os.getpid()}")
        # the session holding the lock ends (what a dead host's keepalives do): the lead is
        # lost for the holder and free for the other
        with ctx.engine.connect() as conn:
            tag = _tag(lock_key(conn.exec_driver_sql("SELECT current_schema()").scalar_one()))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name LIKE :p AND datname = current_database()"),
                         {"p": f"kps {tag} L%"})  # this schema's leader only
        assert not first.still_leading()
        assert second.wait_for_lead(threading.Event())
    finally:
        first.release()
        second.release()
    assert lock_key("a") != lock_key("b")


def test_a_new_leader_closes_the_runs_of_a_scheduler_gone_from_another_host(ctx):
    _postgres_only(ctx)
    with ctx.engine.begin() as conn:
        tag = _tag(lock_key(conn.execute(text("SELECT current_schema()")).scalar_one()))
        conn.execute(insert(job_runs), [
            {"job": "weekly", "started_at": utcnow(), "result": "running", "message": m}
            for m in ("running in other-host:4242", f"running in {leader_me()}")])
    # the other host's scheduler: a named session as long as it lives
    other = make_engine(ctx.config.database_url, poolclass=NullPool,
                        connect_args={"application_name": f"kps {tag} S other-host:4242"})
    session = other.connect()
    try:
        assert close_orphaned_runs(ctx) == 0
    finally:
        session.close()  # its host is gone: the session ends
        other.dispose()
    assert close_orphaned_runs(ctx) == 1
    with ctx.engine.connect() as conn:
        rows = dict(conn.execute(select(job_runs.c.message, job_runs.c.result)).all())
    assert rows == {f"running in {leader_me()}": "running",  # this host's: close_interrupted's
                    "interrupted: the scheduler other-host:4242 stopped (its database session "
                    "ended) before the job finished": "failed"}


def test_the_status_parser_ignores_what_it_does_not_know():
    status = _parse(["kps 0a0b0c0d L1700000000 host-a:12", "kps 0a0b0c0d S host-b:7",
                     "kps 0a0b0c0d X host-c:1", "garbage"])
    assert status.leader == "host-a:12" and status.since.year == 2023
    assert status.standbys == ["host-b:7"]


def test_sqlite_has_no_election(ctx):
    if ctx.engine.dialect.name != "sqlite":
        pytest.skip("SQLite behaviour")
    lead = Leadership(ctx)
    assert lead.try_lead() and lead.still_leading()
    assert leader_status(ctx).mode == "single"
    assert "one scheduler (SQLite: no election)" in _status(ctx)
