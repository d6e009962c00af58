"""The editors' and admins' desk through the Flask test client."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from core.models import lists, queue_items, subscribers, subscriptions, suppressions
from pipeline.compose.issues import build_issue
from pipeline.curate.queue import add_markdown
from pipeline.deliver.engine import send_issue
from subscribers.store import add_subscriber
from tests.test_web_helpers import PASSWORD, csrf, fresh_outbox, login_as, make_app


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


def _post(client, path, **data):
    if "csrf_token" not in data:
        data["csrf_token"] = csrf(client, "/desk/")
    return client.post(path, data=data)


def test_login_logout(ctx, client):
    from core.accounts import add_user

    add_user(ctx, "ed@example.com", PASSWORD, "editor")
    token = csrf(client, "/login")
    wrong = client.post("/login", data={"email": "ed@example.com", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.get_data(as_text=True)
    assert client.get("/desk/").status_code == 302
    ok = client.post("/login", data={"email": "ED@example.com", "password": PASSWORD, "csrf_token": token,
                                     "next": "https://evil.example.com/"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/desk/"  # no open redirect
    assert client.get("/desk/").status_code == 200
    assert _post(client, "/logout").status_code == 302
    assert client.get("/desk/").status_code == 302


def test_dashboard_shows_schedule_last_issue_and_feeds(ctx, client):
    login_as(client, ctx, "editor")
    for i in range(3):
        add_markdown(ctx, f"Tip {i} on urea for KP", "Urea helps **KP**.", approve=True)
    add_subscriber(ctx, "r@example.com")
    built = build_issue(ctx)
    send_issue(ctx, built.number)
    page = client.get("/desk/").get_data(as_text=True)
    assert "Schedule" in page and "Feeds" in page
    assert f"#{built.number}" in page and re.search(r"<td>1</td>", page)  # one sent


def test_editor_queue_approve_pin_move_preview_and_test_send(ctx, client):
    editor = login_as(client, ctx, "editor")
    resp = _post(client, "/desk/queue/add-tip", title="Pat, don't rub", body="Pat skin dry; apply **urea**.")
    assert resp.status_code == 302
    _post(client, "/desk/queue/add-tip", title="Second tip about lactic acid", body="Lactic acid.")
    with ctx.engine.connect() as conn:
        first, second = conn.execute(select(queue_items.c.id).order_by(queue_items.c.id)).scalars()
    page = client.get("/desk/queue").get_data(as_text=True)
    assert "Pat, don&#39;t rub" in page and "queued" in page
    assert "Pat, don" not in client.get("/desk/preview").get_data(as_text=True)
    _post(client, f"/desk/queue/{first}/approve")
    _post(client, f"/desk/queue/{second}/approve")
    _post(client, f"/desk/queue/{second}/pin")
    _post(client, f"/desk/queue/{first}/move", position="1")
    with ctx.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(queue_items))}
    assert rows[first].state == "approved" and rows[second].pinned and rows[first].position == 1
    preview = client.get("/desk/preview").get_data(as_text=True)
    assert "Pat, don" in preview and preview.index("Second tip") < preview.index("Pat, don")  # pinned first
    _post(client, f"/desk/queue/{second}/reject")
    assert "Second tip" not in client.get("/desk/preview").get_data(as_text=True)
    bad = _post(client, f"/desk/queue/{first}/move", position="x")
    assert bad.status_code == 302
    new_mail = fresh_outbox(ctx)
    sent = _post(client, "/desk/test-send", number="")
    assert sent.status_code == 302
    (msg,) = new_mail()
    assert msg["To"] == editor and msg["Subject"].startswith("[Test]")
    assert "Pat, don" in msg.get_body(("html",)).get_content()


def test_add_url_fetches_the_page(make_ctx, feed_server):
    ctx = make_ctx(collect={"allow_private_addresses": True})
    client = make_app(ctx).test_client()
    login_as(client, ctx, "editor")
    feed_server.serve_bytes("/kp.html", b"<html><head><title>Urea cream for keratosis pilaris</title>"
                            b"<meta name='description' content='A KP guide.'></head><body><article><p>"
                            + b"Keratosis pilaris and urea. " * 30 + b"</p></article></body></html>",
                            content_type="text/html")
    resp = _post(client, "/desk/queue/add-url", url=feed_server.url("/kp.html"), approve="1")
    assert resp.status_code == 302
    assert "Urea cream for keratosis pilaris" in client.get("/desk/queue").get_data(as_text=True)
    _post(client, "/desk/queue/add-url", url=feed_server.url("/kp.html"))
    assert "Already in the queue" in client.get("/desk/queue").get_data(as_text=True)


def test_admin_subscribers_search_view_add_unsubscribe_erase(ctx, client):
    login_as(client, ctx, "admin")
    add_subscriber(ctx, "alice@example.com", "Alice")
    add_subscriber(ctx, "bob@example.org", "Bob")
    page = client.get("/desk/subscribers?q=ALICE").get_data(as_text=True)
    assert "alice@example.com" in page and "bob@example.org" not in page
    resp = _post(client, "/desk/subscribers/add", email="Carol@Example.com", name="Carol", topics="kp")
    assert resp.status_code == 302
    sid = int(resp.headers["Location"].rsplit("/", 1)[1])
    view = client.get(f"/desk/subscribers/{sid}").get_data(as_text=True)
    assert "carol@example.com" in view and "desk:admin@example.com" in view and "subscribed" in view
    _post(client, f"/desk/subscribers/{sid}/unsubscribe")
    with ctx.engine.connect() as conn:
        assert conn.execute(select(subscriptions.c.status).where(subscriptions.c.subscriber_id == sid)
                            ).scalar() == "unsubscribed"
    assert "suppressed (unsubscribed)" in client.get(f"/desk/subscribers/{sid}").get_data(as_text=True)
    again = _post(client, "/desk/subscribers/add", email="carol@example.com")
    assert again.status_code == 302
    assert "suppressed" in client.get("/desk/subscribers").get_data(as_text=True)
    _post(client, f"/desk/subscribers/{sid}/erase")
    assert client.get(f"/desk/subscribers/{sid}").status_code == 404
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions.c.reason).where(
            suppressions.c.email == "carol@example.com")).scalar() == "erased"


def test_admin_lists_and_suppressions(ctx, client):
    login_as(client, ctx, "admin")
    token = csrf(client, "/desk/lists")  # read once: every page view shows (and clears) the flashes
    assert _post(client, "/desk/lists", slug="monthly", name="Monthly", public="1",
                 csrf_token=token).status_code == 302
    _post(client, "/desk/lists", slug="monthly", name="Again", csrf_token=token)
    _post(client, "/desk/lists", slug="Bad Slug!", name="x", csrf_token=token)
    page = client.get("/desk/lists").get_data(as_text=True)
    assert "Monthly" in page and "exists already" in page and "lower-case letters" in page
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(lists.c.slug, lists.c.double_optin)).all()
    assert sorted(r.slug for r in rows) == ["monthly", "weekly"]
    _post(client, "/desk/suppressions", email="Block@Example.com")
    _post(client, "/desk/suppressions", email="not an address")
    page = client.get("/desk/suppressions?q=block").get_data(as_text=True)
    assert "block@example.com" in page and "manual" in page


def _wait_import(client, location):
    deadline = time.monotonic() + 60  # a loaded 2-core machine: tens of seconds
    while time.monotonic() < deadline:
        page = client.get(location).get_data(as_text=True)
        if "Finished" in page:
            return page
        assert 'http-equiv="refresh"' in page  # the progress page reloads itself while running
        time.sleep(0.05)
    raise AssertionError("import did not finish")


def test_admin_import_report_and_export(ctx, client):
    login_as(client, ctx, "admin")
    csv_text = "email;name\r\nok1@example.com;One\r\nbroken;Two\r\nok2@example.com;Three\r\n"
    csv_bytes = csv_text.encode("utf-8-sig")
    from io import BytesIO

    resp = client.post("/desk/import", data={"csrf_token": csrf(client, "/desk/import"), "list": "weekly",
                                             "file": (BytesIO(csv_bytes), "people.csv")},
                       content_type="multipart/form-data")
    assert resp.status_code == 302
    page = _wait_import(client, resp.headers["Location"])
    main = page[page.index("<main>"):]
    assert "2 added" in main and "1 rejected" in main and "<td>3</td>" in main and "broken" in main, main
    errors = client.get(resp.headers["Location"] + "/errors.csv").get_data(as_text=True)
    assert errors.splitlines()[1].startswith("3,")
    export = client.get("/desk/export.csv")
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0].startswith("email,name") and len(lines) == 3
    assert client.get("/desk/import/unknown").status_code == 404


def test_admin_issue_progress_pause_resume_retry(ctx, client):
    login_as(client, ctx, "admin")
    for i in range(3):
        add_markdown(ctx, f"Tip {i} for KP", "Urea.", approve=True)
    add_subscriber(ctx, "r1@example.com")
    built = build_issue(ctx)
    assert f"#{built.number}" in client.get("/desk/issues").get_data(as_text=True)
    page = client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    assert "frozen" in page and "queued" in page
    _post(client, f"/desk/issues/{built.number}/pause")
    assert 'id="issue-status">paused' in client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    _post(client, f"/desk/issues/{built.number}/resume")
    assert 'id="issue-status">frozen' in client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    _post(client, f"/desk/issues/{built.number}/retry-failed")
    assert "nothing to retry" not in client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    new_mail = fresh_outbox(ctx)
    resp = _post(client, "/desk/test-send", number=str(built.number), back=f"/desk/issues/{built.number}")
    assert resp.headers["Location"] == f"/desk/issues/{built.number}"
    (msg,) = new_mail()
    assert msg["Subject"].startswith(f"[Test] {ctx.config.site.name} #{built.number}")
    send_issue(ctx, built.number)
    _post(client, f"/desk/issues/{built.number}/pause")
    page = client.get(f"/desk/issues/{built.number}").get_data(as_text=True)
    assert "only a frozen or sending issue" in page
    assert client.get("/desk/issues/99").status_code == 404
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar_one() == 1


def test_articles_inbox_filters_searches_and_acts_in_one_click(ctx, client):
    from tests.test_inbox import _record, _store

    editor = login_as(client, ctx, "editor")
    urea, weak = _store(ctx, [_record("Urea cream for keratosis pilaris", score=5,
                                      excerpt="Urea softens the bumps"),
                              _record("Lactic acid lotions compared", score=0.2)])
    page = client.get("/desk/articles").get_data(as_text=True)
    assert "Urea cream" in page and "Lactic acid" in page
    assert "The next issue would be skipped: 1 new item, 3 needed." in page
    assert "below threshold</span>: score 0.2 &lt; 1" in page and "Keratosis pilaris" in page
    found = client.get("/desk/articles?q=bumps").get_data(as_text=True)
    assert "Urea cream" in found and "Lactic acid" not in found
    bad = client.get("/desk/articles?since=yesterday")
    assert bad.status_code == 400 and "since: &#39;yesterday&#39; is not a date" in bad.get_data(as_text=True)
    resp = _post(client, f"/desk/articles/{weak}/pin", back="/desk/articles?q=lactic")
    assert resp.status_code == 302 and resp.headers["Location"] == "/desk/articles?q=lactic"
    with ctx.engine.connect() as conn:
        item = conn.execute(select(queue_items)).one()
    assert (item.article_id, item.state, item.pinned, item.added_by) == (weak, "approved", True, editor)
    shown = client.get(f"/desk/articles/{weak}").get_data(as_text=True)
    assert "picked</span>: approved by an editor" in shown and ">Unpin<" in shown
    assert f"/desk/articles/{weak}/queue" not in shown and f"/desk/queue/{item.id}" in shown
    assert _post(client, f"/desk/articles/{urea}/explode").status_code == 404
    assert "footer" not in page  # the desk has no public footer


def test_queue_item_page_edits_previews_and_keeps_a_history(ctx, client):
    editor = login_as(client, ctx, "editor")
    item = add_markdown(ctx, "Pat, don't rub", "Pat skin **dry**.", added_by="cli")
    page = client.get(f"/desk/queue/{item}").get_data(as_text=True)
    assert "Pat skin **dry**." in page and 'name="section"' in page
    preview = client.post(f"/desk/queue/{item}/preview",
                          data={"csrf_token": csrf(client, "/desk/"), "title": "Pat gently",
                                "markdown": "Use *lukewarm* water."})
    body = preview.get_data(as_text=True)
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "Pat gently" in body and "<em>lukewarm</em>" in body and "Pat skin" not in body
    with ctx.engine.connect() as conn:  # a preview saves nothing
        assert conn.execute(select(queue_items.c.summary_markdown)).scalar_one() == "Pat skin **dry**."
    _post(client, f"/desk/queue/{item}/save", title="Pat gently", markdown="Use *lukewarm* water.",
          image="https://img.example.com/a.jpg", image_alt="A towel", link="https://example.com/pat",
          section="kp", note="for week 2")
    saved = client.get(f"/desk/queue/{item}/preview").get_data(as_text=True)
    assert "<em>lukewarm</em>" in saved and 'alt="A towel"' in saved
    heading = re.search(r'section-title"[^>]*>([^<]+)</h2>', saved)
    assert heading and heading.group(1) == "Keratosis pilaris"  # its section, not "Editor's picks"
    page = client.get(f"/desk/queue/{item}").get_data(as_text=True)
    assert f"{editor} changed" in page and "title from “Pat, don&#39;t rub” to “Pat gently”" in page
    assert "cli added it" in page and ("GMT" in page or "BST" in page)
    bad = _post(client, f"/desk/queue/{item}/save", title="x", section="nope")
    assert bad.status_code == 302
    again = client.get(f"/desk/queue/{item}").get_data(as_text=True)
    assert "section: &#39;nope&#39; is not a topic" in again


ARTICLE_TITLE = re.compile(r'class="article-title"[^>]*>(?:<a [^>]*>)?([^<]+)')


def _wait_for(predicate, what: str, deadline: float = 60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_composer_warns_of_a_skip_names_variants_and_reorders(ctx, client):
    login_as(client, ctx, "editor")
    one = add_markdown(ctx, "Tip one on urea", "Urea.", approve=True)
    two = add_markdown(ctx, "Tip two on lactic acid", "Lactic acid.", approve=True)
    add_subscriber(ctx, "kp@example.com", topics=["kp"])
    page = client.get("/desk/compose").get_data(as_text=True)
    assert "This issue would be skipped:" in page and "2 new items, 3 needed" in page
    assert "Keratosis pilaris" in page and "every topic" in page and "kp,skin" not in page
    assert "No problems found." in page or "Problem:" in page
    three = add_markdown(ctx, "Tip three on sunscreen", "SPF.", approve=True)
    page = client.get("/desk/compose").get_data(as_text=True)
    assert "would be skipped" not in page
    _post(client, f"/desk/compose/step/{three}/up")
    _post(client, f"/desk/compose/step/{three}/up")
    order = re.findall(r"<li>(Tip \w+)", client.get("/desk/compose").get_data(as_text=True))
    assert order == ["Tip three", "Tip one", "Tip two"], order
    preview = client.get("/desk/compose/preview?variant=kp").get_data(as_text=True)
    assert [t.split(" on ")[0] for t in ARTICLE_TITLE.findall(preview)] == \
        ["Tip three", "Tip one", "Tip two"]
    assert client.get("/desk/compose/preview?variant=nope").status_code == 400
    dark = client.get("/desk/compose/preview?variant=kp&scheme=dark").get_data(as_text=True)
    assert "@media all" in dark and "prefers-color-scheme: dark" not in dark
    assert "prefers-color-scheme: dark" in preview
    assert one and two


def test_send_now_sends_the_issue_in_the_composed_order_and_test_sends(ctx, client):
    editor = login_as(client, ctx, "editor")
    new_mail = fresh_outbox(ctx)
    tips = [add_markdown(ctx, f"Tip {n} on urea", "Urea.", approve=True) for n in ("A", "B", "C")]
    add_subscriber(ctx, "reader@example.com")
    _post(client, f"/desk/compose/step/{tips[2]}/up")
    _post(client, f"/desk/compose/step/{tips[2]}/up")
    resp = _post(client, "/desk/compose/test", addresses=f"{editor}, second@example.com",
                 kind=["digest:", "confirm"])
    assert resp.status_code == 302
    tests = new_mail()
    assert sorted((m["To"], m["Subject"].startswith("[Test]")) for m in tests) == [
        (editor, True), (editor, True), ("second@example.com", True), ("second@example.com", True)]
    _post(client, "/desk/compose/send-now")
    (issue_mail,) = _wait_for(lambda: _issue_mails(ctx), "the issue in the outbox")
    assert issue_mail["To"] == "reader@example.com"
    html = issue_mail.get_body(("html",)).get_content()
    assert ARTICLE_TITLE.findall(html) == ["Tip C on urea", "Tip A on urea", "Tip B on urea"]
    page = _wait_for(lambda: (p := client.get("/desk/").get_data(as_text=True)) and
                     "issue #1: 1 sent" in p and p, "the order's result on the dashboard")
    assert f"done · by {editor}" in page
    again = _post(client, "/desk/compose/send-now")  # this week's issue is sent already
    assert again.status_code == 302
    page = _wait_for(lambda: (p := client.get("/desk/compose").get_data(as_text=True)) and
                     "failed" in p and p, "the second order's failure")
    assert "is sent already" in page


def _issue_mails(ctx):
    import email as email_lib
    import email.policy

    folder = ctx.config.path("var/outbox")
    return [email_lib.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("issue-*.eml"))] if folder.exists() else []
