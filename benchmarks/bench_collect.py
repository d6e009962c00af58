"""Collect 200 feeds of 50 entries from loopback servers that answer after 50 ms: the first
run (everything new) and the second (every feed answers 304 Not Modified).

    .venv/bin/python -m benchmarks.bench_collect [--feeds 200] [--entries 50] [--delay 0.05]

The feeds are spread over 25 servers (ports) on 127.0.0.1, 8 feeds each, so that the
per-host limit behaves as with real publishers. The servers run in a process of their own,
so that the collector's figures are the collector's. SQLite database in a temporary folder.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import tempfile
import threading
import time
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from core.config import PROJECT_ROOT, load_config
from core.context import Context
from core.db import migrate, utcnow
from core.models import articles, feeds

TOPIC_WORDS = ["keratosis", "pilaris", "urea", "lactic", "acid", "bumps", "arms", "thighs", "skin",
               "barrier", "moisturiser", "routine", "serum", "exfoliation", "gentle", "shower", "winter",
               "humidity", "redness", "follicle", "keratin", "cream", "lotion"]


def vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    """Pseudo-words: articles share topic words and common words, like real ones, without
    being near-duplicates of each other."""
    syllables = ["ka", "ri", "to", "ne", "su", "mo", "la", "pe", "vi", "do", "ra", "shi", "ku", "ze", "po"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(size)]


def article_text(rng: random.Random, vocab: list[str], words: int = 90) -> str:
    # Heavy-tailed: common words come up far more often than the tail, so that two articles
    # share about a tenth of their words (Jaccard ~0.1, up to ~0.25), like same-topic articles.
    picks = [vocab[min(int(rng.paretovariate(0.4) * 50) + rng.randint(0, 9), len(vocab) - 1)]
             for _ in range(words)]
    return " ".join(picks[i] if i % 15 else rng.choice(TOPIC_WORDS) for i in range(words))


def feed_xml(feed: int, entries: int, rng: random.Random, vocab: list[str]) -> bytes:
    now = utcnow()
    items = []
    for i in range(entries):
        text = article_text(rng, vocab)
        items.append(
            f"<item><title>Feed {feed} note {i}: {article_text(rng, vocab, 6)}</title>"
            f"<link>https://site{feed}.example.com/notes/{i}?utm_source=rss</link>"
            f'<guid isPermaLink="false">f{feed}-{i}</guid><pubDate>{format_datetime(now)}</pubDate>'
            f"<description><![CDATA[<p>{text}</p><p><a href=\"/more/{i}\">more</a></p>]]>"
            "</description></item>")
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
            f"<link>https://site{feed}.example.com/</link><description>d</description>{''.join(items)}"
            "</channel></rss>").encode()


def start_server(bodies: dict[str, bytes], delay: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body
        # back until the client's delayed ACK, 40 ms per response (real servers set it too).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            time.sleep(delay)
            body = bodies[self.path]
            etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def serve(per_server: list[dict[str, bytes]], delay: float, ports: Connection) -> None:
    """The loopback servers, in a process of their own: their request threads would
    otherwise take turns on the collector's GIL, which is not a cost of collecting."""
    httpds = [start_server(bodies, delay) for bodies in per_server]
    ports.send([h.server_address[1] for h in httpds])
    ports.recv()  # until the benchmark is done


OVERRIDES: dict[str, Any] = {}


def run(n_feeds: int, n_entries: int, delay: float, servers: int = 25) -> dict[str, float]:
    from pipeline.collect.run import collect

    rng = random.Random(7)
    vocab = vocabulary(rng)
    per_server = [dict[str, bytes]() for _ in range(servers)]
    for f in range(n_feeds):
        per_server[f % servers][f"/feed{f}.xml"] = feed_xml(f, n_entries, rng, vocab)
    mp = multiprocessing.get_context("spawn")
    here, there = mp.Pipe()
    server = mp.Process(target=serve, args=(per_server, delay, there), daemon=True)
    server.start()
    if not here.poll(60):
        raise RuntimeError("the loopback servers did not start")
    urls = [f"http://127.0.0.1:{port}{p}" for port, bodies in zip(here.recv(), per_server, strict=True)
            for p in bodies]
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "config.toml"
        text = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")
        cfg_path.write_text(text.split("[[feeds]]")[0] + text[text.index("# Topics:"):], encoding="utf-8")
        cfg = load_config(cfg_path, {"database": {"url": f"sqlite:///{tmp}/bench.db"}, **OVERRIDES})
        ctx = Context(cfg)
        migrate(ctx.engine)
        with ctx.engine.begin() as conn:
            conn.execute(insert(feeds), [{"name": f"Feed {i}", "url": u, "topics": [], "created_at": utcnow()}
                                         for i, u in enumerate(urls)])
        c0, t0 = cpu_seconds(), time.perf_counter()
        first = collect(ctx)
        c1, t1 = cpu_seconds(), time.perf_counter()
        second = collect(ctx)
        c2, t2 = cpu_seconds(), time.perf_counter()
        with ctx.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(articles)).scalar_one()
        ctx.close()
    here.send("stop")
    server.join(5)
    assert not first.failed and first.new == stored == n_feeds * n_entries, (first.new, stored)
    assert all(o.not_modified for o in second.outcomes)
    return {"first": t1 - t0, "second": t2 - t1, "articles": stored, "first_cpu": c1 - c0,
            "second_cpu": c2 - c1}


def cpu_seconds() -> float:
    """CPU time of this process (fetching, storing, grouping), whatever else the machine is
    doing. The parser processes are the forkserver's children, not ours: not included."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def cpu_probe() -> float:
    """CPU seconds of a fixed pure-Python loop: this machine's speed of the moment. The
    host's other tenants move it by up to 60 % (1.1 to 1.8 s), and the collect figures move
    with it; the probe says which kind of moment a figure comes from."""
    start = time.process_time()
    x = 0
    for i in range(5_000_000):
        x += i * i % 7
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args([] if __name__ != "__main__" else None)
    probe = cpu_probe()
    r = run(args.feeds, args.entries, args.delay)
    print(f"collect {args.feeds} feeds x {args.entries} entries, server delay {args.delay * 1000:.0f} ms: "
          f"first {r['first']:.2f} s ({r['articles']} articles, {r['first_cpu']:.1f} s main-process CPU), "
          f"second (all 304) {r['second']:.2f} s ({r['second_cpu']:.1f} s CPU); "
          f"load average {os.getloadavg()[0]:.1f}, CPU probe {probe:.2f} s")


if __name__ == "__main__":
    main()
