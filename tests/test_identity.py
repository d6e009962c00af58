"""Article identity: guid, else canonical link, else a content hash; one story stored once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.models import articles
from pipeline.collect.identity import article_identity, canonical_url, clean_url
from pipeline.collect.run import collect
from tests.feedgen import rss


def test_canonical_url_normalises_scheme_host_port_order_tracking_and_fragment():
    assert canonical_url("HTTP://WWW.Example.COM:80/kp/Guide?utm_source=rss&b=2&fbclid=x&a=1#top") \
        == "https://example.com/kp/Guide?a=1&b=2"
    assert canonical_url("https://example.com:8443/x?_hsenc=1&mc_eid=2") == "https://example.com:8443/x"
    assert canonical_url("https://example.com") == "https://example.com/"
    # Ordinary parameters are part of the page.
    assert canonical_url("https://example.com/?p=12") != canonical_url("https://example.com/?p=13")


def test_clean_url_keeps_the_published_link_minus_tracking():
    assert clean_url("https://Blog.example.com/a?id=3&utm_medium=feed&utm_campaign=w#c") \
        == "https://Blog.example.com/a?id=3"


@pytest.mark.parametrize("query", ["", "utm_source=rss", "utm_source=rss&utm_medium=feed", "a=1&utm_source=x",
                                   "UTM_Source=x", "utm%5Fsource=x", "=x", "utm_source", "&&utm_source=x&",
                                   "fbclid=1&ref=2", "utm+x=1", "q=a+b&utm_source=x", "x"])
def test_clean_url_drops_tracking_queries_as_parse_qsl_would(query):
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from pipeline.collect.identity import _keep_param
    url = f"https://Site.example.com/a/b?{query}#frag"
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _keep_param(k)]
    assert clean_url(url) == urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), ""))


def test_identity_prefers_guid_then_link_then_content():
    assert article_identity("https://ex.com/a?utm_source=x", None, "T", "") == "url:https://ex.com/a"
    assert article_identity(None, "http://www.ex.com/a", "T", "") == "url:https://ex.com/a"
    by_guid = article_identity("42", "https://ex.com/a", "T", "", scope=1)
    assert by_guid.startswith("guid:") and by_guid != article_identity("42", None, "T", "", scope=2)
    assert article_identity(None, None, "T", "body") == article_identity(None, None, "t", " BODY ")
    long = article_identity(None, "https://ex.com/" + "x" * 500, "T", "")
    assert len(long) <= 300 and long != article_identity(None, "https://ex.com/" + "x" * 499 + "y", "T", "")


def test_same_story_from_two_feeds_and_republished_feed_is_stored_once(make_ctx, feed_server):
    one = rss("One", [
        {"title": "KP and urea", "link": "https://news.example.com/kp-urea?utm_source=one"},
        {"title": "Item one", "link": "https://one.example.com/p", "guid": "1",
         "description": "<p>Chicken skin notes from feed one.</p>"},
    ])
    two = rss("Two", [
        {"title": "KP & urea (via Two)", "guid": "http://www.news.example.com/kp-urea#comments"},
        {"title": "Item one of two", "link": "https://two.example.com/p", "guid": "1",
         "description": "<p>A different story that also uses guid 1.</p>"},
        {"title": "Untitled tip", "description": "<p>Pat skin dry.</p>"},
    ])
    feed_server.serve_bytes("/one.xml", one)
    feed_server.serve_bytes("/two.xml", two)
    ctx = make_ctx(feeds=[("One", feed_server.url("/one.xml"), ["kp"]),
                          ("Two", feed_server.url("/two.xml"), ["kp"])])
    report = collect(ctx)
    assert report.new == 4  # the shared story once, both guid-"1" items, the tip

    # The feeds re-publish: reordered, a title edited, the same tip without link or guid.
    feed_server.serve_bytes("/two.xml", two.replace(b"KP &amp; urea (via Two)", b"KP and urea, updated"))
    again = collect(ctx)
    assert again.new == 0 and [o.seen for o in again.outcomes] == [2, 3]
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(articles.c.identity, articles.c.link)).all()
    assert len(rows) == 4
    shared = [link for ident, link in rows if ident == "url:https://news.example.com/kp-urea"]
    # Whichever feed stored it first: its link, or the permalink guid, minus tracking.
    assert shared in (["https://news.example.com/kp-urea"], ["http://www.news.example.com/kp-urea"])
