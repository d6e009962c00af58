"""Two sender processes sharing one pacing budget through PostgreSQL (`SharedPacer`).

Each sender process runs `--threads` workers (like `sending.max_in_flight`) that take a
batch's slot from the pacer and POST the batch to a loopback fake provider answering after
`--latency` seconds, which timestamps every recipient it receives. The combined rate is
measured at the provider, the one place that counts what the senders did together.

    python -m benchmarks.bench_pacing                        # 2 senders, 5,000/s, batches of 500, 20 s
    python -m benchmarks.bench_pacing --mode process         # each sender paced alone: 2x
    python -m benchmarks.bench_pacing --senders 4 --rate 2000

PostgreSQL from KPDIGEST_BENCH_DATABASE_URL (or KPDIGEST_TEST_DATABASE_URL), in a schema
of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import requests
from sqlalchemy import text

from core.db import make_engine, migrate
from pipeline.deliver.pacing import Pacer, SharedPacer


class CountingProvider:
    """Answers every POST after `latency` seconds and records (arrival, recipients)."""

    def __init__(self, latency: float) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                n = len(parse_qs(body.decode()).get("to", []))
                with fake.lock:
                    fake.arrivals.append((now, n))
                time.sleep(latency)
                out = b'{"id": "<x@fake>", "message": "Queued. Thank you."}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v3/bench/messages"


def sender(url: str, db: str, mode: str, rate: float, batch: int, threads: int,
           seconds: float) -> None:
    """One sender process: `threads` workers pacing batches to the provider."""
    engine = make_engine(db)
    pacer: Any = SharedPacer(engine, "mailgun", per_second=rate) if mode == "shared" \
        else Pacer(per_second=rate)
    form = [("to", f"r{i}@example.com") for i in range(batch)] + [("subject", "bench")]
    end = time.monotonic() + seconds

    def work() -> None:
        with requests.Session() as http:
            while time.monotonic() < end:
                if pacer.acquire(batch):
                    http.post(url, data=form, timeout=30).raise_for_status()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    engine.dispose()


def measure(arrivals: list[tuple[float, int]], skip: float) -> dict[str, float]:
    """Combined recipients/s past the first `skip` seconds (the one-batch start), and the
    most recipients that arrived within any one second."""
    arrivals.sort()
    times = [t for t, _ in arrivals]
    start, last = times[0] + skip, times[-1]
    steady = sum(n for t, n in arrivals if t >= start)
    prefix = [0]
    for _, n in arrivals:
        prefix.append(prefix[-1] + n)
    peak = max(prefix[bisect.bisect_left(times, t + 1.0)] - prefix[i]
               for i, t in enumerate(times) if t + 1.0 <= last)
    return {"rate": steady / (last - start), "peak_1s": float(peak),
            "total": float(prefix[-1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--rate", type=float, default=5000.0, help="recipients per second, all together")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=4, help="batches in flight per sender")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--mode", choices=("shared", "process"), default="shared")
    ap.add_argument("--child", nargs=2, metavar=("URL", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        sender(args.child[0], args.child[1], args.mode, args.rate, args.batch, args.threads,
               args.seconds)
        return 0
    base = os.environ.get("KPDIGEST_BENCH_DATABASE_URL") or \
        os.environ.get("KPDIGEST_TEST_DATABASE_URL")
    if not base:
        print("set KPDIGEST_BENCH_DATABASE_URL (PostgreSQL)", file=sys.stderr)
        return 2
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    db = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        engine = make_engine(db)
        migrate(engine)
        engine.dispose()
        return run(args, db)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def run(args: argparse.Namespace, db: str) -> int:
    fake = CountingProvider(args.latency)
    cmd = [sys.executable, "-m", "benchmarks.bench_pacing", "--mode", args.mode,
           "--rate", str(args.rate), "--batch", str(args.batch), "--threads", str(args.threads),
           "--seconds", str(args.seconds), "--child", fake.url, db]
    procs = [subprocess.Popen(cmd) for _ in range(args.senders)]
    codes = [p.wait() for p in procs]
    fake.httpd.shutdown()
    if any(codes):
        print(f"a sender failed: exit codes {codes}", file=sys.stderr)
        return 1
    m = measure(fake.arrivals, skip=1.0)
    off = 100 * (m["rate"] - args.rate) / args.rate
    print(f"{args.senders} senders, mode {args.mode}, budget {args.rate:,.0f}/s, batch "
          f"{args.batch}, {args.threads} in flight each, {args.latency * 1000:.0f} ms latency, "
          f"{args.seconds:.0f} s: combined {m['rate']:,.0f}/s ({off:+.1f} %), busiest second "
          f"{m['peak_1s']:,.0f}, {m['total']:,.0f} recipients")
    return 0


if __name__ == "__main__":
    sys.exit(main())
