"""The admins' desk: subscribers, lists, CSV import/export, suppressions, issues."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from core.addresses import normalize_email
from core.db import utcnow
from core.errors import InvalidInput, KpdigestError
from core.models import events, lists, subscribers, subscriptions, suppressions
from pipeline.compose.issues import list_issues
from pipeline.deliver import control
from pipeline.deliver.control import issue_progress
from pipeline.deliver.doctor import run_doctor
from pipeline.deliver.doctor.rates import sending_rates
from subscribers import store
from subscribers.csvio import export_rows
from web import imports
from web.desk import drafts
from web.security import ctx, requires

bp = Blueprint("admin", __name__, url_prefix="/desk")
PAGE = 50
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def _like(text: str) -> str:
    """A LIKE pattern that matches `text` literally (its % and _ are escaped)."""
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@bp.get("/subscribers")
@requires("admin")
def subscribers_page() -> str:
    term = request.args.get("q", "").strip()
    after = request.args.get("after", type=int) or 0
    query = (select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.created_at)
             .where(subscribers.c.id > after).order_by(subscribers.c.id).limit(PAGE))
    if term:
        query = query.where(func.lower(subscribers.c.email).like(_like(term), escape="\\")
                            | func.lower(subscribers.c.name).like(_like(term), escape="\\"))
    with ctx().engine.connect() as conn:
        rows = conn.execute(query).all()
        all_lists = conn.execute(select(lists).order_by(lists.c.id)).all()
    return render_template("desk/subscribers.html", rows=rows, term=term, counts=store.counts(ctx()),
                           next_after=rows[-1].id if len(rows) == PAGE else None, lists=all_lists,
                           topics=ctx().config.topics)


@bp.get("/subscribers/paused")
@requires("admin")
def paused_page() -> str:
    """Who is paused until when (#18), soonest back first."""
    return render_template("desk/paused.html", rows=store.paused(ctx()))


@bp.post("/subscribers/add")
@requires("admin")
def add_subscriber() -> BaseResponse:
    form = request.form
    topics = [t for t in form.getlist("topics") if t in ctx().config.topics]
    try:
        sid = store.add_subscriber(ctx(), form.get("email", ""), form.get("name", "").strip()[:200],
                                   confirmed=True, topics=topics or None, source=f"desk:{g.user.email}",
                                   list_slug=form.get("list") or store.DEFAULT_LIST)
    except KpdigestError as exc:
        flash(f"Not added: {exc}", "error")
        return redirect(url_for("admin.subscribers_page"))
    flash("Subscriber added.", "ok")
    return redirect(url_for("admin.subscriber", sid=sid))


@bp.get("/subscribers/<int:sid>")
@requires("admin")
def subscriber(sid: int) -> str:
    with ctx().engine.connect() as conn:
        row = conn.execute(select(subscribers).where(subscribers.c.id == sid)).first()
        if row is None:
            abort(404)
        subs = conn.execute(select(subscriptions, lists.c.slug)
                            .join(lists, lists.c.id == subscriptions.c.list_id)
                            .where(subscriptions.c.subscriber_id == sid).order_by(lists.c.id)).all()
        evts = conn.execute(select(events).where(events.c.subscriber_id == sid)
                            .order_by(events.c.id.desc()).limit(200)).all()
        suppressed = store.is_suppressed(conn, row.email)
    return render_template("desk/subscriber.html", s=row, subs=subs, events=evts, suppressed=suppressed)


@bp.post("/subscribers/<int:sid>/unsubscribe")
@requires("admin")
def unsubscribe(sid: int) -> BaseResponse:
    store.unsubscribe(ctx(), sid, source=f"desk:{g.user.email}")
    flash("Unsubscribed from every list and suppressed.", "ok")
    return redirect(url_for("admin.subscriber", sid=sid))


@bp.post("/subscribers/<int:sid>/erase")
@requires("admin")
def erase(sid: int) -> BaseResponse:
    store.erase(ctx(), sid)
    flash("Erased: only the address remains, on the suppression list.", "ok")
    return redirect(url_for("admin.subscribers_page"))


@bp.route("/lists", methods=["GET", "POST"])
@requires("admin")
def lists_page() -> str | BaseResponse:
    if request.method == "POST":
        slug = request.form.get("slug", "").strip().lower()
        if not SLUG.match(slug):
            flash("A list slug is lower-case letters, digits and dashes.", "error")
            return redirect(url_for("admin.lists_page"))
        try:
            with ctx().engine.begin() as conn:
                conn.execute(insert(lists).values(
                    slug=slug, name=request.form.get("name", "").strip()[:200] or slug,
                    description=request.form.get("description", "").strip(),
                    public=bool(request.form.get("public")),
                    double_optin=bool(request.form.get("double_optin")),
                    created_at=utcnow()))
        except IntegrityError:
            flash(f"Not created: a list {slug!r} exists already.", "error")
            return redirect(url_for("admin.lists_page"))
        flash(f"List {slug} created.", "ok")
        return redirect(url_for("admin.lists_page"))
    with ctx().engine.connect() as conn:
        counts = dict(conn.execute(select(subscriptions.c.list_id, func.count())
                                   .where(subscriptions.c.status == "active")
                                   .group_by(subscriptions.c.list_id)).all())
        rows = conn.execute(select(lists).order_by(lists.c.id)).all()
    return render_template("desk/lists.html", rows=rows, counts=counts)


@bp.route("/import", methods=["GET", "POST"])
@requires("admin")
def import_page() -> str | BaseResponse:
    with ctx().engine.connect() as conn:
        slugs = list(conn.execute(select(lists.c.slug).order_by(lists.c.id)).scalars())
    if request.method == "GET":
        return render_template("desk/import.html", slugs=slugs)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file.", "error")
        return redirect(url_for("admin.import_page"))
    slug = request.form.get("list") or store.DEFAULT_LIST
    if slug not in slugs:
        abort(400, "unknown list")
    job = imports.start(ctx(), upload.read(), upload.filename[:100], slug, f"desk:{g.user.email}")
    return redirect(url_for("admin.import_status", job_id=job.id))


@bp.get("/import/<job_id>")
@requires("admin")
def import_status(job_id: str) -> str:
    job = imports.get(job_id)
    if job is None:
        abort(404)
    done = job.done  # read before the counts: a finished job's counts are final
    return render_template("desk/import_status.html", job=job, done=done, errors=job.report.errors[:1000])


@bp.get("/import/<job_id>/errors.csv")
@requires("admin")
def import_errors(job_id: str) -> Response:
    job = imports.get(job_id)
    if job is None:
        abort(404)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "reason"])
    writer.writerows(job.report.errors)
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=import-errors.csv"})


