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
