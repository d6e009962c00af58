"""Every feed of ../shared/feed-corpus/ (real feeds and parser test cases, well-formed and
broken) collected through a real HTTP server: nothing crashes the run, every broken feed is
recorded on its row, and entries are kept wherever feedparser can read them."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
from sqlalchemy import insert, select

from core.config import PROJECT_ROOT
from core.db import utcnow
from core.models import feeds
from pipeline.collect.run import collect
from pipeline.collect.sanitize import html_to_text
from tests.conftest import REQUIRE_TOOLS

CORPUS = PROJECT_ROOT.parent / "shared" / "feed-corpus"
_HEADER_RE = re.compile(rb"^Header:\s*([\w-]+):\s*(.+?)\s*$", re.MULTILINE)


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".txt")
                  and not p.name.startswith("LICENSE"))


def served_headers(body: bytes) -> dict[str, str]:
    """`Header:` lines of the parser test cases are what the server sends; gzip bytes go out
    with Content-Encoding, as a server would send them."""
    head = body[:2000]
    headers = {k.decode(): v.decode("latin-1") for k, v in _HEADER_RE.findall(head)}
    if body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    return headers


def _route(body: bytes, headers: dict[str, str]):
    def handler(h):
        h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return handler


def _readable(body: bytes, headers: dict[str, str]) -> bool:
    """What feedparser alone makes of the file: an entry with visible title text or a web
    link (an entry that is only markup, or only a tag: id, is no article)."""
    data = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    parsed = feedparser.parse(data, response_headers={k.lower(): v for k, v in headers.items()
                                                      if k.lower() != "content-encoding"})
    return any(html_to_text(e.get("title") or "")
               or (e.get("link") and urlsplit(e["link"]).scheme in ("", "http", "https"))
               for e in parsed.entries)


@pytest.mark.slow
def test_every_corpus_feed_is_collected_or_recorded(make_ctx, feed_server, capsys):
    files = corpus_files()
    if not files:
        (pytest.fail if REQUIRE_TOOLS else pytest.skip)(f"no feed corpus at {CORPUS}")
    expected: dict[str, bool] = {}
    for i, path in enumerate(files):
        body = path.read_bytes()
        headers = served_headers(body)
        feed_server.routes[f"/c/{i}"] = _route(body, headers)
        expected[feed_server.url(f"/c/{i}")] = _readable(body, headers)
    ctx = make_ctx(collect={"workers": 8, "per_host": 8})
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(insert(feeds), [
            {"name": str(p.relative_to(CORPUS))[:200], "url": feed_server.url(f"/c/{i}"), "topics": [],
             "enabled": True, "paused": False, "consecutive_failures": 0, "created_at": now}
            for i, p in enumerate(files)])
    report = collect(ctx)

    assert len(report.outcomes) == len(files)
    with ctx.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(feeds))}
    ok = bozo_kept = broken = kept = 0
    lost = []
    for o in report.outcomes:
        row = rows[o.feed_id]
        if o.error:
            broken += 1
            assert row.last_error == o.error and row.consecutive_failures == 1
        else:
            assert row.last_success_at is not None and row.last_warning == o.warning
            ok += 1
            bozo_kept += bool(o.warning and (o.new or o.seen))
            kept += o.new
        if expected[row.url] and not (o.new or o.seen):
            lost.append((row.name, o.error))
    assert lost == [], lost
    with capsys.disabled():
        print(f"\nfeed corpus: {len(files)} files, {ok} collected ({bozo_kept} bozo with entries kept), "
              f"{broken} broken and recorded, {kept} entries stored")
