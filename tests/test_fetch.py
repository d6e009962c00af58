"""Fetching feeds from a real HTTP server on 127.0.0.1: conditional GET, redirects, errors,
timeouts, size caps, wrong content, and what each does to the feed's row."""

from __future__ import annotations

import gzip
import time
from datetime import timedelta

from sqlalchemy import select

from core.db import utcnow
from core.models import articles, feeds
from pipeline.collect.run import collect
from tests.feedgen import KP_ITEMS, rss


def _feed(ctx, url=None):
    with ctx.engine.connect() as conn:
        q = select(feeds) if url is None else select(feeds).where(feeds.c.url == url)
        return conn.execute(q.order_by(feeds.c.id)).first()


def _count(ctx):
    with ctx.engine.connect() as conn:
        return len(conn.execute(select(articles.c.id)).all())


def _redirect(status, location):
    def handler(h):
        h.send_response(status)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return handler


def test_conditional_get_round_trip_and_304_costs_no_parsing(make_ctx, feed_server):
    body = rss("KP", KP_ITEMS)
    lm = "Wed, 25 Nov 2026 10:00:00 GMT"

    def handler(h):
        if h.headers.get("If-None-Match") == '"v1"' and h.headers.get("If-Modified-Since") == lm:
            h.send_response(304)
            h.send_header("ETag", '"v1"')
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("ETag", '"v1"')
        h.send_header("Last-Modified", lm)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    feed_server.routes["/kp.xml"] = handler
    ctx = make_ctx(feeds=[("KP", feed_server.url("/kp.xml"), ["kp"])])
    first = collect(ctx).outcomes[0]
    assert first.new == 3 and not first.not_modified
    row = _feed(ctx)
    assert (row.etag, row.last_modified) == ('"v1"', lm)
    assert "If-None-Match" not in feed_server.requests[0][1]
    assert feed_server.requests[0][1]["User-Agent"].startswith("kpdigest/")
    assert "gzip" in feed_server.requests[0][1]["Accept-Encoding"]

    second = collect(ctx).outcomes[0]
    assert second.not_modified and second.new == second.seen == 0
    sent = feed_server.requests[1][1]
    assert sent["If-None-Match"] == '"v1"' and sent["If-Modified-Since"] == lm
    assert _count(ctx) == 3 and _feed(ctx).last_success_at is not None


def test_gzip_response_is_unpacked(make_ctx, feed_server):
    feed_server.serve_bytes("/gz.xml", gzip.compress(rss("KP", KP_ITEMS)),
                            headers={"Content-Encoding": "gzip"})
    ctx = make_ctx(feeds=[("KP", feed_server.url("/gz.xml"), ["kp"])])
    assert collect(ctx).outcomes[0].new == 3


def test_permanent_redirects_update_the_stored_url(make_ctx, feed_server):
    feed_server.serve_bytes("/new.xml", rss("KP", KP_ITEMS))
    feed_server.routes["/old.xml"] = _redirect(301, "/mid.xml")
    feed_server.routes["/mid.xml"] = _redirect(308, feed_server.url("/new.xml"))
    feed_server.routes["/temp.xml"] = _redirect(302, "/new2.xml")
    feed_server.serve_bytes("/new2.xml", rss("B", [{"title": "Urea tip", "link": "https://b.example.com/x"}]))
    ctx = make_ctx(feeds=[("Moved", feed_server.url("/old.xml"), ["kp"]),
                          ("Temp", feed_server.url("/temp.xml"), ["kp"])])
    report = collect(ctx)
    assert [o.new for o in report.outcomes] == [3, 1]
    assert report.outcomes[0].moved_to == feed_server.url("/new.xml")
    with ctx.engine.connect() as conn:
        urls = conn.execute(select(feeds.c.name, feeds.c.url).order_by(feeds.c.id)).all()
    assert urls == [("Moved", feed_server.url("/new.xml")), ("Temp", feed_server.url("/temp.xml"))]
    # The config still names the old URL: it must not come back as a second feed.
    collect(ctx)
    with ctx.engine.connect() as conn:
        assert len(conn.execute(select(feeds.c.id)).all()) == 2


