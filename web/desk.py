"""The editors' desk: dashboard, the articles inbox, the queue, the preview of the next
digest, a test send, and the review of a draft issue (approve or reject, like
`kpdigest issue approve/reject`)."""

from __future__ import annotations

import logging
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.engine import Connection
from werkzeug.wrappers import Response as BaseResponse

from core.errors import KpdigestError, NotFound
from core.models import issue_variants, issues
from pipeline.collect.feeds import feed_health
from pipeline.collect.sanitize import html_to_text
from pipeline.compose import composer
from pipeline.compose.composer import variant_html
from pipeline.compose.issues import delivery_counts, get_issue, preview_next
from pipeline.compose.item_preview import item_article, preview_item
from pipeline.compose.personalize import Personalizer
from pipeline.curate import inbox
from pipeline.curate import queue as q
from pipeline.deliver.doctor.rates import sending_rates
from pipeline.deliver.outcome import error_groups, next_step
from pipeline.deliver.review import approve_issue, reject_issue
from pipeline.deliver.testsend import send_test, send_tests
from pipeline.jobs.registry import schedule_status
from pipeline.jobs.send_orders import cancel_order, order_send, recent_orders, start_now
from web.public import ARCHIVE_CSP
from web.security import ctx, requires

log = logging.getLogger(__name__)
bp = Blueprint("desk", __name__, url_prefix="/desk")
EDITORS = ("admin", "editor")


def _brand_css() -> Response:
    """The brand's colours and font as CSS custom properties for site.css (config.toml
    [brand]; the values were validated there, so they are safe in CSS)."""
    b = ctx().config.brand
    css = f":root {{ --accent: {b.accent}; --bg: {b.background}; --font: {b.font}; }}\n"
    return Response(css, mimetype="text/css", headers={"Cache-Control": "max-age=300"})


# The stylesheet serves every page, public ones too, so it is an app route, not /desk/'s.
bp.record_once(lambda state: state.app.add_url_rule("/brand.css", "brand_css", _brand_css))


@bp.app_context_processor
def _brand() -> dict[str, Any]:
    return {"brand": ctx().config.brand}


@bp.app_template_filter("local")
def local_time(value: datetime | None, fmt: str = "%a %-d %b %Y %H:%M") -> str:
    """A stored UTC time in the configured timezone, with the zone's name (e.g. GMT, BST)."""
    if value is None:
        return "—"
    zone = ZoneInfo(ctx().config.schedule.timezone)
    return value.astimezone(zone).strftime(f"{fmt} %Z")


@bp.app_template_filter("topic_names")
def topic_names(slugs: Any) -> str:
    """Topic slugs (a list or "a,b") as their configured names."""
    topics = ctx().config.topics
    items = slugs.split(",") if isinstance(slugs, str) else list(slugs or [])
    return ", ".join(topics[s].label if s in topics else s for s in items if s) or "every topic"


@bp.app_template_filter("readable")
def readable(detail: Any) -> str:
    """An event's details as words ("reason: bounced; topics: Keratosis pilaris"), not JSON."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    parts = []
    for key, value in detail.items():
        if key == "topics":
            value = topic_names(value)
        elif isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        elif isinstance(value, dict):
            value = readable(value)
        parts.append(f"{str(key).replace('_', ' ')}: {value}")
    return "; ".join(parts)


def _dashboard_data() -> dict[str, Any]:
    data: dict[str, Any] = {"jobs": schedule_status(ctx()), "feeds": feed_health(ctx()),
                            "last": None, "counts": {}, "reputation": sending_rates(ctx()),
                            "orders": recent_orders(ctx(), 5)}
    with ctx().engine.connect() as conn:
        data["drafts"] = drafts(conn)
        try:
            data["last"] = get_issue(conn)
            data["counts"] = delivery_counts(conn, data["last"].id)
            last = data["last"]
            data["errors"] = error_groups(conn, last.id)  # grouped by reason, largest first
            data["next_step"] = next_step(last.status, last.number, data["counts"], last.pause_reason)
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


@bp.get("/articles")
@requires(*EDITORS)
def articles() -> tuple[str, int] | str:
    """The inbox: every collected article, filtered, searched, with the selection's verdict."""
    try:
        filters = inbox.parse_filters(ctx().config, request.args.to_dict())
        page = inbox.list_articles(ctx(), filters)
    except KpdigestError as exc:
        flash(str(exc), "error")
        page = inbox.Page([], inbox.Filters(), False, None, 0)
        return _articles_page(page), 400
    return _articles_page(page)


