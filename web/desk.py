"""The editors' desk: dashboard, the queue, the preview of the next digest, a test send."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from kpdigest.errors import KpdigestError
from pipeline import queue as q
from web.public import ARCHIVE_CSP
from web.security import ctx, requires

log = logging.getLogger(__name__)
bp = Blueprint("desk", __name__, url_prefix="/desk")
EDITORS = ("admin", "editor")


def _dashboard_data() -> dict[str, Any]:
    from pipeline.feeds import feed_health
    from pipeline.issues import delivery_counts, get_issue
    from pipeline.jobs import schedule_status

    data: dict[str, Any] = {"jobs": schedule_status(ctx()), "feeds": feed_health(ctx()),
                            "last": None, "counts": {}}
    with ctx().engine.connect() as conn:
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
    from pipeline.issues import preview_next

    html, _sel = preview_next(ctx())
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": ARCHIVE_CSP})


@bp.post("/test-send")
@requires(*EDITORS)
def test_send() -> BaseResponse:
    from pipeline.testsend import send_test

    raw = request.form.get("number", "").strip()
    try:
        ref = send_test(ctx(), g.user.email, int(raw) if raw.isdigit() else None)
    except KpdigestError as exc:
        flash(f"The test was not sent: {exc}", "error")
    else:
        flash(f"Test sent to {g.user.email} ({ref}).", "ok")
    back = request.form.get("back", "")
    local = back.startswith("/desk/") and "//" not in back and "\\" not in back
    return redirect(back if local else url_for("desk.queue"))
