"""schedule.py as a real process: jobs fire within seconds (schedule.cron with seconds),
feeds come from a real HTTP server and mail goes over SMTP to a real aiosmtpd server on
127.0.0.1 that counts what it accepted, independently of our ledger."""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select

from core.config import PROJECT_ROOT
from core.db import utcnow
from core.models import deliveries, issues, job_runs, subscribers, subscriptions
from pipeline.compose.issues import delivery_counts
from pipeline.jobs.registry import schedule_status
from subscribers.store import list_id
from tests.feedgen import BEAUTY_ITEMS, KP_ITEMS, rss

pytestmark = pytest.mark.slow
RECIPIENTS = 300


class CountingSMTP:
    """Accepts every message and counts each recipient it accepted. After `hold_after`
    messages it keeps the rest waiting (batches in flight) until `release()`, so a test
    can stop or kill a sender at a known point instead of racing it."""

    def __init__(self) -> None:
        self.accepted: collections.Counter[str] = collections.Counter()
        self.arrived = 0
        self.hold_after: int | None = None
        self.released = threading.Event()
        self.lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.arrived += 1
            held = self.hold_after is not None and self.arrived > self.hold_after
        while held and not self.released.is_set():
            await asyncio.sleep(0.01)
        with self.lock:
            self.accepted.update(envelope.rcpt_tos)
        return "250 OK queued"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.controller.stop()


@pytest.fixture
def smtp():
    server = CountingSMTP()
    yield server
    server.close()


def _set(text: str, line: str, value: str) -> str:
    """Replace the value of the first line starting with `line` ("key = " or "key = old")."""
    text, n = re.subn(rf'(?m)^{re.escape(line)}("[^"]*"|\S*)', line.split("=")[0] + f"= {value}",
                      text, count=1)
    assert n == 1, line
    return text


@pytest.fixture
def setup(make_ctx, feed_server, smtp):
    feed_server.serve_bytes("/kp.xml", rss("KP Feed", KP_ITEMS + BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("KP Feed", feed_server.url("/kp.xml"), ["kp"])])
    text = ctx.config.source.read_text()
    for line, value in (("cron = ", '"*/2 * * * * *"'), ("dispatch_seconds = ", "2"),
                        ("batch_size = ", "10"), ("max_in_flight = ", "2"), ('name = "outbox"', '"smtp"'),
                        ("port = 587", str(smtp.port)), ("security = ", '"none"')):
        text = _set(text, line, value)
    ctx.config.source.write_text(text)
    now = utcnow()
    with ctx.engine.begin() as conn:
        lid = list_id(conn)
        conn.execute(insert(subscribers), [
            {"email": f"r{i:04d}@example.com", "name": "", "attributes": {}, "created_at": now,
             "updated_at": now} for i in range(RECIPIENTS)])
        ids = conn.execute(select(subscribers.c.id)).scalars().all()
        conn.execute(insert(subscriptions), [
            {"subscriber_id": sid, "list_id": lid, "status": "active", "created_at": now,
             "updated_at": now} for sid in ids])
    return ctx


def _start(ctx, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "schedule.py"),
                                 "--config", str(ctx.config.source)],
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def _ledger(ctx) -> tuple[list, dict[str, int]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(issues).where(issues.c.status != "skipped")).all()
        return rows, (delivery_counts(conn, rows[0].id) if rows else {})


