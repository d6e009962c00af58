"""Collecting concurrently (bounded, polite per host), and managing feeds from the CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from core.errors import InvalidInput
from core.models import articles
from core.models import feeds as feeds_table
from kpdigest.main import main
from pipeline.collect.feeds import add_feed, feed_health
from pipeline.collect.run import PARSE_PROCESSES_FROM, collect
from tests.feedgen import rss


def test_feeds_are_fetched_concurrently_within_the_per_host_limit(make_ctx, feed_server):
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "by_host": {}, "max_by_host": {}}

    def slow(h):
        host = h.headers["Host"].split(":")[0]
        with lock:
            state["now"] += 1
            state["by_host"][host] = state["by_host"].get(host, 0) + 1
            state["max"] = max(state["max"], state["now"])
            state["max_by_host"][host] = max(state["max_by_host"].get(host, 0), state["by_host"][host])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
            state["by_host"][host] -= 1
        body = rss("F", [{"title": f"KP note {h.path}", "link": f"https://x.example.com{h.path}"}])
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    port = feed_server.base.rsplit(":", 1)[1]
    feeds = []
    for i in range(6):
        feed_server.routes[f"/f{i}.xml"] = slow
        host = "127.0.0.1" if i % 2 else "localhost"
        feeds.append((f"Feed {i}", f"http://{host}:{port}/f{i}.xml", ["kp"]))
    ctx = make_ctx(feeds=feeds, collect={"workers": 6, "per_host": 2})
    report = collect(ctx)
    assert report.new == 6 and not report.failed
    assert [o.name for o in report.outcomes] == [f"Feed {i}" for i in range(6)]
    assert state["max_by_host"] == {"localhost": 2, "127.0.0.1": 2}
    assert state["max"] > 2  # two hosts in parallel


def _cli(ctx, *args):
    result = CliRunner().invoke(main, ["--config", str(ctx.config.source), *args])
    return result.exit_code, result.output


def test_feeds_cli_add_list_pause_resume_remove(make_ctx, feed_server):
    feed_server.serve_bytes("/kp.xml", rss("KP", [{"title": "Urea and KP", "link": "https://a.example.com/1"}]))
    ctx = make_ctx(feeds=[("Configured", feed_server.url("/kp.xml"), ["kp"])])
    code, out = _cli(ctx, "feeds", "add", feed_server.url("/broken.xml"), "--name", "Broken", "--topic", "kp",
                     "--no-check")
    assert code == 0 and out.startswith("feed 2 added: Broken")
    assert _cli(ctx, "feeds", "add", feed_server.url("/broken.xml"))[0] == 4
    bad_topic = _cli(ctx, "feeds", "add", "https://x.example.com/f", "--topic", "nope")
    assert bad_topic[0] == 5 and "unknown topic 'nope'" in bad_topic[1]

    code, out = _cli(ctx, "collect")
    assert code == 0
    assert "Configured: 1 new, 0 seen" in out and "Broken: error: HTTP 404 Not Found" in out
    assert "1 new article from 2 feeds, 1 failed" in out
    code, out = _cli(ctx, "collect")
    assert "Broken: backing off until" in out

    code, out = _cli(ctx, "feeds", "list")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["1", "ok", "1", "articles"] and "Configured" in lines[0]
    assert lines[1].split()[:5] == ["2", "backing", "off", "0", "articles"]
    assert "last error" in lines[2] and "(1 in a row, retry after" in lines[2] and "HTTP 404" in lines[2]

    assert _cli(ctx, "feeds", "pause", "Broken") == (0, "Broken: paused\n")
    assert "2  paused" in _cli(ctx, "feeds", "list")[1]
    assert _cli(ctx, "feeds", "resume", "2") == (0, "Broken: resumed\n")
    assert [h.state for h in feed_health(ctx)] == ["ok", "new"]  # fetched again on the next collect
    code, out = _cli(ctx, "feeds", "remove", "1")
    assert code == 4 and "is defined in" in out
    assert _cli(ctx, "feeds", "remove", feed_server.url("/broken.xml")) == (0, "Broken: removed\n")
    assert [h.name for h in feed_health(ctx)] == ["Configured"]
    assert _cli(ctx, "feeds", "pause", "nothing")[0] == 3


def test_only_the_command_line_may_add_a_local_file_as_feed(make_ctx):
    ctx = make_ctx()
    for url in ("/etc/passwd", "file:///etc/passwd", "ftp://example.com/feed.xml"):
        with pytest.raises(InvalidInput, match="not an http"):
            add_feed(ctx, url)
    assert add_feed(ctx, "sample/feeds/derm-notes.atom", allow_local=True) > 0


def test_a_changed_feed_rebuilds_only_its_new_entries(make_ctx, feed_server, monkeypatch):
    from pipeline.collect import parse

    items = [{"title": f"KP note {i}", "link": f"https://a.example.com/{i}", "guid": f"g{i}",
              "description": "<p>Urea for keratosis pilaris.</p>"} for i in range(5)]
    feed_server.serve_bytes("/kp.xml", rss("KP", items))
    ctx = make_ctx(feeds=[("KP", f"{feed_server.base}/kp.xml", ["kp"])])
    first = collect(ctx)
    assert (first.new, first.outcomes[0].seen) == (5, 0)

    built = []
    real = parse.entry_records
    monkeypatch.setattr(parse, "entry_records",
                        lambda raws, *a, **k: built.extend(r["title"] for r in raws) or real(raws, *a, **k))
    items.insert(0, {"title": "KP note new", "link": "https://a.example.com/new", "guid": "gnew"})
    feed_server.serve_bytes("/kp.xml", rss("KP", items))  # no ETag: a full 200 again
    second = collect(ctx, force=True)
    assert (second.new, second.outcomes[0].seen) == (1, 5)
    assert built == ["KP note new"]  # the five stored ones were counted, not rebuilt


def test_a_feed_that_cannot_be_stored_is_recorded_and_the_others_land(make_ctx, feed_server, monkeypatch):
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from core.models import feeds as feeds_table
    from pipeline.collect import run as collect_module

    for i in range(3):
        feed_server.serve_bytes(f"/f{i}.xml", rss(f"F{i}", [
            {"title": f"KP note {i}", "link": f"https://a.example.com/{i}", "guid": f"g{i}"}]))
    ctx = make_ctx(feeds=[(f"F{i}", f"{feed_server.base}/f{i}.xml", ["kp"]) for i in range(3)])
    real = collect_module.store_feed_articles

    def store(conn, records, feed_id, now):
        if records and records[0]["title"] == "KP note 1":
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(conn, records, feed_id, now)

    monkeypatch.setattr(collect_module, "store_feed_articles", store)
    report = collect(ctx)
    by_name = {o.name: o for o in report.outcomes}
    assert [by_name[n].new for n in ("F0", "F2")] == [1, 1] and by_name["F1"].new == 0
    assert by_name["F1"].error == "storing failed: OperationalError"
    with ctx.engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(select(feeds_table))}
    assert rows["F1"].consecutive_failures == 1 and rows["F0"].last_error is None



def test_a_failing_batch_is_redone_feed_by_feed(make_ctx, monkeypatch):
    from sqlalchemy import insert, select
    from sqlalchemy.exc import OperationalError

    from core.db import utcnow
    from core.models import feeds as feeds_table
    from pipeline.collect import run as collect_module
    from pipeline.collect.fetch import FetchResult
    from pipeline.collect.parse import parse_feed

    ctx = make_ctx()
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(insert(feeds_table), [{"name": f"F{i}", "url": f"https://f{i}.example.com/",
                                            "topics": [], "created_at": now} for i in range(3)])
        rows = conn.execute(select(feeds_table).order_by(feeds_table.c.id)).all()
    jobs = []
    for row in rows:
        body = rss(row.name, [{"title": f"KP {row.name}", "link": f"https://a.example.com/{row.name}"}])
        parsed = parse_feed(body, {}, row.url, ctx.config, row.name, now, row.id)
        jobs.append(collect_module.Stored(row, collect_module.FeedOutcome(row.id, row.name),
                                          FetchResult(row.url, 200, body), parsed, {"last_success_at": now}))
    real = collect_module.store_feed_articles

    def store(conn, records, feed_id, when):
        if feed_id == rows[1].id:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(conn, records, feed_id, when)

    monkeypatch.setattr(collect_module, "store_feed_articles", store)
    collect_module.Writer.write(collect_module.Run(ctx, None, None, now), jobs)  # one batch of three
    assert [j.outcome.new for j in jobs] == [1, 0, 1]
    assert [j.outcome.error for j in jobs] == [None, "storing failed: OperationalError", None]


def test_the_sqlite_bulk_insert_stores_what_sqlalchemy_stores(make_ctx):
    """The collector's SQLite fast path (driver executemany with SQLAlchemy's bind
    processors) against a plain SQLAlchemy insert of the same records: same rows."""
    from sqlalchemy import delete, insert

    from core.db import utcnow
    from core.models import articles
    from pipeline.collect.parse import parse_feed
    from pipeline.collect.store import _rows, store_feed_articles

    ctx = make_ctx()
    if ctx.engine.dialect.name != "sqlite":
        pytest.skip("the fast path is SQLite's")
    now = utcnow()
    items = [{"title": f"KP note {i}", "link": f"https://a.example.com/{i}", "guid": f"g{i}",
              "description": "<p>Urea &amp; <b>lactic acid</b> for keratosis pilaris.</p>"} for i in range(4)]
    records = parse_feed(rss("KP", items), {}, "https://a.example.com/", ctx.config, "KP", now, 1).entries
    records[1]["published_at"] = None
    columns = ", ".join(c.name for c in articles.c if c.name not in ("id", "story_id"))
    raw = f"SELECT {columns} FROM articles ORDER BY identity"  # as stored, not as read back
    with ctx.engine.begin() as conn:
        assert store_feed_articles(conn, records + records[:1], None, now) == (1, 4)  # a repeat is seen
        fast = conn.exec_driver_sql(raw).all()
        # each its own story until grouped, and listed for grouping
        assert conn.exec_driver_sql("SELECT count(*) FROM articles a JOIN articles_ungrouped u "
                                    "ON u.article_id = a.id WHERE a.story_id = a.id").scalar() == 4
        conn.execute(delete(articles))
        conn.execute(insert(articles), _rows(records, None, "feed", now))
        assert conn.exec_driver_sql(raw).all() == fast
        assert store_feed_articles(conn, records, None, now) == (4, 0)


def _stored(ctx):
    skip = {"id", "created_at", "story_id", "feed_id"}
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(articles).order_by(articles.c.identity)).mappings().all()
    return [{k: v for k, v in r.items() if k not in skip} for r in rows]


def test_the_command_parses_in_processes_and_stores_what_threads_store(make_ctx, feed_server):
    """The CLI parses in processes (started on the first body); the stored articles are
    those of parsing in threads, byte for byte."""
    words = "urea lactic keratosis pilaris bumps arms thighs gentle routine winter humidity serum"
    feeds = []
    for i in range(PARSE_PROCESSES_FROM + 4):
        items = [{"title": f"KP note {i}.{j}", "link": f"https://s{i}.example.com/{j}?utm_source=rss",
                  "description": f"<p>{words} {i} {j}</p><p><a href='/more/{j}'>more</a></p>"}
                 for j in range(3)]
        feed_server.serve_bytes(f"/p{i}.xml", rss(f"P{i}", items))
        feeds.append((f"P{i}", feed_server.url(f"/p{i}.xml"), ["kp"]))
    ctx = make_ctx(feeds=feeds, collect={"parse_processes": 0})
    assert collect(ctx).new == 3 * len(feeds)
    in_threads = _stored(ctx)
    with ctx.engine.begin() as conn:
        conn.execute(delete(articles))
        conn.execute(update(feeds_table).values(etag=None, last_modified=None))
    proc = subprocess.run([sys.executable, "-m", "kpdigest", "--config", str(ctx.config.source), "collect"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _stored(ctx) == in_threads


def serve_conditional(server, path: str, body: bytes) -> None:
    """`path` serves `body` with an ETag, and 304 Not Modified to a request that has it."""
    etag = f'"{hash(body) & 0xFFFFFFFF:x}"'

    def handler(h) -> None:
        unchanged = h.headers.get("If-None-Match") == etag
        h.send_response(304 if unchanged else 200)
        h.send_header("ETag", etag)
        h.send_header("Content-Length", "0" if unchanged else str(len(body)))
        h.send_header("Content-Type", "application/rss+xml")
        h.end_headers()
        if not unchanged:
            h.wfile.write(body)

    server.routes[path] = handler


def test_an_all_304_run_imports_no_parser_or_numpy_and_starts_no_process(make_ctx, feed_server):
    """Nothing changed: no parser processes, no parser, numpy or grouping code imported. The
    first run (bodies to parse) starts its parser processes; the second, all 304, none; the
    third, a few changed feeds, starts them on its first body."""
    feeds = []
    for i in range(PARSE_PROCESSES_FROM + 2):
        body = rss(f"P{i}", [{"title": f"KP note {i}", "link": f"https://s{i}.example.com/1",
                              "description": "<p>urea lactic keratosis pilaris bumps</p>"}])
        serve_conditional(feed_server, f"/p{i}.xml", body)
        feeds.append((f"P{i}", feed_server.url(f"/p{i}.xml"), ["kp"]))
    ctx = make_ctx(feeds=feeds)
    code = (
        "import sys, multiprocessing\n"
        "from core.config import load_config\nfrom core.context import Context\n"
        "from pipeline.collect import run\n"
        "started = []\nreal = run.Parsers.close\n"
        "def close(self):\n    started.append(self.started)\n    real(self)\n"
        "run.Parsers.close = close\n"
        f"report = run.collect(Context(load_config({str(ctx.config.source)!r})))\n"
        "print(report.new, sum(o.not_modified for o in report.outcomes), started[0],\n"
        "      sorted(m for m in ('numpy', 'feedparser', 'pipeline.collect.parse',\n"
        "                         'pipeline.collect.dedupe') if m in sys.modules))\n")
    command = [sys.executable, "-c", code]
    runs = [subprocess.run(command, capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    first, second = (r.stdout.strip().split(maxsplit=3) for r in runs)
    assert first[:3] == [str(len(feeds)), "0", "True"]
    assert second == ["0", str(len(feeds)), "False", "[]"]
    # Changed bodies behind stored ETags: the processes start on the first body (fork server).
    for i in range(3):
        body = rss(f"P{i}", [{"title": f"KP note {i} again", "link": f"https://s{i}.example.com/2",
                              "description": "<p>urea lactic keratosis pilaris bumps again</p>"}])
        serve_conditional(feed_server, f"/p{i}.xml", body)
    third = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert third.stdout.split()[:3] == ["3", str(len(feeds) - 3), "True"]


def test_a_bulk_insert_among_stored_duplicates_lists_only_what_it_stored(make_ctx):
    from core.db import utcnow
    from core.models import articles_ungrouped
    from pipeline.collect.parse import parse_feed
    from pipeline.collect.store import store_feed_articles

    ctx = make_ctx()
    now = utcnow()
    items = [{"title": f"KP note {i}", "link": f"https://a.example.com/{i}", "guid": f"g{i}",
              "description": "<p>Urea for keratosis pilaris.</p>"} for i in range(5)]
    records = parse_feed(rss("KP", items), {}, "https://a.example.com/", ctx.config, "KP", now, 1).entries
    with ctx.engine.begin() as conn:
        assert store_feed_articles(conn, records[1:3], None, now) == (0, 2)
        assert store_feed_articles(conn, records, None, now) == (2, 3)
        stored = conn.execute(select(articles.c.id, articles.c.story_id, articles.c.identity)
                              .order_by(articles.c.id)).all()
        listed = conn.execute(select(articles_ungrouped.c.article_id)
                              .order_by(articles_ungrouped.c.article_id)).scalars().all()
    assert [r.identity for r in stored] == [records[i]["identity"] for i in (1, 2, 0, 3, 4)]
    assert all(r.story_id == r.id for r in stored)  # each its own story until grouped
    assert listed == [r.id for r in stored]


def test_a_config_feed_another_scheduler_registered_meanwhile_is_left_alone(make_ctx):
    """Two schedulers starting at once both find the config's feeds missing; the second
    insert must not fail the run (PostgreSQL raised a unique violation here)."""
    from core.db import utcnow
    from pipeline.collect.feeds import register_feeds

    ctx = make_ctx()
    row = dict(name="KP", url="https://kp.example.com/feed.xml", topics=["kp"], enabled=True,
               created_at=utcnow())
    with ctx.engine.begin() as conn:
        register_feeds(conn, [row])
    with ctx.engine.begin() as conn:  # the other scheduler, with its stale list of feeds
        register_feeds(conn, [{**row, "name": "KP again"}])
    with ctx.engine.connect() as conn:
        names = conn.execute(select(feeds_table.c.name)
                             .where(feeds_table.c.url == row["url"])).scalars().all()
    assert names == ["KP"]