def _articles_page(page: inbox.Page) -> str:
    return render_template("desk/articles.html", page=page, f=page.filters, args=request.args,
                           topics=ctx().config.topics, feeds=inbox.feed_names(ctx()),
                           states=list(inbox.ArticleState), here=request.full_path)


@bp.get("/articles/<int:article_id>")
@requires(*EDITORS)
def article(article_id: int) -> str:
    return render_template("desk/article.html", e=inbox.show_article(ctx(), article_id),
                           topics=ctx().config.topics, here=request.full_path)


@bp.post("/articles/<int:article_id>/<action>")
@requires(*EDITORS)
def article_action(article_id: int, action: str) -> BaseResponse:
    if action not in inbox.ACTIONS:
        abort(404)
    try:
        done = inbox.act(ctx(), article_id, action, by=g.user.email)
    except KpdigestError as exc:
        flash(f"Article {article_id}: {exc}", "error")
    else:
        flash(f"Article {article_id}: {done}.", "ok")
    return _redirect_back(url_for("desk.articles"))


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


ITEM_FORM = ("title", "markdown", "image", "image_alt", "link", "section", "note")
PREVIEW_HEADERS = {"Content-Security-Policy": ARCHIVE_CSP, "X-Frame-Options": "SAMEORIGIN"}


@bp.get("/queue/<int:item_id>")
@requires(*EDITORS)
def queue_item(item_id: int) -> str:
    """View and edit an item; the preview beside it is the digest's own template."""
    art = item_article(ctx(), item_id)
    markdown = art["summary_markdown"] if art["summary_markdown"] is not None \
        else html_to_text(art["summary_html"])
    return render_template("desk/queue_item.html", it=q.get_item(ctx(), item_id), art=art, markdown=markdown,
                           history=q.history(ctx(), item_id), topics=ctx().config.topics,
                           describe=q.describe)


@bp.post("/queue/<int:item_id>/save")
@requires(*EDITORS)
def queue_item_save(item_id: int) -> BaseResponse:
    form = {k: request.form.get(k, "") for k in ITEM_FORM}
    try:
        q.edit_item(ctx(), item_id, by=g.user.email, **form)
    except KpdigestError as exc:
        flash(f"Not saved: {exc}", "error")
    else:
        flash("Saved.", "ok")
    return redirect(url_for("desk.queue_item", item_id=item_id))


@bp.route("/queue/<int:item_id>/preview", methods=["GET", "POST"])
@requires(*EDITORS)
def queue_item_preview(item_id: int) -> Response:
    """GET: the item as saved; POST: with the form's unsaved values (the Preview button,
    which the page's script presses as you type)."""
    form = {k: request.form[k] for k in ITEM_FORM if k in request.form} \
        if request.method == "POST" else None
    return Response(preview_item(ctx(), item_id, form), mimetype="text/html",
                    headers=PREVIEW_HEADERS)


@bp.post("/queue/<int:item_id>/<action>")
@requires(*EDITORS)
def item_action(item_id: int, action: str) -> BaseResponse:
    states = {"approve": "approved", "reject": "rejected", "requeue": "queued"}
    if action in states:
        q.set_state(ctx(), item_id, states[action], by=g.user.email)
    elif action in ("pin", "unpin"):
        q.pin(ctx(), item_id, action == "pin", by=g.user.email)
    elif action == "move":
        try:
            position = int(request.form.get("position", ""))
        except ValueError:
            return _back("Position must be a number.", "error")
        q.move(ctx(), item_id, position, by=g.user.email)
    else:
        return _back(f"Unknown action {action!r}.", "error")
    return _back(f"Item {item_id}: {action} done.")


@bp.get("/preview")
@requires(*EDITORS)
def preview() -> Response:
    """The next digest exactly as it would be mailed now (generic links)."""
    html, _sel = preview_next(ctx())
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": ARCHIVE_CSP})


@bp.post("/test-send")
@requires(*EDITORS)
def test_send() -> BaseResponse:
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
        flash(f"Issue #{number} approved{' despite failed checks' if force else ''}. The "
              "scheduler's next dispatch sends it if the scheduler runs; to send it at once, "
              "use Send now on the Next issue page.", "ok")
    return _redirect_back(url_for("desk.dashboard"))


