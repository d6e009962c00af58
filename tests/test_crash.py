"""A sender killed with SIGKILL at random moments, then resumed: every reader is accepted
by the provider exactly once, or reported `unknown` (never more than the rows whose
request had started at the kill, `posted`; rows merely claimed go back to the queue, and
the resumed send first asks the provider about the rest); nobody is mailed twice or
silently missing. With idempotency keys (Resend), nobody is even `unknown`.

Runs on SQLite (the single-machine default); the concurrency of claims on PostgreSQL is
covered by tests/test_two_senders.py.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import select

from core.models import deliveries
from pipeline.compose.issues import get_issue
from pipeline.deliver.engine import send_issue
from tests.fakes.config import use_provider
from tests.fakes.issue import add_subscribers, emails, make_issue
from tests.fakes.providers import FakeProvider
from tests.fakes.sender import run

AUDIENCE = 30
BATCH = 3
IN_FLIGHT = 2
RUNS = {"postmark": 20, "resend": 10}


@pytest.fixture
def db_url(tmp_path):
    """SQLite only (overrides the conftest fixture that also runs PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def _kill_at_random(mp, config, number: int, rng: random.Random, fake: FakeProvider) -> None:
    """A sender process, SIGKILLed at a random point of its progress while it sends.

    The moment is drawn from the provider's progress (a random count of accepted
    recipients, then a random few milliseconds), not from the clock, so the kill lands
    mid-send however loaded the machine is.
    """
    ready = mp.Event()
    env = {k: v for k, v in os.environ.items() if k.startswith("KPDIGEST_")}
    child = mp.Process(target=run, args=(str(config), number, env, ready))
    child.start()
    assert ready.wait(30)
    target = rng.randrange(0, AUDIENCE - BATCH * IN_FLIGHT)
    deadline = time.monotonic() + 30
    while sum(fake.counts().values()) < target and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, 0.01))
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL, \
        f"the sender ended (exit code {child.exitcode}) before it could be killed"


def _ledger(ctx, number: int) -> dict[str, str]:
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        return {r.email: r.state for r in conn.execute(
            select(deliveries.c.email, deliveries.c.state).where(deliveries.c.issue_id == issue.id))}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(RUNS))
def test_sigkill_at_random_moments_then_resume(make_ctx, monkeypatch, tmp_path, kind):
    monkeypatch.setenv(f"KPDIGEST_{'POSTMARK_TOKEN' if kind == 'postmark' else 'RESEND_API_KEY'}", "k")
    fake = FakeProvider(kind, latency=0.02)
    ctx = make_ctx()
    config = use_provider(ctx.config.source, kind, fake.base, batch_size=BATCH,
                          max_in_flight=IN_FLIGHT, backoff_seconds=0.05)
    ctx.close()
    from core.context import Context

    ctx = Context.load(str(config))
    add_subscribers(ctx, AUDIENCE)
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["tests.fakes.sender"])
    killed_mid_send = 0
    try:
        for _run in range(RUNS[kind]):
            number = make_issue(ctx)
            _kill_at_random(mp, config, number, rng, fake)
            fake.wait_idle()
            before = _ledger(ctx, number)
            killed_mid_send += 0 < sum(s == "sent" for s in before.values()) < AUDIENCE
            at_kill = Counter(before.values())
            assert at_kill["posted"] + at_kill["sending"] <= BATCH * IN_FLIGHT, at_kill
            send_issue(ctx, number, force=True)  # the resumed sender
            fake.wait_idle()
            ledger, accepted = _ledger(ctx, number), fake.counts()
            fake.reset_log()
            assert set(ledger) == set(emails(AUDIENCE))
            assert max(accepted.values(), default=1) == 1, "someone was mailed twice"
            states = Counter(ledger.values())
            assert set(states) <= {"sent", "unknown"}, states
            assert all(accepted[e] == 1 for e, s in ledger.items() if s == "sent")
            # Only rows on the wire at the kill can be unknown, and only those the
            # provider did not accept (the resumed send reconciled the rest).
            assert states["unknown"] <= at_kill["posted"], (states, at_kill)
            assert all(accepted[e] == 0 for e, s in ledger.items() if s == "unknown")
            if kind == "resend":
                assert states["unknown"] == 0 and sorted(accepted) == sorted(emails(AUDIENCE))
    finally:
        fake.close()
        ctx.close()
    assert killed_mid_send >= 3, "the kills should often land while sending"
