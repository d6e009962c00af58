"""Collecting concurrently (bounded, polite per host), and managing feeds from the CLI."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from kpdigest.cli import main
from kpdigest.errors import InvalidInput
from pipeline.collect import collect
from pipeline.feeds import add_feed, feed_health
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
    code, out = _cli(ctx, "feeds", "add", feed_server.url("/broken.xml"), "--name", "Broken", "--topic", "kp")
    assert code == 0 and out.startswith("feed 2 added: Broken")
    assert _cli(ctx, "feeds", "add", feed_server.url("/broken.xml"))[0] == 4
    bad_topic = _cli(ctx, "feeds", "add", "https://x.example.com/f", "--topic", "nope")
    assert bad_topic[0] == 5 and "unknown topic 'nope'" in bad_topic[1]

    code, out = _cli(ctx, "collect")
    assert code == 0
    assert "Configured: 1 new, 0 seen" in out and "Broken: error: HTTP 404 Not Found" in out
    assert "1 new articles from 2 feeds, 1 failed" in out
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
    from pipeline import parse

    items = [{"title": f"KP note {i}", "link": f"https://a.example.com/{i}", "guid": f"g{i}",
              "description": "<p>Urea for keratosis pilaris.</p>"} for i in range(5)]
    feed_server.serve_bytes("/kp.xml", rss("KP", items))
    ctx = make_ctx(feeds=[("KP", f"{feed_server.base}/kp.xml", ["kp"])])
    first = collect(ctx)
    assert (first.new, first.outcomes[0].seen) == (5, 0)

    built = []
    real = parse.entry_record
    monkeypatch.setattr(parse, "entry_record",
                        lambda raw, *a, **k: built.append(raw["title"]) or real(raw, *a, **k))
    items.insert(0, {"title": "KP note new", "link": "https://a.example.com/new", "guid": "gnew"})
    feed_server.serve_bytes("/kp.xml", rss("KP", items))  # no ETag: a full 200 again
    second = collect(ctx, force=True)
    assert (second.new, second.outcomes[0].seen) == (1, 5)
    assert built == ["KP note new"]  # the five stored ones were counted, not rebuilt