@bp.post("/review/<int:number>/reject")
@requires(*EDITORS)
def review_reject(number: int) -> BaseResponse:
    """Draft -> skipped for its period; the reason goes into the issue's skip_reason."""
    reason = request.form.get("reason", "").strip()[:500]
    try:
        why = reject_issue(ctx(), number, g.user.email, reason)
    except KpdigestError as exc:
        flash(f"Issue #{number} was not rejected: {exc}", "error")
        return _redirect_back(url_for("desk.dashboard"))
    flash(f"Issue #{number} {why}. Its articles are free for the next issue.", "ok")
    return redirect(url_for("desk.dashboard"))  # the issue page is gone: the draft lost its number


# --- the issue composer ---------------------------------------------------------------------

@bp.get("/compose")
@requires(*EDITORS)
def compose() -> str:
    """The next issue per topic variant as it would be mailed now, its checks, the send
    buttons and test sends."""
    comp = composer.compose_next(ctx(), spam=bool(request.args.get("spam")))
    return render_template("desk/compose.html", c=comp, orders=recent_orders(ctx()),
                           kinds=composer.mail_types(ctx()), min_items=ctx().config.selection.min_items,
                           zone=ctx().config.schedule.timezone)


@bp.get("/compose/preview")
@requires(*EDITORS)
def compose_preview() -> Response:
    html = variant_html(ctx(), request.args.get("variant", ""),
                        dark=request.args.get("scheme") == "dark")
    return Response(html, mimetype="text/html", headers=PREVIEW_HEADERS)


def _to_compose(message: str, category: str = "ok") -> BaseResponse:
    flash(message, category)
    return redirect(url_for("desk.compose"))


@bp.post("/compose/step/<int:item_id>/<direction>")
@requires(*EDITORS)
def compose_step(item_id: int, direction: str) -> BaseResponse:
    if direction not in ("up", "down"):
        abort(404)
    try:
        q.step(ctx(), item_id, -1 if direction == "up" else 1, by=g.user.email)
    except KpdigestError as exc:
        return _to_compose(f"Not moved: {exc}", "error")
    return _to_compose(f"Moved {direction}.")


@bp.post("/compose/send-now")
@requires(*EDITORS)
def compose_send_now() -> BaseResponse:
    force = bool(request.form.get("force"))
    if force and g.user.role != "admin":
        return _to_compose("Not sent: only an admin may send despite failed checks.", "error")
    order = order_send(ctx(), g.user.email, force=force)
    start_now(ctx(), order)
    return _to_compose(f"Sending started (order {order}); its result shows below when done.")


@bp.post("/compose/send-at")
@requires(*EDITORS)
def compose_send_at() -> BaseResponse:
    zone = ZoneInfo(ctx().config.schedule.timezone)
    try:
        at = datetime.fromisoformat(request.form.get("at", "").strip()).replace(tzinfo=zone)
    except ValueError:
        return _to_compose("Give a date and time for the send.", "error")
    if at <= datetime.now(zone):
        return _to_compose("That time has passed: use Send now, or a later time.", "error")
    force = bool(request.form.get("force")) and g.user.role == "admin"
    order = order_send(ctx(), g.user.email, at, force=force)
    return _to_compose(f"The issue will be sent at {local_time(at)} (order {order}); "
                       "the scheduler runs it.")


@bp.post("/compose/orders/<int:order_id>/cancel")
@requires(*EDITORS)
def compose_cancel_order(order_id: int) -> BaseResponse:
    try:
        cancel_order(ctx(), order_id)
    except KpdigestError as exc:
        return _to_compose(str(exc), "error")
    return _to_compose(f"Send order {order_id} cancelled.")


@bp.post("/compose/test")
@requires(*EDITORS)
def compose_test() -> BaseResponse:
    try:
        addresses = composer.parse_addresses(request.form.get("addresses", ""))
        done = send_tests(ctx(), addresses, request.form.getlist("kind"))
    except KpdigestError as exc:
        return _to_compose(f"No test sent: {exc}", "error")
    return _to_compose(f"{len(done)} test{'s' if len(done) != 1 else ''} sent: " + "; ".join(done))
