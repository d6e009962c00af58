"""The editors' desk in headless Chromium: the whole week's work in one flow (search the
inbox, queue and approve, edit a summary and watch the preview, reorder, preview at 375 px,
test-send, send now), and every desk and public page, as each role, at 375 and 1280 px:
no horizontal scroll and no serious or critical axe-core finding."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time

import pytest

from core.config import PROJECT_ROOT
from pipeline.compose.issues import build_issue
from pipeline.curate import queue as q
from pipeline.deliver.engine import send_issue
from subscribers.store import add_subscriber
from subscribers.tokens import make_token
from tests.test_browser_web import _login
from tests.test_inbox import _record, _store

pytestmark = pytest.mark.browser

AXE = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTICLE_TITLE = re.compile(r'class="article-title"[^>]*>(?:<a [^>]*>)?([^<]+)')


@pytest.fixture
def axe_page(browser):
    """A page whose context lets the test inject axe-core despite the site's CSP."""
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run `npm install` (package.json)")
    context = browser.new_context(bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


def _poll(predicate, what: str, deadline: float = 60.0, why=lambda: ""):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} {why()}")


def _issue_mails(ctx) -> list[email.message.EmailMessage]:
    folder = ctx.config.path("var/outbox")
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("issue-*.eml"))] if folder.exists() else []


def _no_sideways_scroll(pg) -> None:
    widths = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{pg.url}: {widths[0]} px wide in a {widths[1]} px window"


def test_an_editors_week_from_inbox_to_send_now(site, page):
    ctx, base = site
    ids = _store(ctx, [_record("Urea cream for keratosis pilaris", score=6,
                               excerpt="Urea softens the bumps"),
                       _record("Sunscreen basics", score=2, excerpt="Broad spectrum daily"),
                       _record("Lactic acid lotions compared", score=0.4,
                               excerpt="Three lotions, one winner")])
    q.add_markdown(ctx, "Pat, don't rub", "Pat skin dry.", approve=True)
    add_subscriber(ctx, "reader@example.com")
    _login(page, base, ctx, "editor")

    page.click("nav >> text=Articles")
    page.fill("input[name=q]", "lotions")
    page.click("button:has-text('Show')")
    entry = page.locator(f"#article-{ids[2]}")
    assert "below threshold" in entry.inner_text() and page.locator(".entry").count() == 1
    entry.locator("button:has-text('Queue')").click()
    entry = page.locator(f"#article-{ids[2]}")
    assert "queued" in entry.locator(".state").inner_text()
    entry.locator("button:has-text('Approve')").click()
    entry = page.locator(f"#article-{ids[2]}")
    assert entry.locator(".verdict").inner_text() == "picked"

    entry.locator("text=Edit for the digest").click()
    frame = page.frame_locator("iframe[name=preview]")
    assert "Three lotions" in frame.locator("body").inner_text()
    page.fill("textarea[name=markdown]", "Our **favourite**: the 12% one.")  # live, no click
    frame.locator("strong:has-text('favourite')").wait_for()
    page.click("button:has-text('Save')")
    assert "Saved." in page.locator(".flash").inner_text()
    assert "changed summary" in page.locator(".history").inner_text()

    page.click("nav >> text=Next issue")
    picks = page.locator("#picks > li")
    assert picks.nth(1).inner_text().startswith("Lactic acid lotions compared")
    picks.nth(1).locator("button:has-text('up')").click()
    assert page.locator("#picks > li").nth(0).inner_text().startswith("Lactic acid")
    page.set_viewport_size({"width": 375, "height": 800})
    _no_sideways_scroll(page)
    assert page.locator("iframe.w375").first.bounding_box()["width"] <= 375
    page.set_viewport_size({"width": 1280, "height": 900})
    page.fill("textarea[name=addresses]", "editor@example.com, boss@example.com")
    page.click("button:has-text('Send tests')")
    assert "2 tests sent" in page.locator(".flash").inner_text()
    # The test site's links are http://127.0.0.1: the check says so beside the issue, as a
    # warning (a local trial's own links), so the editor's Send now goes out.
    assert "link is not HTTPS" in page.locator("#checks").inner_text()
    page.click("button:has-text('Send now')")
    page.wait_for_url(f"{base}/desk/compose")
    from pipeline.jobs.send_orders import recent_orders

    (mail,) = _poll(lambda: _issue_mails(ctx), "the issue in the outbox",
                    why=lambda: [tuple(o) for o in recent_orders(ctx)])
    titles = ARTICLE_TITLE.findall(mail.get_body(("html",)).get_content())
    assert titles[:2] == ["Lactic acid lotions compared", "Pat, don't rub"], titles
    page.goto(base + "/desk/")
    assert "issue #1: 1 sent" in page.locator("#orders").inner_text()


