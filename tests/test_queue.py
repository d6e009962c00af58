"""The editor queue: pages by URL (extraction, edits, SSRF guard), Markdown tips, states,
pins, order, notes, and the CLI over them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from core.errors import StateError, UnsafeURL
from core.models import articles, queue_items
from kpdigest.main import main
from pipeline.collect.fetch import fetch, make_session
from pipeline.compose.issues import build_issue
from pipeline.curate import queue as q

PAGE = b"""<!doctype html><html lang="en"><head>
<title>Ignored title tag</title>
<meta property="og:title" content="Five habits for smoother arms">
<meta property="og:description" content="Small daily habits that soften keratosis pilaris.">
<meta property="og:image" content="/img/arms.jpg">
<meta property="og:site_name" content="Smooth Arms Blog">
<meta property="article:published_time" content="2026-11-20T08:00:00+00:00">
<meta name="author" content="Ines Varga">
</head><body><article><h1>Five habits for smoother arms</h1>
<p>Keratosis pilaris improves with patience. Apply a urea cream to damp skin after every shower,
and swap scrubs for a gentle lactic acid lotion.</p>
<p>Short lukewarm showers keep the skin barrier intact; pat the skin dry rather than rubbing it.</p>
<script>alert('x')</script></article></body></html>"""


def _article(ctx, item_id):
    with ctx.engine.connect() as conn:
        return conn.execute(select(articles).join(queue_items, queue_items.c.article_id == articles.c.id)
                            .where(queue_items.c.id == item_id)).one()


def _private_ctx(make_ctx):
    return make_ctx(collect={"allow_private_addresses": True})


def test_add_url_extracts_the_page_and_every_field_can_be_edited(make_ctx, feed_server):
    feed_server.serve_bytes("/habits", PAGE, content_type="text/html; charset=utf-8")
    ctx = _private_ctx(make_ctx)
    item = q.add_url(ctx, feed_server.url("/habits?utm_source=newsletter"), note="lead story")
    art = _article(ctx, item)
    assert art.title == "Five habits for smoother arms"
    assert "soften keratosis pilaris" in art.summary_html and "<script" not in art.summary_html
    assert art.image_url == feed_server.url("/img/arms.jpg")
    assert art.source == "Smooth Arms Blog" and art.author == "Ines Varga"
    assert art.published_at.date().isoformat() == "2026-11-20"
    assert art.link == feed_server.url("/habits") and art.origin == "editor"
    assert "kp" in art.topics and art.score > 0

    with pytest.raises(q.AlreadyQueued) as exc:
        q.add_url(ctx, feed_server.url("/habits"))
    assert exc.value.item_id == item

    q.edit_item(ctx, item, title="Smoother arms in five habits", summary="Edited <b>summary</b>.",
                image="https://cdn.example.com/a.jpg", source="Guest post", author="I. V.",
                published="2026-11-21")
    art = _article(ctx, item)
    assert (art.title, art.image_url, art.source, art.author) == (
        "Smoother arms in five habits", "https://cdn.example.com/a.jpg", "Guest post", "I. V.")
    assert art.summary_html == "<p>Edited &lt;b&gt;summary&lt;/b&gt;.</p>"
    assert art.published_at.date().isoformat() == "2026-11-21"

    feed_server.serve_bytes("/other", PAGE.replace(b"Five habits", b"Six habits"), content_type="text/html")
    other = q.add_url(ctx, feed_server.url("/other"), title="Editor's own title", source="Someone")
    assert (_article(ctx, other).title, _article(ctx, other).source) == ("Editor's own title", "Someone")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.1.2.3",
                                  "192.168.0.10", "[::ffff:127.0.0.1]", "0.0.0.0"])
def test_private_addresses_are_refused_with_a_clear_message(host):
    with pytest.raises(UnsafeURL) as exc:
        q.check_public_url(f"http://{host}/page", allow_private=False)
    msg = str(exc.value)
    assert msg.startswith(f"refusing http://{host}/page: ") and "collect.allow_private_addresses" in msg


def test_add_url_refuses_loopback_before_any_request(make_ctx, feed_server):
    feed_server.serve_bytes("/habits", PAGE, content_type="text/html")
    ctx = make_ctx()
    with pytest.raises(UnsafeURL, match="loopback address"):
        q.add_url(ctx, feed_server.url("/habits"))
    assert feed_server.requests == []


def test_every_redirect_hop_passes_the_guard(make_ctx, feed_server):
    start = feed_server.url("/go")

    def redirect(h):
        h.send_response(302)
        h.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        h.send_header("Content-Length", "0")
        h.end_headers()

    feed_server.routes["/go"] = redirect
    ctx = make_ctx()
    # The first hop stands in for a public address; the redirect target is the cloud metadata one.
    with make_session(ctx.config) as session, pytest.raises(UnsafeURL, match="link-local"):
        fetch(session, start, ctx.config, guard=lambda u: None if u == start else q.check_public_url(u))


def test_markdown_tip_is_rendered_and_sanitised(make_ctx):
    ctx = make_ctx()
    item = q.add_markdown(ctx, "Pat, don't rub", "Apply **urea** to damp skin. [more](javascript:alert(1))"
                          "\n\n<script>alert(2)</script> <img src=x onerror=alert(3)>", approve=True)
    art = _article(ctx, item)
    assert "<strong>urea</strong>" in art.summary_html
    assert "href=" not in art.summary_html and "<script" not in art.summary_html  # the link is inert text
    assert "<img" not in art.summary_html  # raw HTML in Markdown is shown as text, never markup
    assert art.topics == ["kp"]


def test_states_pin_order_and_use_in_an_issue(make_ctx):
    ctx = make_ctx(selection={"min_items": 1})
    ids = [q.add_markdown(ctx, f"Tip {n} on urea for KP", f"Tip number {n} about urea.") for n in range(4)]
    q.set_state(ctx, ids[0], "approved", note="good")
    q.set_state(ctx, ids[1], "rejected")
    q.set_state(ctx, ids[2], "approved")
    q.set_state(ctx, ids[3], "approved")
    q.move(ctx, ids[3], 1)
    q.pin(ctx, ids[2])
    order = [r.id for r in q.list_items(ctx, ("approved",))]
    assert order == [ids[2], ids[3], ids[0]]
    assert [r.note for r in q.list_items(ctx) if r.id == ids[0]] == ["good"]

    built = build_issue(ctx)
    assert built.status == "frozen"
    with ctx.engine.connect() as conn:
        rows = {r.id: (r.state, r.issue_id) for r in conn.execute(select(queue_items))}
    assert rows[ids[1]] == ("rejected", None)
    assert {rows[i] for i in (ids[0], ids[2], ids[3])} == {("used", built.issue_id)}
    with pytest.raises(StateError, match="already used"):
        q.set_state(ctx, ids[0], "queued")


def test_queue_cli_approve_reject_pin_move(make_ctx, monkeypatch):
    ctx = make_ctx()
    monkeypatch.setenv("KPDIGEST_CONFIG", str(ctx.config.source))
    a = q.add_markdown(ctx, "First tip", "About urea.")
    b = q.add_markdown(ctx, "Second tip", "About lactic acid.")
    runner = CliRunner()
    for args, out in ((["approve", str(a), "--note", "lead"], f"item {a}: approved"),
                      (["reject", str(b)], f"item {b}: rejected"),
                      (["pin", str(a)], f"item {a}: pinned"),
                      (["move", str(a), "1"], f"item {a}: position 1"),
                      (["edit", str(a), "--title", "First tip, edited"], f"item {a}: edited title")):
        result = runner.invoke(main, ["queue", *args])
        assert result.exit_code == 0, result.output
        assert out in result.output
    listing = runner.invoke(main, ["queue", "list", "--all"]).output
    assert f"{a}* approved" in listing and "First tip, edited  [lead]" in listing
    assert f"{b}  rejected" in listing
    missing = runner.invoke(main, ["queue", "approve", "999"])
    assert missing.exit_code == 3 and "no queue item 999" in missing.output
