"""The editors' desk: dashboard, the queue, the preview of the next digest, a test send,
and the review of a draft issue (approve or reject, like `kpdigest issue approve/reject`)."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.engine import Connection
from werkzeug.wrappers import Response as BaseResponse

from core.errors import KpdigestError, NotFound
from core.models import issue_variants, issues
from pipeline.curate import queue as q
from web.public import ARCHIVE_CSP
from web.security import ctx, requires

log = logging.getLogger(__name__)
bp = Blueprint("desk", __name__, url_prefix="/desk")
EDITORS = ("admin", "editor")


def _dashboard_data() -> dict[str, Any]:
    from pipeline.collect.feeds import feed_health
    from pipeline.compose.issues import delivery_counts, get_issue
    from pipeline.jobs.registry import schedule_status

    data: dict[str, Any] = {"jobs": schedule_status(ctx()), "feeds": feed_health(ctx()),
                            "last": None, "counts": {}}
    with ctx().engine.connect() as conn:
        data["drafts"] = drafts(conn)
        try:
            data["last"] = get_issue(conn)
            data["counts"] = delivery_counts(conn, data["last"].id)
        except KpdigestError:
            pass
    return data


@bp.get("/")
@requires(*EDITORS)
def dashboard() -> str:
    return render_template("desk/dashboard.html", **_dashboard_data())


@bp.get("/queue")
@requires(*EDITORS)
def queue() -> str:
    items = q.list_items(ctx(), ("queued", "approved", "rejected") if request.args.get("all")
                         else ("queued", "approved"))
    return render_template("desk/queue.html", items=items)


def _back(message: str, category: str = "ok") -> BaseResponse:
    flash(message, category)
    return redirect(url_for("desk.queue"))


@bp.post("/queue/add-url")
@requires(*EDITORS)
def add_url() -> BaseResponse:
    try:
        item = q.add_url(ctx(), request.form.get("url", "").strip(), note=request.form.get("note") or None,
                         added_by=g.user.email, approve=bool(request.form.get("approve")))
    except q.AlreadyQueued as exc:
        return _back(f"Already in the queue as item {exc.item_id}.", "error")
    except KpdigestError as exc:
        return _back(f"Could not add the page: {exc}", "error")
    return _back(f"Queued item {item}.")


@bp.post("/queue/add-tip")
@requires(*EDITORS)
def add_tip() -> BaseResponse:
    try:
        item = q.add_markdown(ctx(), request.form.get("title", ""), request.form.get("body", ""),
                              link=request.form.get("link") or None, added_by=g.user.email,
                              approve=bool(request.form.get("approve")))
    except KpdigestError as exc:
        return _back(f"Could not add the tip: {exc}", "error")
    return _back(f"Queued tip as item {item}.")


@bp.post("/queue/<int:item_id>/<action>")
@requires(*EDITORS)
def item_action(item_id: int, action: str) -> BaseResponse:
    states = {"approve": "approved", "reject": "rejected", "requeue": "queued"}
    if action in states:
        q.set_state(ctx(), item_id, states[action])
    elif action in ("pin", "unpin"):
        q.pin(ctx(), item_id, action == "pin")
    elif action == "move":
        try:
            position = int(request.form.get("position", ""))
        except ValueError:
            return _back("Position must be a number.", "error")
        q.move(ctx(), item_id, position)
    else:
        return _back(f"Unknown action {action!r}.", "error")
    return _back(f"Item {item_id}: {action} done.")


@bp.get("/preview")
@requires(*EDITORS)
def preview() -> Response:
    """The next digest exactly as it would be mailed now (generic links)."""
    from pipeline.compose.issues import preview_next

    html, _sel = preview_next(ctx())
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": ARCHIVE_CSP})


@bp.post("/test-send")
@requires(*EDITORS)
def test_send() -> BaseResponse:
    from pipeline.deliver.testsend import send_test

    raw = request.form.get("number", "").strip()
    try:
        ref = send_test(ctx(), g.user.email, int(raw) if raw.isdigit() else None)
    except KpdigestError as exc:
        flash(f"The test was not sent: {exc}", "error")
    else:
        flash(f"Test sent to {g.user.email} ({ref}).", "ok")
    return _redirect_back(url_for("desk.queue"))


@bp.post("/welcome/test")
@requires(*EDITORS)
def welcome_test() -> BaseResponse:
    """The welcome mail (templates/email/welcome.txt.j2) to yourself, through the lane (#18)."""
    from pipeline.deliver.lane import queue_test_welcome

    queue_test_welcome(ctx(), g.user.email)
    flash(f"The welcome mail is on its way to {g.user.email}.", "ok")
    return redirect(url_for("desk.queue"))


def _redirect_back(default: str) -> BaseResponse:
    """To the form's `back` page when it is one of ours (no open redirect), else `default`."""
    back = request.form.get("back", "")
    local = back.startswith("/desk/") and "//" not in back and "\\" not in back
    return redirect(back if local else default)


def drafts(conn: Connection, number: int | None = None) -> list[dict[str, Any]]:
    """Draft issues awaiting approval (or just issue `number` if it is one), with their
    variants, for the review box on the dashboard and the issue page."""
    query = select(issues).where(issues.c.status == "draft", issues.c.number.is_not(None))
    if number is not None:
        query = query.where(issues.c.number == number)
    rows = conn.execute(query.order_by(issues.c.number)).all()
    action = ctx().config.schedule.review_deadline_action
    return [{"issue": row, "deadline_action": action, "variants": list(conn.execute(
        select(issue_variants.c.variant).where(issue_variants.c.issue_id == row.id)
        .order_by(issue_variants.c.variant)).scalars())} for row in rows]


@bp.get("/review/<int:number>/preview")
@requires(*EDITORS)
def review_preview(number: int) -> Response:
    """Issue `number` exactly as mailed: the variant's frozen HTML with generic links in
    place of the per-recipient ones (the "" variant is the archive's web_html)."""
    from pipeline.compose.issues import get_issue
    from pipeline.compose.personalize import Personalizer

    variant = request.args.get("variant", "")
    with ctx().engine.connect() as conn:
        try:
            row = get_issue(conn, number)
        except NotFound:
            abort(404)
        html = conn.execute(select(issue_variants.c.html_template).where(
            issue_variants.c.issue_id == row.id, issue_variants.c.variant == variant)).scalar()
    if html is None:
        if variant or not row.web_html:
            abort(404)
        html = row.web_html
    else:
        base = ctx().config.site.base_url.rstrip("/")
        html = Personalizer(html, row.placeholder_key).fill(
            {"unsubscribe_url": f"{base}/unsubscribe", "preferences_url": f"{base}/preferences",
             "name": "", "email": ""}, escape=escape)
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": ARCHIVE_CSP})


@bp.post("/review/<int:number>/approve")
@requires(*EDITORS)
def review_approve(number: int) -> BaseResponse:
    """Draft -> frozen and approved by this user; `force` (checks failing) is for admins."""
    from pipeline.deliver.review import approve_issue

    force = bool(request.form.get("force"))
    if force and g.user.role != "admin":
        flash(f"Issue #{number} was not approved: only an admin may approve it despite failed checks.",
              "error")
        return _redirect_back(url_for("desk.dashboard"))
    try:
        approve_issue(ctx(), number, g.user.email, force=force)
    except KpdigestError as exc:
        flash(f"Issue #{number} was not approved: {exc}", "error")
    else:
        flash(f"Issue #{number} approved{' despite failed checks' if force else ''}; "
              "the next dispatch sends it.", "ok")
    return _redirect_back(url_for("desk.dashboard"))


@bp.post("/review/<int:number>/reject")
@requires(*EDITORS)
def review_reject(number: int) -> BaseResponse:
    """Draft -> skipped for its period; the reason goes into the issue's skip_reason."""
    from pipeline.deliver.review import reject_issue

    reason = request.form.get("reason", "").strip()[:500]
    try:
        why = reject_issue(ctx(), number, g.user.email, reason)
    except KpdigestError as exc:
        flash(f"Issue #{number} was not rejected: {exc}", "error")
        return _redirect_back(url_for("desk.dashboard"))
    flash(f"Issue #{number} {why}. Its articles are free for the next issue.", "ok")
    return redirect(url_for("desk.dashboard"))  # the issue page is gone: the draft lost its number