def test_410_gone_disables_the_feed(make_ctx, feed_server):
    feed_server.serve_bytes("/gone.xml", b"", status=410)
    ctx = make_ctx(feeds=[("Gone", feed_server.url("/gone.xml"), [])])
    out = collect(ctx).outcomes[0]
    assert "410" in out.error
    row = _feed(ctx)
    assert not row.enabled and row.paused and "410" in row.paused_reason
    assert collect(ctx, force=True).outcomes == []


def test_failures_back_off_then_pause_and_never_stop_the_run(make_ctx, feed_server):
    feed_server.serve_bytes("/ok.xml", rss("KP", KP_ITEMS))
    feed_server.serve_bytes("/500.xml", b"oops", status=500, content_type="text/plain")
    ctx = make_ctx(feeds=[("Missing", feed_server.url("/404.xml"), []),
                          ("Broken", feed_server.url("/500.xml"), []),
                          ("Good", feed_server.url("/ok.xml"), ["kp"])],
                   collect={"max_failures": 3, "backoff_minutes": 10})
    report = collect(ctx)
    errors = [o.error for o in report.outcomes]
    assert errors == ["HTTP 404 Not Found", "HTTP 500 Internal Server Error", None]
    assert report.outcomes[2].new == 3
    row = _feed(ctx, feed_server.url("/500.xml"))
    assert row.consecutive_failures == 1 and row.last_error.startswith("HTTP 500") and row.last_error_at
    assert timedelta(minutes=9) < row.next_attempt_at - row.last_error_at <= timedelta(minutes=10)

    # Right away, the failing feeds are backing off and are not fetched.
    again = collect(ctx)
    assert [o.name for o in again.outcomes] == ["Good"]
    assert sorted(n for n, _ in again.waiting) == ["Broken", "Missing"]

    now = utcnow()
    collect(ctx, now=now + timedelta(minutes=11))
    row = _feed(ctx, feed_server.url("/500.xml"))
    assert row.consecutive_failures == 2
    assert timedelta(minutes=19) < row.next_attempt_at - row.last_error_at <= timedelta(minutes=20)
    third = collect(ctx, now=now + timedelta(minutes=40))
    assert all(o.paused for o in third.outcomes if o.error)
    row = _feed(ctx, feed_server.url("/500.xml"))
    assert row.paused and row.paused_reason.startswith("3 failures in a row")


def test_stalling_server_times_out(make_ctx, feed_server):
    def stall(h):  # accepts the connection, never answers in time
        time.sleep(2)

    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.end_headers()
        for _ in range(8):
            h.wfile.write(b"<!-- slow -->" * 10)
            h.wfile.flush()
            time.sleep(0.2)

    feed_server.routes["/stall.xml"] = stall
    feed_server.routes["/trickle.xml"] = trickle
    ctx = make_ctx(feeds=[("Stall", feed_server.url("/stall.xml"), []),
                          ("Trickle", feed_server.url("/trickle.xml"), [])],
                   collect={"read_timeout": 0.5, "total_timeout": 0.7})
    started = time.monotonic()
    report = collect(ctx)
    assert time.monotonic() - started < 1.9
    assert report.outcomes[0].error.startswith("timed out")
    assert report.outcomes[1].error == "timed out: the whole response took too long"


def test_body_over_the_cap_is_refused(make_ctx, feed_server):
    big = rss("Big", [{"title": f"KP {i}", "link": f"https://a.example.com/{i}",
                       "description": "x" * 500} for i in range(40)])

    def chunked(h):  # no Content-Length: the cap must hold while streaming
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(big), 4096):
            part = big[i:i + 4096]
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    feed_server.serve_bytes("/declared.xml", big)
    feed_server.routes["/chunked.xml"] = chunked
    feed_server.serve_bytes("/bomb.xml", gzip.compress(big), headers={"Content-Encoding": "gzip"})
    ctx = make_ctx(feeds=[("Declared", feed_server.url("/declared.xml"), []),
                          ("Chunked", feed_server.url("/chunked.xml"), []),
                          ("Bomb", feed_server.url("/bomb.xml"), [])],
                   collect={"max_bytes": 10_000})
    errors = [o.error for o in collect(ctx).outcomes]
    assert errors[0] == f"body of {len(big)} bytes is over the 10000-byte cap"
    assert errors[1] == errors[2] == "body is over the 10000-byte cap"
    assert _count(ctx) == 0