def _wait(predicate, what: str, *procs: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a scheduler exited while waiting for {what}")
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def _emails(ctx, state: str) -> set[str]:
    with ctx.engine.connect() as conn:
        return set(conn.execute(select(deliveries.c.email).where(deliveries.c.state == state)).scalars())


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_sigkill_mid_send_then_restart_completes_the_same_issue(setup, smtp, tmp_path):
    ctx = setup
    smtp.hold_after = 30
    first = _start(ctx, tmp_path / "first.log")
    try:
        # 30 accepted: the first two batches of 10 recorded, the next ones held in flight
        _wait(lambda: smtp.arrived > 30 and _ledger(ctx)[1].get("sent", 0) >= 20, "batches in flight", first)
    finally:
        first.kill()  # SIGKILL with batches in flight: no chance to tidy up
    first.wait(timeout=10)
    smtp.release()
    (issue,), counts = _ledger(ctx)
    # In flight at the kill: on the wire (`posted`); any claimed but not yet posted
    # (`sending`) go back to the queue on restart.
    assert issue.status == "sending" and counts["posted"] > 0 and counts["queued"] > 0, counts

    second = _start(ctx, tmp_path / "second.log")
    try:
        _wait(lambda: _ledger(ctx)[0][0].status in ("sent", "needs attention"),
              "the issue to be finished", second)
    finally:
        code = _stop(second)
    log = (tmp_path / "second.log").read_text()
    assert code == 0 and "Traceback" not in log, log
    (done,), counts = _ledger(ctx)
    assert done.id == issue.id
    assert counts["queued"] == counts["sending"] == counts["posted"] == counts["failed"] == 0
    assert counts["sent"] + counts["unknown"] == RECIPIENTS
    assert done.status == ("needs attention" if counts["unknown"] else "sent")  # never sent
    # while anyone's outcome is unknown
    assert max(smtp.accepted.values()) == 1  # nobody mailed twice
    sent, unknown = _emails(ctx, "sent"), _emails(ctx, "unknown")
    assert sent <= set(smtp.accepted) <= sent | unknown  # unknown: the batches the kill cut off
    assert re.search(r"job dispatch: ok in \d+\.\ds: issue #1: \d+ sent now", log), log
    with ctx.engine.connect() as conn:
        weekly = conn.execute(select(job_runs).where(job_runs.c.job == "weekly")
                              .order_by(job_runs.c.id)).first()
    assert (weekly.result, weekly.message[:12]) == ("failed", "interrupted:")
    told = {j["id"]: j for j in schedule_status(ctx)}["weekly"]  # by what became of the issue
    assert told["last_result"] == ("ok" if done.status == "sent" else "needs attention")
    assert told["last_message"].startswith(f"issue #1 {done.status}: {counts['sent']} of ")


def test_two_schedulers_at_once_build_one_issue_and_sigterm_stops_cleanly(setup, smtp, tmp_path):
    ctx = setup
    smtp.hold_after = 20
    logs = [tmp_path / f"p{i}.log" for i in (1, 2)]
    procs = [_start(ctx, log) for log in logs]
    # SQLite: both run every job (the keys keep it harmless); PostgreSQL: one leads, one
    # stands by (tests/test_scheduler_leader.py)
    marks = ["job weekly: started"] * 2 if ctx.engine.dialect.name == "sqlite" else \
        ["job weekly: started", "standby:"]

    def started() -> bool:
        texts = [p.read_text() for p in logs]
        return all(any(m in t for t in texts) for m in marks) and \
            sum("job weekly: started" in t for t in texts) == marks.count("job weekly: started")

    try:
        _wait(lambda: smtp.arrived > 20 and started(), "the weekly jobs, and batches in flight", *procs)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        _wait(lambda: all("SIGTERM received" in p.read_text() for p in logs), "the signal", *procs)
    finally:
        smtp.release()  # the batches in flight may now finish
        codes = [p.wait(timeout=60) for p in procs]
    texts = [p.read_text() for p in logs]
    assert codes == [0, 0], texts
    assert all("scheduler stopped" in t and "Traceback" not in t for t in texts), texts
    with ctx.engine.connect() as conn:
        numbered = conn.execute(select(func.count()).select_from(issues)
                                .where(issues.c.number.is_not(None))).scalar_one()
    _, counts = _ledger(ctx)
    assert numbered == 1 and sum(counts.values()) == RECIPIENTS
    # SIGTERM let the batches in flight finish and be recorded: nothing is left in doubt.
    assert counts["sending"] == counts["unknown"] == 0 and counts["queued"] > 0, counts
    assert max(smtp.accepted.values()) == 1
    assert set(smtp.accepted) == _emails(ctx, "sent")
