"""The lane while a large issue sends: how long a new reader waits for the confirmation,
and what the lane costs the issue.

    python -m benchmarks.bench_lane --n 1000000 --dbs sqlite
    python -m benchmarks.bench_lane --n 200000 --dbs postgresql --signups-per-second 10

Per database: `n` subscribers; issue 1 sent alone (throughput without the lane); issue 2
sent by a child process (as the scheduler would) while this process queues sign-ups at a
steady rate and runs the lane worker (as `kpdigest serve` does). A sign-up's latency is
from its queueing (the web request's answer) to the confirmation's acceptance by the
loopback fake provider (a process of its own, tests/fakes/providers.py). Only sign-ups
queued while the issue was sending count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_send import Fake, _pg_schema, database_urls, freeze, run_child, seed, write_config


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _latencies(ctx: Any, since: float, until: float) -> tuple[list[float], int]:
    """Seconds from queueing to sent, for sign-ups queued in [since, until]; and how many
    of those were not sent."""
    from sqlalchemy import select

    from core.models import outbound_mail

    with ctx.engine.connect() as conn:
        rows = conn.execute(select(outbound_mail.c.created_at, outbound_mail.c.sent_at)).all()
    window = [r for r in rows if since <= r.created_at.timestamp() <= until]
    done = [(r.sent_at - r.created_at).total_seconds() for r in window if r.sent_at]
    return done, len(window) - len(done)


def with_lane(config: Path, number: int, kind: str, fake: Fake, rate: float) -> dict[str, Any]:
    """Send issue `number` in a child process while sign-ups arrive and the lane serves them."""
    from core.context import Context
    from pipeline.deliver import lane
    from subscribers.consent import Evidence

    result: dict[str, Any] = {}
    sender = threading.Thread(target=lambda: result.update(run_child(config, number, kind, fake.base)))
    ctx = Context.load(str(config))
    stop = threading.Event()
    worker = lane.start_worker(ctx, stop, poll=0.5)
    ev = Evidence(source="/subscribe", ip="127.0.0.1", text="bench", version="bench")
    sender.start()
    time.sleep(1.0)  # the child starts sending
    since, i = time.time(), 0
    while sender.is_alive():
        lane.queue_signup(ctx, f"new{i}@example.net", "", None, ("weekly",), ev)
        i += 1
        time.sleep(1 / rate)
    until = time.time()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _latencies(ctx, since, until)[1]:
        time.sleep(0.2)
    stop.set()
    lane.WAKE.set()
    worker.join(30)
    done, missing = _latencies(ctx, since, until)
    ctx.close()
    return {**result, "signups": i, "lat": done, "missing": missing}


def _frozen(config: Path) -> int:
    """A new issue for the whole audience, the database's statistics brought up to date
    (PostgreSQL plans the claims from them; a million fresh rows would be unknown)."""
    from sqlalchemy import text

    from core.context import Context

    number = freeze(config)
    ctx = Context.load(str(config))
    with ctx.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    ctx.close()
    return number


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--kind", default="mailgun")
    ap.add_argument("--dbs", default="sqlite,postgresql")
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--signups-per-second", type=float, default=5.0)
    args = ap.parse_args(argv)
    print(f"bench_lane: {args.n:,} subscribers, {args.kind}, fake latency {args.latency * 1000:.0f} ms, "
          f"{args.signups_per_second:g} sign-ups/s, load average {os.getloadavg()[0]:.1f}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="kpd-bench-lane-"))
    try:
        for label, url, schema in database_urls(args.dbs.split(","), scratch):
            if schema:
                _pg_schema(url, schema, True)
            try:
                _one(label, url, args)
            finally:
                if schema:
                    _pg_schema(url, schema, False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _one(label: str, url: str, args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="kpd-bench-lane-db-"))
    try:
        config = write_config(folder, url)
        seed(config, args.n)
        fake = Fake(args.kind, args.latency)
        try:
            # Each issue frozen just before it sends, with fresh statistics, as in production.
            alone = run_child(config, _frozen(config), args.kind, fake.base)
            both = with_lane(config, _frozen(config), args.kind, fake, args.signups_per_second)
        finally:
            fake.close()
        lat = both["lat"]
        print(f"{label:<11} issue alone: {alone['sent']:,} in {alone['seconds']:.1f} s = "
              f"{alone['rate']:,.0f}/s; with the lane: {both['sent']:,} in {both['seconds']:.1f} s = "
              f"{both['rate']:,.0f}/s ({(both['rate'] / alone['rate'] - 1) * 100:+.1f} %); sender CPU "
              f"per recipient {alone['cpu_us']:.0f} -> {both['cpu_us']:.0f} µs", flush=True)
        if lat:
            print(f"{'':<11} confirmations: {len(lat)} of {both['signups']} sign-ups queued while "
                  f"it sent, p50 {statistics.median(lat) * 1000:.0f} ms, p99 "
                  f"{_percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms; "
                  f"not sent: {both['missing']}  load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
