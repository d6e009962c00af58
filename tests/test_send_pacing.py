"""The token bucket and backoff, on a clock the test moves (no sleeping, no timing)."""

from __future__ import annotations

import random

from pipeline.deliver.pacing import Pacer, backoff


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_per_second_and_hold():
    clock = Clock()
    p = Pacer(per_second=100, clock=clock)
    assert p._wait_needed(60) == 0  # a second's burst is available at once
    assert p._wait_needed(60) == (60 - 40) / 100
    clock.t += 0.2
    assert p._wait_needed(60) == 0
    p.hold(5)
    assert p._wait_needed(1) == 5
    clock.t += 5
    assert p._wait_needed(1) == 0


def test_a_batch_larger_than_the_rate_still_passes_once_the_bucket_fills():
    clock = Clock()
    p = Pacer(per_second=10, clock=clock)
    assert p._wait_needed(500) > 0
    clock.t += 50
    assert p._wait_needed(500) == 0


def test_daily_allowance_counts_what_was_sent_today():
    clock = Clock()
    p = Pacer(per_day=1000, used_today=900, clock=clock)
    assert p.day_left() == 100
    assert p._wait_needed(100) == 0
    assert p._wait_needed(1) > 3600
    clock.t += 86400
    assert p._wait_needed(1) == 0 and p.day_left() == 999


def test_parallel_workers_reserve_the_daily_allowance_before_claiming():
    clock = Clock()
    p = Pacer(per_second=1000, per_day=10, clock=clock)
    assert [p.reserve(4) for _ in range(4)] == [4, 4, 2, 0]  # never more than is left
    p.refund(3)  # a claim found fewer rows than it reserved for
    assert p.reserve(4) == 3 and p.day_left() == 0
    assert p.acquire(4, reserved=True)  # paced by the bucket, not counted a second time
    clock.t += 86400
    assert p.reserve(4) == 4


def test_backoff_grows_with_jitter_and_honours_the_provider():
    rng = random.Random(1)
    waits = [backoff(a, base=1.0, rng=rng) for a in (1, 2, 3, 4, 5, 6, 7, 8)]
    assert all(0.5 <= w <= 60 for w in waits) and max(waits) > 4
    assert 30 <= backoff(1, retry_after=30, rng=rng) <= 33.5
    assert backoff(9, retry_after=0, rng=rng) < 0.1
