"""Sending throughput and memory, end to end: ledger claims, per-recipient bodies, HTTP to
a loopback fake provider (a separate process answering after --latency seconds), results
recorded.

    python -m benchmarks.bench_send                       # 100k, SQLite (+ PostgreSQL if configured)
    python -m benchmarks.bench_send --n 1000000 --kinds mailgun --latency 0 --dbs sqlite
    python -m benchmarks.bench_send --naive 200           # the naive loop, for the ratio
    python -m benchmarks.bench_send --senders 2           # two sender processes on one issue

PostgreSQL runs when KPDIGEST_BENCH_DATABASE_URL (or KPDIGEST_TEST_DATABASE_URL) is set;
it uses a schema of its own, dropped afterwards. Each measured send runs in a fresh child
process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import PROJECT_ROOT

SECRETS = {"KPDIGEST_POSTMARK_TOKEN": "bench", "KPDIGEST_MAILGUN_API_KEY": "bench",
           "KPDIGEST_SECRET_KEY": "bench-secret"}
PARA = ("Keratosis pilaris shows up as small rough bumps on the upper arms and thighs. Dermatologists "
        "suggest a gentle routine: lukewarm showers, a urea or lactic acid body lotion twice a day, "
        "and patience, because the skin turns over slowly. ")


def articles() -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [{"id": i, "title": f"Smoother arms, week {i}: what a dermatologist tells KP patients",
             "link": f"https://news.example.org/kp/{i}", "source": "Bumpy Skin Journal",
             "summary_html": f"<p>{PARA * 2}</p>", "excerpt": PARA, "topics": ["kp"],
             "picked_by": "feed", "published_at": now, "author": "A. Writer", "image_url": None}
            for i in range(10)]


def write_config(folder: Path, db_url: str) -> Path:
    text = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('templates = "templates"', f'templates = "{PROJECT_ROOT / "templates"}"')
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.environ["KPDIGEST_DATABASE_URL"] = db_url
    os.environ.update(SECRETS)
    return path


def seed(config: Path, n: int) -> None:
    """`n` subscribers generated inside the database (one INSERT ... SELECT each table)."""
    from sqlalchemy import text

    from core.context import Context
    from core.db import migrate
    from subscribers.store import ensure_default_list

    ctx = Context.load(str(config))
    migrate(ctx.engine)
    pg = ctx.engine.dialect.name == "postgresql"
    series = ("SELECT g AS x FROM generate_series(1, :n) g" if pg else
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) SELECT x FROM c")
    now = datetime.now(UTC).isoformat(sep=" ")
    with ctx.engine.begin() as conn:
        lid = ensure_default_list(conn, ctx.config.site.name)
        conn.execute(text(
            "INSERT INTO subscribers (email, name, attributes, soft_bounces, created_at, updated_at) "
            f"SELECT 'reader' || x || '@example.com', 'Reader ' || x, '{{}}', 0, :now, :now FROM ({series}) s"
        ), {"n": n, "now": now})
        conn.execute(text(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at) "
            "SELECT id, :lid, 'active', :now, :now FROM subscribers"), {"lid": lid, "now": now})
    ctx.close()


def freeze(config: Path) -> int:
    from core.context import Context
    from pipeline.compose.personalize import new_key
    from pipeline.compose.render import render_issue
    from tests.fakes.issue import make_issue

    ctx = Context.load(str(config))
    key = new_key()
    r = render_issue(ctx.config, number=1, date=datetime.now(UTC), subject="Bench digest", intro="",
                     articles=articles(), key=key, web_url="https://digest.example.com/issues/1")
    number = make_issue(ctx, html_text=(r.html, r.text), key=key)
    ctx.close()
    return number


def run_child(config: Path, number: int, kind: str, base_url: str, senders: int = 1) -> dict[str, float]:
    """One measured send in fresh processes (`senders` of them sharing the issue, as two
    `issue send` would): recipients/s over the span from the first start to the last
    finish, and the largest peak RSS."""
    from tests.fakes.config import use_provider

    use_provider(config, kind, base_url)
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_send", "--child", str(config),
                               str(number)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for _ in range(senders)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"sender exited with {p.returncode}")
        results.append(json.loads(out.splitlines()[-1]))
    sent = sum(r["sent_now"] for r in results)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"sent": sent, "seconds": seconds, "rate": sent / seconds,
            "rss_mb": max(r["rss_mb"] for r in results),
            "cpu_us": sum(r["cpu"] for r in results) / max(1, sent) * 1e6,
            "db_us": sum(r.get("db_cpu", 0.0) for r in results) / max(1, sent) * 1e6}


def _proc_cpu(pid: int) -> float:
    """Seconds of CPU process `pid` has used (Linux /proc; 0 elsewhere or once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch_backends(engine: Any) -> dict[int, float]:
    """PostgreSQL backends this engine opens (a local server: their /proc is readable),
    with their CPU when first seen, so the database's share of a send can be counted."""
    from sqlalchemy import event

    backends: dict[int, float] = {}
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _seen(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = int(cur.fetchone()[0])
            backends[pid] = _proc_cpu(pid)
    return backends


def child(config: str, number: int) -> None:
    from core.context import Context
    from pipeline.deliver.engine import send_issue

    ctx = Context.load(config)
    backends = _watch_backends(ctx.engine)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start, t0 = time.time(), time.perf_counter()
    r = send_issue(ctx, number, force=True)
    took = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    rss = use.ru_maxrss / 1024
    db_cpu = sum(_proc_cpu(pid) - start_cpu for pid, start_cpu in backends.items())
    print(json.dumps({"sent": r.counts["sent"], "sent_now": r.sent_now, "seconds": took,
                      "start": start, "end": start + took, "rate": r.counts["sent"] / took, "rss_mb": rss,
                      "cpu": use.ru_utime + use.ru_stime - before.ru_utime - before.ru_stime,
                      "db_cpu": db_cpu}))


class Fake:
    """The loopback provider as its own process (it must not share our GIL)."""

    def __init__(self, kind: str, latency: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.providers", "--kind", kind,
                                      "--latency", str(latency), "--fast"], cwd=PROJECT_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def cpu(self) -> float:
        """Seconds of CPU the fake has used (Linux /proc; 0 elsewhere)."""
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def database_urls(dbs: list[str], folder: Path) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    if "sqlite" in dbs:
        out.append(("SQLite", f"sqlite:///{folder / 'bench.db'}", None))
    pg = os.environ.get("KPDIGEST_BENCH_DATABASE_URL") or os.environ.get("KPDIGEST_TEST_DATABASE_URL")
    if "postgresql" in dbs and pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in pg else "?"
        out.append(("PostgreSQL", f"{pg}{sep}options=-csearch_path%3D{schema}", schema))
    return out


def _pg_schema(url: str, schema: str, create: bool) -> None:
    from sqlalchemy import text

    from core.db import make_engine

    base = os.environ.get("KPDIGEST_BENCH_DATABASE_URL") or os.environ["KPDIGEST_TEST_DATABASE_URL"]
    engine = make_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}" if create else f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def naive(n: int, latency: float) -> float:
    """Render + premailer + one request per recipient: the loop we avoid."""
    import requests

    from core.config import load_config
    from pipeline.compose.personalize import new_key
    from pipeline.compose.render import render_issue

    cfg = load_config()
    fake = Fake("postmark", latency)
    try:
        s = requests.Session()
        start = time.perf_counter()
        for i in range(n):
            r = render_issue(cfg, number=1, date=datetime.now(UTC), subject="Bench", intro="",
                             articles=articles(), key=new_key(), web_url="https://d.example/issues/1")
            s.post(fake.base + "/email", json={"From": "d@example.com", "To": f"r{i}@example.com",
                                               "HtmlBody": r.html, "TextBody": r.text,
                                               "MessageStream": "broadcast"}, timeout=30)
        return n / (time.perf_counter() - start)
    finally:
        fake.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--kinds", default="postmark,mailgun")
    ap.add_argument("--dbs", default="sqlite,postgresql")
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--senders", type=int, default=1, help="sender processes sharing the issue")
    ap.add_argument("--naive", type=int, default=0, help="also time the naive loop over this many recipients")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        return child(args.child[0], int(args.child[1]))
    print(f"bench_send: {args.n:,} subscribers, 10-article issue, fake latency {args.latency * 1000:.0f} ms, "
          f"{args.senders} sender process(es), load average {os.getloadavg()[0]:.1f}")
    for kind in args.kinds.split(","):
        scratch = Path(tempfile.mkdtemp(prefix="kpd-bench-"))
        for label, url, schema in database_urls(args.dbs.split(","), scratch):
            if schema:
                _pg_schema(url, schema, True)
            try:
                config = write_config(scratch, url)
                t0 = time.perf_counter()
                seed(config, args.n)
                number = freeze(config)
                setup = time.perf_counter() - t0
                fake = Fake(kind, args.latency)
                try:
                    fake_cpu = fake.cpu()
                    res = run_child(config, number, kind, fake.base, args.senders)
                    fake_us = (fake.cpu() - fake_cpu) / max(1, res["sent"]) * 1e6
                finally:
                    fake.close()
                # CPU per recipient (senders' own, their PostgreSQL backends', the fake's)
                # holds steadier than the rate on a shared machine.
                db = f", PostgreSQL {res['db_us']:.0f} µs" if schema else ""
                print(f"{kind:<9}{label:<11} {res['sent']:>9,} sent in {res['seconds']:7.1f} s = "
                      f"{res['rate']:8,.0f}/s   peak RSS {res['rss_mb']:6.0f} MB   CPU/recipient: "
                      f"sender {res['cpu_us']:.0f} µs{db}, fake {fake_us:.1f} µs   (setup {setup:.0f} s)"
                      f"  load {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                if schema:
                    _pg_schema(url, schema, False)
        shutil.rmtree(scratch, ignore_errors=True)
    if args.naive:
        rate = naive(args.naive, args.latency)
        print(f"naive loop (render + premailer + 1 request each): {rate:,.1f}/s over {args.naive}")


if __name__ == "__main__":
    main()
