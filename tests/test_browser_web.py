"""The web app in headless Chromium (Debian's package, driven by Playwright), served by
waitress on 127.0.0.1: a reader signs up and leaves, an editor approves and previews, an
admin imports a CSV with bad rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.accounts import add_user
from pipeline.curate.queue import add_markdown
from tests.test_web_helpers import PASSWORD, fresh_outbox, link_in

pytestmark = pytest.mark.browser



def _login(page, base, ctx, role):
    addr = f"{role}@example.com"
    add_user(ctx, addr, PASSWORD, role)
    page.goto(f"{base}/login")
    page.fill("input[name=email]", addr)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]:has-text('Log in')")
    page.wait_for_url(f"{base}/desk/")


def test_subscribe_confirm_and_one_click_unsubscribe(site, page):
    ctx, base = site
    new_mail = fresh_outbox(ctx)
    page.goto(base + "/")
    page.fill("input[name=email]", "reader@example.com")
    page.fill("input[name=name]", "Reader")
    page.check("input[name=topics][value=kp]")
    page.check("input[name=consent]")
    page.click("button:has-text('Subscribe')")
    assert page.locator("h1").inner_text() == "Check your inbox"
    (msg,) = new_mail()
    page.goto(base + link_in(msg, base))
    page.click("button:has-text('Yes, subscribe me')")
    assert page.locator("h1").inner_text() == "You are subscribed"
    page.click("text=Choose topics or pause")
    assert page.locator("input[name=topics][value=kp]").is_checked()
    page.click("button:has-text('Unsubscribe from everything')")
    assert page.locator("h1").inner_text() == "You are unsubscribed"
    page.goto(page.url)  # the same link again: still a friendly page
    from subscribers.consent import find_subscriber_id, preferences

    data = preferences(ctx, find_subscriber_id(ctx, "reader@example.com"))
    assert data["suppressed"] == "unsubscribed" and data["subscriptions"][0].status == "unsubscribed"


def test_editor_approves_and_sees_it_in_the_preview(site, page):
    ctx, base = site
    add_markdown(ctx, "Urea cream, twice a day", "Smooth **KP** bumps with urea.")
    _login(page, base, ctx, "editor")
    page.click("nav >> text=Queue")
    row = page.locator("tr", has_text="Urea cream, twice a day")
    assert row.locator("td.state").inner_text() == "queued"
    row.locator("button:has-text('approve')").click()
    row = page.locator("tr", has_text="Urea cream, twice a day")
    assert row.locator("td.state").inner_text() == "approved"
    page.goto(base + "/desk/preview")
    assert "Urea cream, twice a day" in page.content()


def test_admin_imports_a_csv_and_reads_the_report(site, page, tmp_path: Path):
    ctx, base = site
    csv_path = tmp_path / "people.csv"
    csv_path.write_bytes("email;name\r\nann@example.com;Ann\r\nnot-an-email;Bad\r\nbob@example.org;Bob\r\n"
                         "cy@example.net;\"Cy\"\r\n@broken;X\r\n".encode("utf-8-sig"))
    _login(page, base, ctx, "admin")
    page.click("nav >> text=Import")
    page.set_input_files("input[name=file]", str(csv_path))
    page.click("button:has-text('Import')")
    page.wait_for_selector("#import-errors", timeout=20000)
    state = page.locator("#import-state").inner_text()
    assert re.search(r"3 added.*2 rejected", state, re.S), state
    cells = page.locator("#import-errors td").all_inner_texts()
    assert cells[0] == "3" and "not-an-email" in cells[1] and cells[2] == "6"