def _routes(ctx) -> dict[str, list[str]]:
    """Every GET page of the app with sample data behind it, by who may see it."""
    for n in range(3):
        q.add_markdown(ctx, f"Tip {n} on urea with a long-long-unbroken-word-for-narrow-screens",
                       "Urea helps **KP**.", approve=True)
    item = q.add_markdown(ctx, "Still queued", "Waiting.")
    (article,) = _store(ctx, [_record("A feed article on urea", score=4)])
    sid = add_subscriber(ctx, "reader-with-a-rather-long-address@example.com", topics=["kp"])
    built = build_issue(ctx)
    send_issue(ctx, built.number, force=True)  # http links in a test: the check would refuse
    secret = ctx.config.secret_key
    public = ["/", "/archive", f"/issues/{built.number}", "/login", "/privacy", "/preferences",
              f"/unsubscribe/{make_token(secret, 'unsubscribe', sid)}",
              f"/preferences/{make_token(secret, 'preferences', sid)}",
              f"/confirm/{make_token(secret, 'confirm', sid)}"]
    editor = ["/desk/", "/desk/articles", f"/desk/articles/{article}", "/desk/queue",
              f"/desk/queue/{item}", "/desk/compose", f"/desk/issues/{built.number}"]
    admin = ["/desk/subscribers", f"/desk/subscribers/{sid}", "/desk/lists", "/desk/import",
             "/desk/suppressions", "/desk/issues"]
    return {"public": public, "editor": editor, "admin": editor + admin}


def _axe(pg) -> list[str]:
    pg.add_script_tag(path=str(AXE))
    result = pg.evaluate("axe.run(document, {resultTypes: ['violations']})"
                         ".then(r => JSON.stringify(r.violations))")
    return [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in json.loads(result)
            if v["impact"] in ("serious", "critical")]


def test_every_page_fits_a_phone_and_passes_axe(site, axe_page):
    ctx, base = site
    axe_page.set_content('<html lang="en"><title>t</title><img src="x.png"></html>')
    assert any(v.startswith("image-alt (critical)") for v in _axe(axe_page))  # axe does look
    routes = _routes(ctx)
    problems: list[str] = []
    for role in ("public", "editor", "admin"):
        if role != "public":
            axe_page.context.clear_cookies()
            _login(axe_page, base, ctx, role)
        for path in routes[role]:
            for width in (375, 1280):
                axe_page.set_viewport_size({"width": width, "height": 900})
                resp = axe_page.goto(base + path)
                assert resp is not None and resp.status == 200, f"{role} {path}: {resp and resp.status}"
                wide = axe_page.evaluate("document.documentElement.scrollWidth")
                if wide > width:
                    problems.append(f"{role} {path} at {width}: {wide} px wide")
                problems += [f"{role} {path} at {width}: {v}" for v in _axe(axe_page)]
    assert problems == [], "\n".join(problems)


def test_the_desk_has_no_public_footer_and_shows_local_time(site, page):
    ctx, base = site
    _login(page, base, ctx, "editor")
    assert page.locator("footer").count() == 0
    text = page.locator("main").inner_text()
    assert re.search(r"\b(GMT|BST)\b", text) and "UTC" not in text
    page.goto(base + "/")
    assert page.locator("footer").count() == 1
    css = page.evaluate("getComputedStyle(document.querySelector('h1')).color")
    assert css == "rgb(138, 63, 75)"  # the brand's accent, #8a3f4b, from config.toml
