"""Counted links (#19): redirects per second and latency under `kpdigest serve` (waitress)
while counting, and the cost of writing the link table when an issue is frozen.

    .venv/bin/python -m benchmarks.bench_redirect [--seconds 20] [--clients 8] [--subscribers 10000]

Redirects: an issue with counted links is frozen, `kpdigest serve` starts in its own
process, and `--clients` keep-alive HTTP connections (threads of two client processes)
ask for the issue's links as fast as answers come back for `--seconds`. Afterwards the
clicks table must hold every answered request, once. Freezing: the same issue (40 stored
articles, `--subscribers` readers in 4 topic variants) built on fresh databases with
counting on and off, alternately, 5 times each; medians compared.
SQLite in a temporary folder; KPDIGEST_BENCH_DATABASE_URL adds a PostgreSQL run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from benchmarks.bench_import import _pg_scratch
from core.config import PROJECT_ROOT
from core.context import Context
from core.db import make_engine, migrate
from core.models import articles, clicks, issue_links

SECRET = "bench-secret"
TOPICS = ("", "kp", "beauty-tips", "beauty-tips,kp")


def write_config(folder: Path, db_url: str, enabled: bool, port: int = 8000) -> Path:
    body = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")
    body = body.replace('templates = "templates"', f'templates = "{PROJECT_ROOT / "templates"}"')
    body = body.replace("enabled = false                                # count clicks",
                        f"enabled = {'true' if enabled else 'false'}  # count clicks")
    body = body.replace("port = 8000", f"port = {port}")
    path = folder / f"config-{'on' if enabled else 'off'}.toml"
    path.write_text(body, encoding="utf-8")
    os.environ["KPDIGEST_DATABASE_URL"] = db_url
    os.environ["KPDIGEST_SECRET_KEY"] = SECRET
    return path


def seed(ctx: Context, subscribers: int) -> None:
    """`subscribers` readers over 4 topic sets and 40 recent, relevant articles."""
    from subscribers.store import ensure_default_list

    migrate(ctx.engine)
    pg = ctx.engine.dialect.name == "postgresql"
    series = ("SELECT g AS x FROM generate_series(1, :n) g" if pg else
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
              "SELECT x FROM c")
    now = datetime.now(UTC)
    topics = "CASE id % 4 " + " ".join(f"WHEN {i} THEN {repr(t) if t else 'NULL'}"
                                       for i, t in enumerate(TOPICS)) + " END"
    with ctx.engine.begin() as conn:
        lid = ensure_default_list(conn, ctx.config.site.name)
        conn.execute(text(
            "INSERT INTO subscribers (email, name, attributes, soft_bounces, created_at, updated_at) "
            f"SELECT 'reader' || x || '@example.com', '', '{{}}', 0, :now, :now FROM ({series}) s"
        ), {"n": subscribers, "now": now.isoformat(sep=" ")})
        conn.execute(text(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, topics, created_at, updated_at) "
            f"SELECT id, :lid, 'active', {topics}, :now, :now FROM subscribers"),
            {"lid": lid, "now": now.isoformat(sep=" ")})
        conn.execute(insert(articles), [
            {"identity": f"bench-{i}", "origin": "feed", "source": f"Source {i % 8}",
             "title": f"Smoother arms, week {i}", "link": f"https://news{i % 8}.example.org/kp/{i}",
             "summary_html": "<p>Urea and lactic acid soften keratosis pilaris.</p>",
             "excerpt": "Urea and lactic acid soften keratosis pilaris.", "tags": [],
             "topics": ["kp"] if i % 2 else ["beauty-tips"], "score": 5.0 - i / 100,
             "published_at": now - timedelta(hours=i), "created_at": now, "story_id": None}
            for i in range(40)])
        conn.execute(text("UPDATE articles SET story_id = id"))


def freeze_once(folder: Path, url: str, subscribers: int, enabled: bool) -> tuple[float, float]:
    """(seconds to freeze, of which writing the link tables and signing the links)."""
    from pipeline.compose import issues as issues_module

    ctx = Context.load(str(write_config(folder, url, enabled)))
    seed(ctx, subscribers)
    spent = [0.0]
    real = issues_module.record_links

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    issues_module.record_links = timed  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        built = issues_module.build_issue(ctx, period="2026-W01")
        took = time.perf_counter() - t0
    finally:
        issues_module.record_links = real  # type: ignore[assignment]
    assert built.status == "frozen", built
    ctx.close()
    return took, spent[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(port: int, paths: list[str], seconds: float, threads: int, out: Any) -> None:
    """One client process: `threads` keep-alive connections; latencies (s) to `out`."""
    lat: list[float] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds  # counted from here: process start-up is not in it

    def worker() -> None:
        mine: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rnd = random.Random()
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            conn.request("GET", rnd.choice(paths), headers={"User-Agent": "Mozilla/5.0 bench"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 302:
                raise SystemExit(f"unexpected status {resp.status}")
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(lat)


def redirects(folder: Path, url: str, seconds: float, clients: int) -> dict[str, float]:
    from pipeline.compose.issues import build_issue
    from pipeline.measure.links import make_link_token

    port = _free_port()
    config = write_config(folder, url, True, port)
    ctx = Context.load(str(config))
    seed(ctx, 1000)
    built = build_issue(ctx, period="2026-W01")
    with ctx.engine.connect() as conn:
        ids = conn.execute(select(issue_links.c.id).where(
            issue_links.c.issue_id == built.issue_id)).scalars().all()
    paths = [f"/r/{make_link_token(SECRET, built.issue_id, i)}" for i in ids]
    log = (folder / "serve.log").open("wb")  # a pipe nobody reads would stall the server
    server = subprocess.Popen([sys.executable, "-m", "kpdigest", "--config", str(config), "serve"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("kpdigest serve did not start") from None
                time.sleep(0.1)
        q: Any = multiprocessing.get_context("spawn").Queue()
        procs = [multiprocessing.get_context("spawn").Process(
            target=_client, args=(port, paths, seconds, clients // 2, q)) for _ in range(2)]
        for p in procs:
            p.start()
        lat = q.get() + q.get()
        for p in procs:
            p.join()
        counted_by = time.monotonic() + 120
        while True:  # every answered redirect must be stored, once
            with ctx.engine.connect() as conn:
                n = conn.execute(select(func.count()).select_from(clicks)).scalar_one()
            if n >= len(lat) or time.monotonic() > counted_by:
                break
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    ctx.close()
    lat.sort()
    return {"requests": len(lat), "per_s": len(lat) / seconds, "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[int(len(lat) * 0.99)] * 1000, "counted": n}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--freezes", type=int, default=7)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        targets: list[tuple[str, Any]] = [("sqlite", lambda tag: f"sqlite:///{folder / tag}.db")]
        pg = os.environ.get("KPDIGEST_BENCH_DATABASE_URL")
        schemas: list[str] = []
        if pg:
            def pg_url(_tag: str) -> str:
                schema, url = _pg_scratch(pg)
                schemas.append(schema)
                return url
            targets.append(("postgresql", pg_url))
        try:
            for name, make_url in targets:
                load = os.getloadavg()[0]
                r = redirects(folder, make_url("serve"), args.seconds, args.clients)
                print(f"{name:<11} redirects: {r['per_s']:,.0f}/s over {r['requests']:,} requests, "
                      f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {args.clients} keep-alive "
                      f"clients; clicks stored {r['counted']:,} of {r['requests']:,} "
                      f"(load average {load:.1f} before)")
                on: list[tuple[float, float]] = []
                off: list[float] = []
                for i in range(args.freezes):
                    off.append(freeze_once(folder, make_url(f"off{i}"), args.subscribers, False)[0])
                    on.append(freeze_once(folder, make_url(f"on{i}"), args.subscribers, True))
                a, b = statistics.median(off), statistics.median(t for t, _ in on)
                links = statistics.median(w for _, w in on)
                print(f"{name:<11} freeze, {args.subscribers:,} readers in 4 variants: "
                      f"{a * 1000:.0f} ms without counted links, {b * 1000:.0f} ms with "
                      f"({100 * (b - a) / a:+.1f} %; medians of {args.freezes} alternate runs); "
                      f"the link tables themselves: {links * 1000:.1f} ms "
                      f"({100 * links / b:.1f} % of the freeze)")
        finally:
            if pg:
                with make_engine(pg).begin() as conn:
                    for schema in schemas:
                        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
