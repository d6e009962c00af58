"""The pacing budget shared by every sender through the database (`SharedPacer`): each
pacer here has an engine of its own, as a sender on another host would."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from sqlalchemy import select, update

from core.db import make_engine
from core.models import pacing_budgets
from pipeline.deliver import pacing
from pipeline.deliver.pacing import Pacer, SharedPacer, pacer_for


@pytest.fixture
def engines(ctx):
    made = [make_engine(ctx.config.database_url) for _ in range(2)]
    yield made
    for engine in made:
        engine.dispose()


def test_two_senders_never_take_more_than_the_days_allowance_together(engines):
    a, b = (SharedPacer(e, "mailgun", per_day=1000) for e in engines)
    taken: list[int] = []
    lock = threading.Lock()

    def worker(p: SharedPacer) -> None:
        while (n := p.reserve(7)) > 0:
            with lock:
                taken.append(n)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (a, b) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(taken) == 1000 and a.day_left() == b.day_left() == 0
    b.refund(30)  # rows that were not there to claim
    assert a.day_left() == 30 and a.reserve(50) == 30


def test_the_ledger_seeds_a_new_day_once(engines, ctx):
    a = SharedPacer(engines[0], "postmark", per_day=100, used_today=40)
    b = SharedPacer(engines[1], "postmark", per_day=100, used_today=0)  # joins, no reseed
    assert a.day_left() == b.day_left() == 60
    with ctx.engine.begin() as conn:  # a day later
        conn.execute(update(pacing_budgets).values(day_start=pacing_budgets.c.day_start - 86400))
    assert SharedPacer(engines[0], "postmark", per_day=100, used_today=5).day_left() == 95
    assert SharedPacer(engines[1], "other", per_day=100).day_left() == 100  # per account


def test_senders_queue_for_consecutive_slots(engines):
    a, b = (SharedPacer(e, "sendgrid", per_second=10) for e in engines)
    waits = [p._slot(100) for p in (a, b, a, b)]  # 10 s of budget each
    assert waits[0] < 1
    for before, after in itertools.pairwise(waits):
        assert 9 < after - before <= 10, waits  # less the (database) time between calls
    stop = threading.Event()
    stop.set()
    assert not b.acquire(100, stop)  # its slot is in the future: a set stop returns at once


def test_a_hold_by_one_sender_holds_the_other(engines):
    a, b = (SharedPacer(e, "resend", per_second=1000) for e in engines)
    a.hold(60)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    assert not b.wait_hold(stop) and not b.acquire(1, stop)
    timer.cancel()


def test_a_hold_ends_for_everyone(engines):
    a, b = (SharedPacer(e, "resend", per_second=1000) for e in engines)
    a.hold(0.2)
    assert b._held() > 0
    deadline = time.monotonic() + 30
    while b._held() > 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert b.wait_hold() and b.acquire(1)


def test_host_clock_skew_does_not_move_the_shared_schedule(engines, ctx, monkeypatch):
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("SQLite is one host: its clock is the database's")
    a, b = (SharedPacer(e, "ses", per_second=10) for e in engines)
    real = time.time
    monkeypatch.setattr(pacing.time, "time", lambda: real() + 3600)  # host A is an hour ahead
    first = a._slot(100)
    monkeypatch.setattr(pacing.time, "time", lambda: real() - 3600)  # host B an hour behind
    second = b._slot(100)
    assert first < 1 and 9 < second <= 10  # the database's clock, not theirs
    a.hold(1)
    assert 0 < b._held() <= 1


def test_pacer_for_shares_a_limit_on_postgresql(make_ctx):
    assert isinstance(pacer_for(make_ctx(), "outbox"), Pacer)
    limited = make_ctx(sending={"rate_per_second": 50, "rate_per_day": 1000})
    pacer = pacer_for(limited, "outbox", used_today=10)
    shared = limited.engine.dialect.name == "postgresql"
    assert isinstance(pacer, SharedPacer if shared else Pacer) and pacer.day_left() == 990


def test_a_send_draws_on_the_shared_budget(make_ctx):
    from pipeline.deliver.engine import send_issue
    from tests.fakes.issue import make_issue

    ctx = make_ctx(sending={"rate_per_second": 1000, "rate_per_day": 100})
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps the in-process pacer")
    number = make_issue(ctx, 5)
    send_issue(ctx, number, force=True)
    with ctx.engine.connect() as conn:
        used = conn.execute(select(pacing_budgets.c.day_used)
                            .where(pacing_budgets.c.key == "outbox")).scalar_one_or_none()
    assert used == 5
