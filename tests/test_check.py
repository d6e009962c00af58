"""`issue check`: a frozen issue is checked as a reader receives it; problems block sending."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.config import PROJECT_ROOT
from core.errors import CheckFailed
from kpdigest.main import main
from pipeline.collect.run import collect
from pipeline.compose.check import check_issue, ensure_sendable, link_problem
from pipeline.compose.issues import build_issue
from pipeline.deliver.engine import send_issue
from subscribers.store import add_subscriber
from tests.feedgen import BEAUTY_ITEMS, KP_ITEMS, rss


def _issue(make_ctx, feed_server, items=None, beauty=True, **overrides) -> tuple[object, int]:
    feed_server.serve_bytes("/kp.xml", rss("KP Feed", items or KP_ITEMS))
    if beauty:
        feed_server.serve_bytes("/beauty.xml", rss("Beauty Feed", BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("KP Feed", feed_server.url("/kp.xml"), ["kp"]),
                          ("Beauty Feed", feed_server.url("/beauty.xml"), ["beauty-tips"])], **overrides)
    add_subscriber(ctx, "ann@example.com", "Ann")
    collect(ctx)
    built = build_issue(ctx)
    assert built.status == "frozen"
    return ctx, built.number


def test_default_digest_passes(make_ctx, feed_server):
    ctx, number = _issue(make_ctx, feed_server)
    report = check_issue(ctx, number, spam=False)
    assert report.ok, report.problems
    assert report.warnings == []
    assert any("bytes of HTML (budget 92160" in line for line in report.info)
    ensure_sendable(ctx, number)  # does not raise


def test_edited_template_with_missing_parts_fails(make_ctx, feed_server, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", templates)
    page = templates / "email" / "digest.html.j2"
    html = page.read_text(encoding="utf-8")
    html = html.replace("<p>{{ site.postal_address }}</p>", "")
    html = html.replace('alt="{{ a.image_alt }}"', "")
    html = html.replace("{{ recipient.preferences_url }}", "javascript:void(0)")
    html = html.replace("<h1", '<a href="http://insecure.example.com/">old site</a><a href="#">top</a><h1')
    page.write_text(html, encoding="utf-8")
    items = [{**KP_ITEMS[0], "description": '<p>Urea and KP.</p><img src="https://a.example.com/u.jpg">'},
             *KP_ITEMS[1:]]
    ctx, number = _issue(make_ctx, feed_server, items, paths={"templates": str(templates)})
    report = check_issue(ctx, number, spam=False)
    text = "\n".join(report.problems)
    assert "HTML footer lacks the postal address" in text
    assert "text footer lacks" not in text
    assert "image without alt text: https://a.example.com/u.jpg" in text
    assert "HTML part lacks the per-recipient preferences link" in text
    assert "unsupported link scheme 'javascript'" in text
    assert "empty or fragment-only link: '#'" in text
    assert any("link is not HTTPS: http://insecure.example.com/" in w for w in report.warnings)
    with pytest.raises(CheckFailed, match="postal address"):
        send_issue(ctx, number)  # `issue send` (ensure_sendable) refuses it...
    assert send_issue(ctx, number, force=True).sent_now == 1  # ...unless forced


def test_over_budget_issue_is_reported(make_ctx, feed_server):
    ctx, number = _issue(make_ctx, feed_server)
    ctx.config.digest.max_html_bytes = 5000  # the budget shrank after the issue was frozen
    report = check_issue(ctx, number, spam=False)
    assert any("over the 5000-byte budget" in p for p in report.problems)


def test_fetch_links_finds_broken_ones(make_ctx, feed_server):
    """Every link points at the local server (tests touch only 127.0.0.1)."""
    for path in ("/ok", "/", "/issues/1"):
        feed_server.serve_bytes(path, b"fine", "text/html")
    local = [{**item, "link": feed_server.url(f"/ok?{n}")} for n, item in enumerate(KP_ITEMS + BEAUTY_ITEMS)]
    local[1]["link"] = feed_server.url("/gone")
    feed_server.serve_bytes("/beauty.xml", rss("Beauty Feed", local[3:]))
    ctx, number = _issue(make_ctx, feed_server, local[:3], beauty=False,
                         site={"base_url": feed_server.base})
    report = check_issue(ctx, number, spam=False)
    assert not any(p.startswith("broken link") for p in report.problems)
    assert any(feed_server.url("/gone") in w and "not HTTPS" in w for w in report.warnings)
    assert any("not HTTPS" in w and "/unsubscribe/" in w and "local trial" in w
               for w in report.warnings)  # own links on loopback: a local trial
    fetched = check_issue(ctx, number, spam=False, fetch_links=True)
    broken = [p for p in fetched.problems if p.startswith("broken link")]
    assert len(broken) == 1 and feed_server.url("/gone") in broken[0] and "HTTP 404" in broken[0]
    asked = {path for path, _ in feed_server.requests}
    assert {"/gone", "/", f"/issues/{number}"} <= asked and any(p.startswith("/ok") for p in asked)
    assert not any("unsubscribe" in path or "preferences" in path for path in asked)


@pytest.mark.parametrize("href, problem", [
    ("https://example.com/a?b=1", None), ("mailto:x@example.com", None),
    ("", "empty"), ("/relative", "scheme"), ("https:///nohost", "host"),
    ("https://exa mple.com/", "whitespace"), ("https://example.com:99999/", "malformed"),
    ("ftp://example.com/f", "scheme"),
])
def test_link_problems(href, problem):
    found = link_problem(href)
    assert (found is None) if problem is None else (problem in found)


def test_cli_check_reports_and_exits_6_on_problems(make_ctx, feed_server):
    ctx, number = _issue(make_ctx, feed_server)
    runner = CliRunner()
    ok = runner.invoke(main, ["--config", str(ctx.config.source), "issue", "check", str(number), "--no-spam"])
    assert ok.exit_code == 0, ok.output
    assert f"issue #{number}: ready to send" in ok.output and "bytes of HTML" in ok.output
    cfg_path = Path(ctx.config.source)
    cfg_path.write_text(cfg_path.read_text(encoding="utf-8").replace(
        "max_html_bytes = 92160", "max_html_bytes = 4000"), encoding="utf-8")
    bad = runner.invoke(main, ["--config", str(cfg_path), "issue", "check", str(number), "--no-spam"])
    assert bad.exit_code == 6
    assert "problem: variant all topics: HTML is" in bad.output
    missing = runner.invoke(main, ["--config", str(cfg_path), "issue", "check", "99", "--no-spam"])
    assert missing.exit_code == 3


def test_spam_score_is_part_of_the_check(make_ctx, feed_server):
    from tests.conftest import require_tool

    require_tool("spamassassin")
    ctx, number = _issue(make_ctx, feed_server)
    report = check_issue(ctx, number)
    assert report.ok, report.problems
    result = report.spam["variant all topics"]
    assert result.score < 2.0 and result.required == 5.0
    assert any("SpamAssassin score" in line for line in report.info)


def test_the_local_trial_setup_passes_without_one_click_over_http(make_ctx, feed_server):
    """docs/web.md's local trial (site.base_url on plain http) passes the check: the mail
    carries an ordinary unsubscribe link, not RFC 8058's one-click, which needs https."""
    from pipeline.compose.check import sample_recipient
    from pipeline.compose.issues import get_issue
    from pipeline.deliver.engine import load_variants
    from tests.fakes.issue import make_issue

    ctx, number = _issue(make_ctx, feed_server, site={"base_url": "http://127.0.0.1:8000"})
    report = check_issue(ctx, number, spam=False)
    assert report.ok, report.problems
    assert any("no one-click unsubscribe: site.base_url is not https" in i for i in report.info)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    variant = next(iter(load_variants(ctx, issue).values()))
    headers = variant.headers_for(sample_recipient(ctx.config))
    assert "List-Unsubscribe-Post" not in headers
    assert headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    public = make_ctx(site={"base_url": "http://digest.example.com"})
    report = check_issue(public, make_issue(public, 1), spam=False)
    assert any("not HTTPS: http://digest.example.com/unsubscribe/" in p for p in report.problems)


def test_one_click_headers_over_http_are_refused_with_the_reason():
    from pipeline.compose.check import CheckReport, _one_click

    report = CheckReport(1)
    _one_click({"List-Unsubscribe": "<http://x.example/unsubscribe/t>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, "variant all", report)
    assert report.problems == ["variant all: one-click unsubscribe (List-Unsubscribe-Post) over "
                               "http (http://x.example/unsubscribe/t): RFC 8058 requires https; "
                               "set site.base_url to an https URL"]
    fine = CheckReport(1)
    _one_click({"List-Unsubscribe": "<https://x.example/unsubscribe/t>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, "variant all", fine)
    assert fine.problems == [] and fine.info == []
