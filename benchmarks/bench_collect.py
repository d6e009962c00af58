"""Collect 200 feeds of 50 entries from loopback servers that answer after 50 ms: the first
run (everything new) and the second (every feed answers 304 Not Modified), timed as the step
inside this process and as the whole `kpdigest collect` command (process start to exit,
under `/usr/bin/time`, with its peak RSS).

    .venv/bin/python -m benchmarks.bench_collect [--feeds 200] [--entries 50] [--delay 0.05]
        [--corpus ordinary|near|identical|distinct|all] [--how step|command|both]
        [--as-limit BYTES]

Corpora: `ordinary` (articles of a heavy-tailed vocabulary: same-topic, rarely copies), and
three adversarial ones: `near` (every item written from one small vocabulary, as templated
feeds are: all near-identical), `identical` (one article republished under a new guid, every
item) and `distinct` (no two items share a word). `--how command` runs `kpdigest collect` as
a process twice (under `prlimit --as` with `--as-limit`), `step` calls the step in this
process; `both` (the default) does one then the other, each on a fresh database.
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
import subprocess
import sys
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
from core.models import articles, articles_ungrouped, feeds

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


TEMPLATE_WORDS = """deal coupon save percent today only voucher price store offer discount shipping
free order cream lotion serum urea bundle limited exclusive member checkout online brand skin
bargain clearance promo code""".split()  # noqa: SIM905 - a word list reads better as text
REPUBLISHED = ("A gentle routine for keratosis pilaris: urea cream after the shower, lactic "
               "acid lotion at night, a humidifier in winter, loose cotton sleeves, and "
               "patience, because the bumps on arms and thighs fade over weeks rather than "
               "days. Dermatologists advise against scrubbing, which inflames the follicles "
               "and leaves redness behind.")


CORPORA = ["ordinary", "near", "identical", "distinct"]


def item_text(corpus: str, rng: random.Random, vocab: list[str], n: int) -> tuple[str, str]:
    """(title, text) of the n-th item of a corpus."""
    if corpus == "near":  # a template filled from one small vocabulary: all look alike
        return (f"Deal {n}: {' '.join(rng.sample(TEMPLATE_WORDS, 4))}",
                " ".join(rng.choice(TEMPLATE_WORDS) for _ in range(60)))
    if corpus == "identical":  # one article, republished under a new guid every time
        return "Keratosis pilaris: a gentle routine", REPUBLISHED
    if corpus == "distinct":  # words of its own: no two items share one
        return f"Note {n}", " ".join(f"{_letters(n)}x{_letters(w)}" for w in range(60))
    return article_text(rng, vocab, 6), article_text(rng, vocab)


def _letters(n: int) -> str:
    """n written in letters (a word for the parser, which skips digits)."""
    out = ""
    while True:
        n, d = divmod(n, 26)
        out += chr(97 + d)
        if not n:
            return out


def feed_xml(feed: int, entries: int, rng: random.Random, vocab: list[str],
             corpus: str = "ordinary") -> bytes:
    now = utcnow()
    items = []
    for i in range(entries):
        title, text = item_text(corpus, rng, vocab, feed * entries + i)
        items.append(
            f"<item><title>Feed {feed} note {i}: {title}</title>"
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


def run(n_feeds: int, n_entries: int, delay: float, servers: int = 25, corpus: str = "ordinary",
        command: bool = False, as_limit: int | None = None) -> dict[str, float]:
    rng = random.Random(7)
    vocab = vocabulary(rng)
    per_server = [dict[str, bytes]() for _ in range(servers)]
    for f in range(n_feeds):
        per_server[f % servers][f"/feed{f}.xml"] = feed_xml(f, n_entries, rng, vocab, corpus)
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
        result = (in_commands(cfg_path, f"sqlite:///{tmp}/bench.db", as_limit) if command
                  else in_process(ctx))
        with ctx.engine.connect() as conn:
            count = select(func.count())
            result["articles"] = stored = conn.execute(count.select_from(articles)).scalar_one()
            stories = select(func.count(articles.c.story_id.distinct()))
            result["stories"] = conn.execute(stories).scalar_one()
            left = conn.execute(count.select_from(articles_ungrouped)).scalar_one()
            assert left == 0, f"{left} left ungrouped"
        ctx.close()
    here.send("stop")
    server.join(5)
    assert stored == n_feeds * n_entries, stored
    return result


def in_process(ctx: Context) -> dict[str, float]:
    """Both runs as the step inside this process (`collect`), after its imports."""
    from pipeline.collect.run import collect

    c0, t0 = cpu_seconds(), time.perf_counter()
    first = collect(ctx)
    c1, t1 = cpu_seconds(), time.perf_counter()
    second = collect(ctx)
    c2, t2 = cpu_seconds(), time.perf_counter()
    assert not first.failed, first.failed
    assert all(o.not_modified for o in second.outcomes)
    return {"first": t1 - t0, "second": t2 - t1, "first_cpu": c1 - c0, "second_cpu": c2 - c1,
            "grouped": first.grouped, "clusters": len(first.clusters)}


def in_commands(cfg_path: Path, url: str, as_limit: int | None) -> dict[str, float]:
    """Both runs as `kpdigest collect` processes, start to exit: /usr/bin/time's elapsed wall
    time and peak RSS (under `prlimit --as` when `as_limit` is given)."""
    env = {**os.environ, "KPDIGEST_DATABASE_URL": url, "KPDIGEST_SECRET_KEY": "bench"}
    cap = ["prlimit", f"--as={as_limit}"] if as_limit else []
    out: dict[str, float] = {}
    for name in ("first", "second"):
        timed = ["/usr/bin/time", "-f", "TIME %e %M %U %S"]
        proc = subprocess.run([*cap, *timed, sys.executable, "-m", "kpdigest", "--config",
                               str(cfg_path), "collect"],
                              env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} collect failed ({proc.returncode}): {proc.stderr[-2000:]}")
        wall, rss_kb, user, system = proc.stderr.rsplit("TIME ", 1)[1].split()
        out[name], out[f"{name}_rss"] = float(wall), int(rss_kb) / 1024
        out[f"{name}_cpu"] = float(user) + float(system)  # with the parser processes
        out[f"{name}_summary"] = proc.stdout.strip().splitlines()[-1]  # type: ignore[assignment]
    return out


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
    parser.add_argument("--corpus", default="ordinary",
                        choices=[*CORPORA, "all"])
    parser.add_argument("--how", default="both", choices=["step", "command", "both"],
                        help="time the step in-process, `kpdigest collect` processes, or both")
    parser.add_argument("--as-limit", type=int, default=None, help="prlimit --as for --command")
    args = parser.parse_args([] if __name__ != "__main__" else None)
    corpora = CORPORA if args.corpus == "all" else [args.corpus]
    hows = ["step", "command"] if args.how == "both" else [args.how]
    for corpus, how in ((c, h) for c in corpora for h in hows):
        probe = cpu_probe()
        r = run(args.feeds, args.entries, args.delay, corpus=corpus, command=how == "command",
                as_limit=args.as_limit)
        head = (f"collect {corpus} {args.feeds} feeds x {args.entries} entries, server delay "
                f"{args.delay * 1000:.0f} ms")
        tail = f"load average {os.getloadavg()[0]:.1f}, CPU probe {probe:.2f} s"
        if how == "command":
            cap = f" under prlimit --as={args.as_limit}" if args.as_limit else ""
            print(f"{head}, whole command{cap}: first {r['first']:.2f} s "
                  f"(peak RSS {r['first_rss']:.0f} MB; {r['articles']} articles, "
                  f"{r['stories']} stories; \"{r['first_summary']}\"), "
                  f"second (all 304) {r['second']:.2f} s ({r['second_cpu']:.2f} s CPU, peak RSS "
                  f"{r['second_rss']:.0f} MB); {tail}")
        else:
            print(f"{head}, in-process step: first {r['first']:.2f} s ({r['articles']} articles, "
                  f"{r['stories']} stories, {r['first_cpu']:.1f} s main-process CPU), "
                  "second (all 304) "
                  f"{r['second']:.2f} s ({r['second_cpu']:.1f} s CPU); {tail}")


if __name__ == "__main__":
    main()
