"""Draft for review in the editors' desk: the review box, the preview as mailed, approve
and reject through the Flask test client (the web side of `kpdigest issue approve/reject`)."""

from __future__ import annotations

from html import unescape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.models import issues
from pipeline.compose.issues import build_issue
from pipeline.curate.queue import add_markdown
from pipeline.deliver.review import set_deadline
from subscribers.store import add_subscriber
from tests.test_web_helpers import csrf, login_as, make_app


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


def _issue(ctx, number=None, issue_id=None):
    where = issues.c.id == issue_id if issue_id is not None else issues.c.number == number
    with ctx.engine.connect() as conn:
        return conn.execute(select(issues).where(where)).one()


def _build(ctx):
    for i in range(3):
        add_markdown(ctx, f"Tip {i} on urea for KP", "Urea helps **KP**.", approve=True)
    add_subscriber(ctx, "reader@example.com")
    built = build_issue(ctx, review=True)
    set_deadline(ctx, built.issue_id)
    return built


def _post(client, path, **data):
    data.setdefault("csrf_token", csrf(client, "/desk/"))
    return client.post(path, data=data, follow_redirects=True)


def _page(resp):
    return unescape(resp.get_data(as_text=True))


def test_editor_sees_the_draft_previews_it_and_approves(ctx, client):
    editor = login_as(client, ctx, "editor")
    built = _build(ctx)
    draft = _issue(ctx, built.number)
    page = _page(client.get("/desk/"))
    assert f"Issue #{built.number} is awaiting approval" in page
    local = draft.review_deadline.astimezone(ZoneInfo(ctx.config.schedule.timezone))
    assert local.strftime("%a %-d %b %Y %H:%M %Z") in page  # the configured zone, named
    assert "even if its checks fail" not in page  # forcing is for admins
    assert f"/desk/review/{built.number}/preview" in page
    preview = client.get(f"/desk/review/{built.number}/preview")
    assert preview.status_code == 200 and preview.get_data(as_text=True) == draft.web_html
    assert client.get(f"/desk/review/{built.number}/preview?variant=nope").status_code == 404
    issue_page = _page(client.get(f"/desk/issues/{built.number}"))
    assert "awaiting approval" in issue_page and ">pause<" not in issue_page  # the admin actions

    page = _page(_post(client, f"/desk/review/{built.number}/approve", back=f"/desk/issues/{built.number}"))
    assert f"Issue #{built.number} approved" in page
    row = _issue(ctx, built.number)
    assert (row.status, row.approved_by) == ("frozen", editor) and row.approved_at is not None
    assert "awaiting approval" not in _page(client.get("/desk/"))
    again = _page(_post(client, f"/desk/review/{built.number}/approve"))
    assert f"was not approved: issue #{built.number} is frozen, not a draft awaiting approval" in again
    again = _page(_post(client, f"/desk/review/{built.number}/reject", reason="late"))
    assert f"was not rejected: issue #{built.number} is frozen, not a draft" in again
    assert _issue(ctx, built.number).status == "frozen"


def test_reject_skips_the_draft_with_the_reason(ctx, client):
    login_as(client, ctx, "editor")
    built = _build(ctx)
    page = _page(_post(client, f"/desk/review/{built.number}/reject", reason="off-topic"))
    row = _issue(ctx, issue_id=built.issue_id)
    assert (row.status, row.number) == ("skipped", None)
    assert row.skip_reason.startswith("rejected by editor@example.com at ")
    assert row.skip_reason.endswith(": off-topic") and row.skip_reason in page


def test_failed_checks_block_editors_and_admins_may_force(ctx, client):
    login_as(client, ctx, "editor")
    built = _build(ctx)
    ctx.config.digest.max_html_bytes = 5000  # the budget shrank after the draft was built
    page = _page(_post(client, f"/desk/review/{built.number}/approve"))
    assert f"Issue #{built.number} was not approved: issue #{built.number} fails its checks" in page
    assert "over the 5000-byte budget" in page
    page = _page(_post(client, f"/desk/review/{built.number}/approve", force="1"))
    assert "only an admin may approve it despite failed checks" in page
    assert _issue(ctx, built.number).status == "draft"

    _post(client, "/logout")
    admin = login_as(client, ctx, "admin")
    assert "even if its checks fail" in _page(client.get(f"/desk/issues/{built.number}"))
    page = _page(_post(client, f"/desk/review/{built.number}/approve", force="1"))
    assert "approved despite failed checks" in page
    row = _issue(ctx, built.number)
    assert (row.status, row.approved_by) == ("frozen", admin)


def test_csrf_login_and_non_draft_are_refused(ctx, client):
    built = _build(ctx)
    anon = client.post(f"/desk/review/{built.number}/approve", data={"csrf_token": csrf(client, "/login")})
    assert anon.status_code == 302 and anon.headers["Location"].startswith("/login")
    assert client.get(f"/desk/review/{built.number}/preview").status_code == 302
    login_as(client, ctx, "editor")
    for action in ("approve", "reject"):
        resp = client.post(f"/desk/review/{built.number}/{action}", data={"reason": "x"})
        assert resp.status_code == 400 and "CSRF" in resp.get_data(as_text=True)
    assert _issue(ctx, built.number).status == "draft"

    page = _page(_post(client, "/desk/review/99/reject", reason="x"))
    assert "Issue #99 was not rejected: no issue #99" in page