@bp.get("/export.csv")
@requires("admin")
def export() -> Response:
    """Streamed in keyset pages: memory stays flat for a million subscribers."""
    context = ctx()  # the generator runs after the request context is gone

    def generate() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for i, row in enumerate(export_rows(context)):
            writer.writerow(row)
            if i % 1000 == 999:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return Response(generate(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=subscribers.csv"})


@bp.route("/suppressions", methods=["GET", "POST"])
@requires("admin")
def suppressions_page() -> str | BaseResponse:
    if request.method == "POST":
        try:
            addr = normalize_email(request.form.get("email", ""))
        except InvalidInput as exc:
            flash(str(exc), "error")
            return redirect(url_for("admin.suppressions_page"))
        with ctx().engine.begin() as conn:
            added = store.suppress(conn, addr, "manual", f"added by {g.user.email}")
            sid = conn.execute(select(subscribers.c.id).where(subscribers.c.email == addr)).scalar()
            if sid:
                store.log_event(conn, sid, "suppressed", {"reason": "manual"}, actor=g.user.email)
        flash(f"{addr} suppressed." if added else f"{addr} was suppressed already.", "ok")
        return redirect(url_for("admin.suppressions_page"))
    term = request.args.get("q", "").strip()
    query = select(suppressions).order_by(suppressions.c.id.desc()).limit(200)
    if term:
        query = query.where(suppressions.c.email.like(_like(term), escape="\\"))
    with ctx().engine.connect() as conn:
        rows = conn.execute(query).all()
        total = conn.execute(select(func.count()).select_from(suppressions)).scalar_one()
    return render_template("desk/suppressions.html", rows=rows, term=term, total=total)


@bp.get("/deliverability")
@requires("admin")
def deliverability() -> str:
    """`kpdigest doctor` as a page, with the sending domain's complaint and bounce rates."""
    offline = bool(request.args.get("offline"))
    report = run_doctor(ctx().config, network=not offline)
    return render_template("desk/deliverability.html", report=report, offline=offline,
                           reputation=sending_rates(ctx()))


@bp.get("/issues")
@requires("admin")
def issues_page() -> str:
    return render_template("desk/issues.html", rows=list_issues(ctx()))


@bp.get("/issues/<int:number>")
@requires("admin", "editor")  # editors see progress and review drafts; the actions are admins'
def issue_page(number: int) -> str:
    progress = issue_progress(ctx(), number)
    with ctx().engine.connect() as conn:
        review = drafts(conn, number)
    return render_template("desk/issue.html", p=progress, refresh=progress.status == "sending",
                           drafts=review)


@bp.post("/issues/<int:number>/<action>")
@requires("admin")
def issue_action(number: int, action: str) -> BaseResponse:
    done: dict[str, Any] = {
        "pause": lambda: control.pause_issue(ctx(), number, f"paused by {g.user.email}"),
        "resume": lambda: control.resume_issue(ctx(), number),
        "cancel": lambda: control.cancel_issue(ctx(), number),
        "retry-failed": lambda: control.retry_issue(ctx(), number, failed=True),
        "retry-unknown": lambda: control.retry_issue(ctx(), number, unknown=True),
    }
    if action not in done:
        abort(404)
    try:
        result = done[action]()
    except KpdigestError as exc:
        flash(str(exc), "error")
    else:
        extra = f" ({result} recipients queued)." if result else "."
        flash(f"Issue #{number}: {action} done{extra}", "ok")
    return redirect(url_for("admin.issue_page", number=number))