def test_html_page_redirect_loop_and_json_are_recorded(make_ctx, feed_server):
    feed_server.serve_bytes("/page", b"<!doctype html><html><head><title>Shop</title></head>"
                            b"<body><p>Not a feed</p></body></html>", content_type="text/html")
    feed_server.routes["/a"] = _redirect(302, "/b")
    feed_server.routes["/b"] = _redirect(302, "/a")
    feed_server.serve_bytes("/feed.json", b'{"version": "https://jsonfeed.org/version/1", "items": []}',
                            content_type="application/feed+json")
    ctx = make_ctx(feeds=[("Html", feed_server.url("/page"), []), ("Loop", feed_server.url("/a"), []),
                          ("Json", feed_server.url("/feed.json"), [])])
    html, loop, js = collect(ctx).outcomes
    assert html.error.startswith("not a readable feed (text/html")
    assert loop.error.startswith("redirect loop:") and loop.error.endswith("/a")
    assert js.error.startswith("not a readable feed (application/feed+json")
    assert _feed(ctx).last_error == html.error


def test_wrong_declared_encodings_still_read_the_text(make_ctx, feed_server):
    title = "Crème à l'urée pour la kératose pilaire"
    latin = rss("Latin", [{"title": title, "link": "https://a.example.com/fr"}]).decode().encode("latin-1")
    utf8_said_latin = rss("U", [{"title": title, "link": "https://a.example.com/fr2"}]).replace(
        b'encoding="utf-8"', b'encoding="iso-8859-1"')
    # Latin-1 bytes declared as UTF-8 (in the document and the header).
    feed_server.serve_bytes("/latin.xml", latin, content_type="application/rss+xml; charset=utf-8")
    # UTF-8 bytes whose header says the truth while the document lies.
    feed_server.serve_bytes("/u.xml", utf8_said_latin, content_type="application/xml; charset=utf-8")
    ctx = make_ctx(feeds=[("Latin", feed_server.url("/latin.xml"), []), ("U", feed_server.url("/u.xml"), [])])
    report = collect(ctx)
    assert [o.new for o in report.outcomes] == [1, 1], report.outcomes
    assert report.outcomes[0].warning.startswith("CharacterEncodingOverride")  # the lie is recorded
    with ctx.engine.connect() as conn:
        titles = conn.execute(select(articles.c.title, feeds.c.last_warning)
                              .join(feeds, feeds.c.id == articles.c.feed_id).order_by(feeds.c.id)).all()
    assert [t for t, _ in titles] == [title, title]
    assert titles[0][1].startswith("CharacterEncodingOverride")


def test_proxies_from_the_environment_are_used_and_no_proxy_is_honoured(monkeypatch, feed_server):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from core.config import load_config
    from pipeline.collect.fetch import fetch, make_session

    seen = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)  # a proxy is asked for the absolute URL
            body = rss("Via proxy", KP_ITEMS[:1])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        feed_server.serve_bytes("/direct.xml", rss("Direct", KP_ITEMS[:1]))
        url = f"{feed_server.base}/direct.xml"
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        cfg = load_config()
        with make_session(cfg) as session:  # the environment is read once per host and run
            bodies = [fetch(session, url, cfg).body for _ in range(2)]
        assert seen == [url, url] and all(b"Via proxy" in b for b in bodies)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with make_session(cfg) as session:
            assert b"Direct" in fetch(session, url, cfg).body
        assert len(seen) == 2
    finally:
        proxy.shutdown()
        proxy.server_close()
