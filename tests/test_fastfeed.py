"""The lxml fast path gives exactly feedparser's articles, or steps aside for feedparser.

The corpus test is the contract: on every document of ../shared/feed-corpus/ that the fast
path accepts, the article records, feed title and base link equal what the feedparser path
makes of the same bytes and headers.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import feedparser
import pytest

from core.config import load_config
from pipeline.collect.fastfeed import fast_parse
from pipeline.collect.parse import _link, entry_record, parse_feed
from pipeline.collect.sanitize import html_to_text
from tests.conftest import REQUIRE_TOOLS
from tests.test_feed_corpus import CORPUS, corpus_files, served_headers

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BASE = "https://feeds.example.com/feed.xml"
RSS_HEADERS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def articles(parsed, cfg) -> tuple[str, str, list]:
    """What `parse_feed` keeps of a parse: feed title, the base for links, the records."""
    link = _link(parsed["feed"].get("link"), BASE) or BASE
    return (html_to_text(parsed["feed"].get("title", ""))[:200], link,
            [entry_record(e, link, cfg, "Source", NOW, 7) for e in parsed["entries"]])


def slow_parse(body: bytes, headers: dict[str, str]):
    return feedparser.parse(body, response_headers={k.lower(): v for k, v in headers.items()},
                            sanitize_html=False, resolve_relative_uris=False)


@pytest.mark.slow
def test_fast_path_matches_feedparser_on_every_corpus_document_it_accepts():
    files = corpus_files()
    if not files:
        (pytest.fail if REQUIRE_TOOLS else pytest.skip)(f"no feed corpus at {CORPUS}")
    cfg = load_config()
    accepted, differ = 0, []
    for path in files:
        body = path.read_bytes()
        headers = served_headers(body)
        if headers.pop("Content-Encoding", None):
            body = gzip.decompress(body)
        fast = fast_parse(body, headers)
        if fast is None:
            continue
        accepted += 1
        slow = slow_parse(body, headers)
        if slow.bozo or slow.get("version") != fast["version"] or articles(slow, cfg) != articles(fast, cfg):
            differ.append(str(path.relative_to(CORPUS)))
    assert not differ, differ[:10]
    # Most of the corpus is parser edge cases that should fall back; hundreds must not.
    assert accepted > 500


def rss(items: str, channel: str = "", attrs: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {attrs}><channel>'
            f"<title>Bumps &amp; Balms</title><link>https://bumps.example.com/</link>{channel}"
            f"{items}</channel></rss>").encode()


ITEM = ("<item><title>Urea, gently</title><link>https://bumps.example.com/urea?utm_source=rss</link>"
        "<guid>https://bumps.example.com/p/1</guid><pubDate>Tue, 17 Nov 2026 08:00:00 GMT</pubDate>"
        "<author>editor@bumps.example.com (Pat Lee)</author><category>kp</category>"
        "<description><![CDATA[<p>Urea cream twice a day <script>x()</script>"
        "<img src='/t.gif' width='1' height='1'></p>]]></description>"
        '<enclosure url="https://bumps.example.com/a.jpg" type="image/jpeg" length="10"/></item>')


@pytest.mark.parametrize("body", [
    rss(ITEM),
    rss(ITEM.replace("<guid>", '<guid isPermaLink="false">').replace(
        "<link>https://bumps.example.com/urea?utm_source=rss</link>", "")),
    rss(ITEM.replace("</item>", "<content:encoded><![CDATA[<p>Full text</p>]]></content:encoded></item>"),
        attrs='xmlns:content="http://purl.org/rss/1.0/modules/content/"'),
    rss(ITEM.replace("<author>editor@bumps.example.com (Pat Lee)</author>", "<dc:creator>Pat</dc:creator>"),
        attrs='xmlns:dc="http://purl.org/dc/elements/1.1/"'),
    (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title type="html">A &amp;lt;b&amp;gt;'
     b'</title><id>tag:x,2026:f</id><entry><title>KP</title><id>tag:x,2026:1</id>'
     b'<link rel="alternate" href="https://x.example.org/1"/><link rel="enclosure" type="image/png" '
     b'href="https://x.example.org/1.png"/><updated>2026-11-18T10:00:00Z</updated>'
     b'<author><name>Jo</name><email>jo@x.example.org</email></author><category term="kp"/>'
     b'<content type="html">&lt;p&gt;Lactic acid&lt;/p&gt;</content></entry></feed>'),
], ids=["rss", "guid-not-permalink", "content-encoded", "dc-creator", "atom"])
def test_fast_path_records_equal_feedparser_records(body):
    cfg = load_config()
    fast = fast_parse(body, RSS_HEADERS)
    assert fast is not None
    assert articles(fast, cfg) == articles(slow_parse(body, RSS_HEADERS), cfg)


@pytest.mark.parametrize("body", [
    b"<html><body>not a feed</body></html>",
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</channel></rss>',  # not well-formed
    b'<!DOCTYPE rss [<!ENTITY e "x">]><rss version="2.0"><channel><title>&e;</title></channel></rss>',
    rss("<item><title>&nbsp;undefined entity</title></item>"),
    rss(ITEM, attrs='xml:base="https://elsewhere.example.com/"'),
    rss(ITEM.replace("</item>", "<title>again</title></item>")),  # feedparser resolves repeats
    rss(ITEM.replace("</item>", "<itunes:summary>s</itunes:summary></item>"),
        attrs='xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'),
    rss(ITEM.replace("<description>", "<description><p>inline markup</p>").replace(
        "<![CDATA[", "<![CDATA[x")),
    b'<rss version="0.92"><channel><title>old</title></channel></rss>',
    b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title type="xhtml"><div xmlns='
    b'"http://www.w3.org/1999/xhtml">x</div></title></entry></feed>',
], ids=["html", "broken", "doctype", "undefined-entity", "xml-base", "repeat", "podcast", "markup",
        "rss-092", "xhtml"])
def test_anything_unusual_is_left_to_feedparser(body):
    assert fast_parse(body, RSS_HEADERS) is None


def test_a_wrong_declared_encoding_goes_to_feedparser_and_its_warning():
    body = rss(ITEM.replace("Urea, gently", "Urée, doucement")).replace(b'encoding="utf-8"', b"")
    latin = body.decode("utf-8").encode("iso-8859-1")
    assert fast_parse(body, {"Content-Type": "application/rss+xml"}) is not None
    assert fast_parse(latin, {"Content-Type": "text/xml; charset=utf-8"}) is None  # bytes are not UTF-8
    parsed = parse_feed(latin, {"Content-Type": "text/xml; charset=utf-8"}, BASE, load_config(), "S", NOW, 7)
    assert parsed.entries[0]["title"] == "Urée, doucement"
    assert parsed.warning.startswith("CharacterEncodingOverride")


def test_parse_feed_takes_the_fast_path_unless_configured_off(monkeypatch):
    cfg = load_config()
    calls = []
    real = feedparser.parse
    monkeypatch.setattr(feedparser, "parse", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast = parse_feed(rss(ITEM), RSS_HEADERS, BASE, cfg, "Source", NOW, 7)
    assert calls == []
    cfg.collect.fast_parser = False
    slow = parse_feed(rss(ITEM), RSS_HEADERS, BASE, cfg, "Source", NOW, 7)
    assert calls == [1]
    assert fast.entries == slow.entries and fast.title == slow.title == "Bumps & Balms"
    assert "script" not in fast.entries[0]["summary_html"] and "t.gif" not in fast.entries[0]["summary_html"]


@pytest.mark.parametrize("value", [
    "Tue, 17 Nov 2026 08:00:00 GMT", "Fri, 27 Nov 2026 14:46:42 -0000", "Sat, 1 Feb 26 23:59:59 +0130",
    "Sun, 31 Feb 2026 10:00:00 GMT", "Mon, 02 Mar 2026 25:00:00 EST", "Thu, 05 Oct 2026 10:00 PDT",
    "Wed, Nov 18 2026 10:00:00 +05:30", "Fri, 27 Nov 2026", "Fri, garbage",
    "Fri, 27 Nov 2026 10:00:00 Etc/GMT",
    "2026-11-18T10:00:00Z", "Friday, 27-Nov-26 10:00:00 GMT", "Tue, 30 Dec 9999 23:59:59 -1200",
    "Fri, 31 Dec 9999 23:59:59 -0100", "Mon, 01 Jan 0001 00:30:00 +0100", "Tue, 17 Nov 2026 08:00:00 +0530",
    "Tue, 17 Nov 2026 08:00:00 -0945", "Tue, 17 Nov 2026 08:00:60 GMT", "Tue, 17 Xyz 2026 08:00:00 GMT",
    "Tue, 17 Nov 2026 08:00:00 +9999", "Tue, 00 Nov 2026 08:00:00 GMT",
])
def test_dates_read_as_feedparser_reads_them(value):
    from feedparser.datetimes import _parse_date as feedparser_date

    from pipeline.collect.fastfeed import _parse_date
    assert _parse_date(value) == feedparser_date(value)


def test_an_entry_with_a_link_urllib_cannot_parse_keeps_the_feed():
    body = rss(ITEM.replace("https://bumps.example.com/urea?utm_source=rss", "http://[bad/x")
               + ITEM.replace("/p/1", "/p/2"))
    parsed = parse_feed(body, RSS_HEADERS, BASE, load_config(), "Source", NOW, 7)
    # The first keeps its guid, a permalink, as its link.
    assert [e["link"] for e in parsed.entries] == ["https://bumps.example.com/p/1", "https://bumps.example.com/urea"]


def test_entries_with_neither_title_nor_link_are_left_out_and_a_link_stands_in_for_a_title():
    items = ("<item><description>nothing to name it by</description></item>"
             "<item><link>https://bumps.example.com/untitled</link><description>d</description></item>"
             "<item><title>Titled</title><description>d</description></item>")
    parsed = parse_feed(rss(items), RSS_HEADERS, BASE, load_config(), "Source", NOW, 7)
    assert [(e["title"], e["link"]) for e in parsed.entries] == [
        ("https://bumps.example.com/untitled", "https://bumps.example.com/untitled"), ("Titled", None)]
    assert parsed.raw_entries == 3
