"""Hostile feed content: nothing active survives into the stored article or the rendered digest."""

from __future__ import annotations

import re

from sqlalchemy import select

from core.models import articles
from pipeline.collect.run import collect
from pipeline.collect.sanitize import (
    _clean_per_fragment,
    _without_pixels,
    excerpt,
    html_to_text,
    sanitize_html,
)
from pipeline.compose.issues import preview_next

HOSTILE = (
    '<p onclick="steal()">Urea softens <b onmouseover="x()">KP</b> bumps.'
    '<script>document.cookie</script><style>p{color:red}</style>'
    '<a href="javascript:alert(1)">one</a> <a href="JaVaScRiPt:alert(2)">two</a> '
    '<a href="  javascript:alert(3)">three</a> <a href="data:text/html;base64,PHNjcmlwdD4=">four</a> '
    '<a href="vbscript:msgbox">five</a> <a href="/guide?utm_source=x">guide</a></p>'
    '<div style="background:url(javascript:alert(4));width:expression(alert(5))">styled</div>'
    '<img src="https://track.example.com/open.gif" width="1" height="1" alt="">'
    "<img src='https://track.example.com/pixel.png' height='0'>"
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
    '<img src="/img/arms.jpg" onerror="alert(6)" width="600" alt="arms">'
    '<iframe src="https://evil.example.com/"></iframe><form action="/x"><input name="p"></form>'
    '<svg onload="alert(7)"><circle/></svg><object data="x.swf"></object>'
    '<!-- comment --><p>Lactic acid helps <a href="https://ok.example.com/a" target="_blank">too</a>.</p>'
)
MARKERS = ("<script", "onclick", "onmouseover", "onerror", "onload", "javascript:", "vbscript:",
           "data:text", "data:image", "expression(", "<iframe", "<form", "<input", "<svg", "<object",
           "<style", "track.example.com", "document.cookie", "steal()")


def _assert_clean(text: str, markers: tuple[str, ...] = MARKERS) -> None:
    low = text.lower()
    for marker in markers:
        assert marker not in low, marker


def test_allowlist_sanitiser_keeps_content_and_drops_everything_active():
    out = sanitize_html(HOSTILE, "https://blog.example.com/posts/1")
    _assert_clean(out)
    assert '<a href="https://blog.example.com/guide?utm_source=x"' in out  # made absolute
    assert '<img src="https://blog.example.com/img/arms.jpg" width="600" alt="arms">' in out
    assert "styled" in out and "Urea softens <b>KP</b> bumps." in out
    assert 'rel="noopener noreferrer nofollow"' in out and "target" not in out


RELATIVE = ["/more/1", "../up.png", "./a/../b?c=d#e", "?q=1", "#frag", "", ".", "..", "a;b", "x/y;z",
            "//cdn.example.net/x.png", "//Host.Example/x", "%2e%2e/x", "a b/c", "caf\u00e9", "x\\y",
            "?u=http://x", "/p'q", "/.well-known/x", "a//b", "x\ty"]
BASES = ["https://blog.example.com/posts/1", "http://blog.example.com/", "https://blog.example.com/a;b/c?d=e",
         "https://Blog.Example.com/x", "https://blog.example.com:8443/x", "https://blog.example.com",
         "https://blog.example.com/a b/", "https://blog.example.com/a//b/c", "ftp://files.example.com/",
         "https://[bad", "", None]


def test_the_shared_cleaner_resolves_relative_urls_as_nh3_does_for_each_base():
    # The cleaner built once resolves plain relative URLs in Python and leaves the rest to a
    # cleaner built for the fragment's base: either way the result is nh3's own.
    for base in BASES:
        for url in RELATIVE:
            fragment = f'<p><a href="{url}">l</a><img src="{url}" alt="i"></p>'
            assert sanitize_html(fragment, base) == _without_pixels(_clean_per_fragment(fragment, base)), \
                (base, url)
    out = sanitize_html('<a href="/x">a</a><a href="a b">b</a>', "https://blog.example.com/p/1")
    assert out.count("https://blog.example.com/") == 2 and "a%20b" in out


def test_text_and_excerpt_drop_script_content():
    text = html_to_text(HOSTILE)
    assert "document.cookie" not in text and "color:red" not in text
    assert text.startswith("Urea softens KP bumps.")
    cut = excerpt("word " * 100, 42)
    assert len(cut) <= 42 and cut.endswith("word…")


def test_hostile_feed_never_reaches_the_store_or_the_digest(make_ctx, feed_server):
    title = 'KP <script>alert("t")</script>cream <img src=x onerror=alert(1)>guide'
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>
<title>Hostile</title><link>https://blog.example.com/</link><description>x</description>
<item><title><![CDATA[{title}]]></title><link>https://blog.example.com/posts/1?utm_medium=rss#top</link>
<guid isPermaLink="false">h1</guid><description><![CDATA[{HOSTILE}]]></description>
<media:content url="javascript:alert(8)" medium="image"/></item>
<item><title>Keratosis pilaris and urea, part two</title><link>javascript:alert(9)</link>
<guid isPermaLink="false">h2</guid>
<content:encoded><![CDATA[<p>Keratosis pilaris bumps soften with urea.</p><script>alert(10)</script>
<p onmouseover="x()"><a href="javascript:void(0)">click</a>
<img src="https://track.example.com/o.gif" width="1"></p>
<div style="width: expression(alert(11))">Part two.</div>]]></content:encoded></item>
<item><title>Chicken skin and lactic acid</title><link>https://blog.example.com/posts/3</link>
<description><![CDATA[<p>Lactic acid for chicken skin (KP).</p>
<img src="https://blog.example.com/i.png" width="1">]]></description>
<enclosure url="data:image/png;base64,AAAA" type="image/png" length="4"/></item>
</channel></rss>""".encode()
    feed_server.serve_bytes("/hostile.xml", body)
    ctx = make_ctx(feeds=[("Hostile", feed_server.url("/hostile.xml"), ["kp"])],
                   selection={"min_items": 1})
    assert collect(ctx).outcomes[0].new == 3
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(articles).order_by(articles.c.id)).all()
    for row in rows:
        for value in (row.title, row.summary_html, row.excerpt, row.link or "", row.image_url or "",
                      row.image_alt or "", row.author or ""):
            _assert_clean(value)
    by_title = {r.title: r for r in rows}
    first = by_title["KP cream guide"]
    assert first.link == "https://blog.example.com/posts/1"  # tracking and fragment gone
    assert first.image_url == "https://blog.example.com/img/arms.jpg"
    assert by_title["Keratosis pilaris and urea, part two"].link is None
    assert by_title["Chicken skin and lactic acid"].image_url is None

    html, sel = preview_next(ctx)
    assert len(sel.picked) == 3
    # The template has a <style> of its own; the feed's CSS must not be in it.
    _assert_clean(re.sub(r"\s+", " ", html), (*(m for m in MARKERS if m != "<style"), "color:red"))
    assert "KP cream guide" in html
