"""Public pages: sign-up, confirmation, one-click unsubscribe, preferences, privacy, archive.

Every answer about an address is the same whether or not it is known (no enumeration);
only the mailbox owner learns more, from the email.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import select

from core.errors import InvalidInput, NotFound
from core.models import issues, lists
from core.states import DELIVERED, IssueStatus
from pipeline.deliver import lane
from subscribers import consent, store
from subscribers.ratelimit import hit
from subscribers.tokens import InvalidToken, make_token, read_token
from web.security import client_ip, ctx

log = logging.getLogger(__name__)
bp = Blueprint("public", __name__)
CHECK_INBOX = "If the address can receive mail, a confirmation link is on its way."
LINK_HOURS = 24  # export and erase links
ARCHIVE_CSP = ("default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")


def _page(title: str, message: str, status: int = 200, **extra: Any) -> tuple[str, int]:
    return render_template("message.html", title=title, message=message, **extra), status


def _subscriber_from(token: str, purpose: str, max_age: int | None = None) -> int:
    try:
        return read_token(ctx().config.secret_key, purpose, token, max_age=max_age)
    except InvalidToken as exc:
        abort(400, f"{exc}. Ask for a new link on the page you came from.")


def _limited(kind: str) -> bool:
    return not hit(ctx(), f"{kind}:{client_ip()}", ctx().config.web.subscribe_rate_per_hour)


def _mail(sid: int | None, purpose: str) -> None:
    """Queue a link for the lane if there is someone to send it to: the request never
    waits for a provider, so the page reads the same, and as fast, either way."""
    lane.queue_link(ctx(), sid, purpose)


def _form(form: Any, error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("home.html", topics=ctx().config.topics, lists=consent.public_lists(ctx()),
                           form=form, error=error), status


@bp.get("/")
def home() -> tuple[str, int]:
    return _form({})


@bp.post("/subscribe")
def subscribe() -> tuple[str, int]:
    cfg = ctx().config
    form = request.form
    if form.get("website"):  # the honeypot: people never see this field
        return _page("Check your inbox", CHECK_INBOX)
    topics = [t for t in form.getlist("topics") if t in cfg.topics]
    if not form.get("consent"):
        return _form(form, "Please tick the box to say you want the digest.", 400)
    public = {row.slug for row in consent.public_lists(ctx())}
    chosen = tuple(s for s in form.getlist("lists") if s in public) or (store.DEFAULT_LIST,)
    if _limited("subscribe"):
        return _page("Too many sign-ups", "Too many sign-ups from your network: try again in an hour.", 429)
    evidence = consent.Evidence(source=request.path, ip=client_ip(),
                                user_agent=(request.user_agent.string or "")[:500],
                                text=cfg.web.consent_text, version=cfg.web.consent_version)
    try:  # the lane records it and mails the confirmation: the same work for every address
        lane.queue_signup(ctx(), form.get("email", ""), form.get("name", ""), topics or None,
                          chosen, evidence)
    except InvalidInput:
        return _form(form, "Please enter a valid email address.", 400)
    return _page("Check your inbox", CHECK_INBOX)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> tuple[str, int]:
    """GET asks (link scanners only GET, so they never confirm); POST confirms."""
    sid = _subscriber_from(token, "confirm", ctx().config.web.confirm_expiry_hours * 3600)
    if request.method == "GET":
        return render_template("confirm.html", token=token), 200
    consent.confirm(ctx(), sid)
    prefs = make_token(ctx().config.secret_key, "preferences", sid)
    return _page("You are subscribed", "Thank you: the next digest comes to your inbox.",
                 link=("Choose topics or pause", f"/preferences/{prefs}"))


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> tuple[str, int]:
    _subscriber_from(token, "unsubscribe")
    return render_template("unsubscribe.html", token=token), 200


@bp.post("/unsubscribe/<token>")
def unsubscribe_token(token: str) -> tuple[str, int]:
    """RFC 8058 one-click: no cookie, no CSRF token, 200 with no redirect, idempotent."""
    sid = _subscriber_from(token, "unsubscribe")
    with contextlib.suppress(NotFound):  # erased already: nothing left to mail
        store.unsubscribe(ctx(), sid, source="one-click")
    return render_template("unsubscribed.html", token=token), 200


@bp.post("/resubscribe/<token>")
def resubscribe(token: str) -> tuple[str, int]:
    """From the unsubscribe confirmation: the unsubscribe token proves the mailbox."""
    return _resubscribe(_subscriber_from(token, "unsubscribe"), "/resubscribe")


@bp.post("/preferences/<token>/resubscribe")
def preferences_resubscribe(token: str) -> tuple[str, int]:
    return _resubscribe(_subscriber_from(token, "preferences"), "/preferences/resubscribe")


def _resubscribe(sid: int, source: str) -> tuple[str, int]:
    """A fresh consent, with its evidence (the page, never the token), and back to active."""
    cfg = ctx().config
    if not request.form.get("consent"):
        return _page("Not resubscribed", "Please tick the box to say you want the digest again.", 400)
    consent.resubscribe(ctx(), sid, consent.Evidence(
        source=source, ip=client_ip(), user_agent=(request.user_agent.string or "")[:500],
        text=cfg.web.consent_text, version=cfg.web.consent_version))
    prefs = make_token(cfg.secret_key, "preferences", sid)
    return _page("Welcome back", "You are subscribed again: the next digest comes to your inbox.",
                 link=("Choose topics or pause", f"/preferences/{prefs}"))


@bp.route("/unsubscribe", methods=["GET"])
@bp.route("/preferences", methods=["GET"])
@bp.route("/preferences/pause", methods=["GET"])
def ask_link() -> str:
    """The archive's generic links: ask for a personal link by email."""
    return render_template("ask_link.html", purpose="preferences")


@bp.get("/privacy")
def privacy() -> str:
    return render_template("ask_link.html", purpose="privacy")


@bp.post("/manage")
def manage() -> tuple[str, int]:
    action = request.form.get("action", "preferences")
    if action not in ("preferences", "export", "erase"):
        abort(400, "unknown action")
    if _limited("manage"):
        return _page("Too many requests", "Too many requests from your network: try again in an hour.", 429)
    _mail(consent.find_subscriber_id(ctx(), request.form.get("email", "")), action)
    return _page("Check your inbox", "If this address is subscribed, a link is on its way.")


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str) -> tuple[str, int]:
    sid = _subscriber_from(token, "preferences")
    cfg = ctx().config
    saved = False
    if request.method == "POST":
        topics = [t for t in request.form.getlist("topics") if t in cfg.topics]
        consent.update_preferences(ctx(), sid, topics=topics or None, name=request.form.get("name"))
        saved = True
    data = consent.preferences(ctx(), sid)
    unsub = make_token(cfg.secret_key, "unsubscribe", sid)
    return render_template("preferences.html", data=data, topics=cfg.topics, token=token,
                           unsubscribe_token=unsub, saved=saved,
                           pause_weeks=consent.PAUSE_WEEKS), 200


@bp.route("/preferences/<token>/pause", methods=["GET", "POST"])
def preferences_pause(token: str) -> tuple[str, int]:
    """The digest footer's pause link: GET shows the choice (link scanners only GET),
    POST pauses for 2, 4 or 8 weeks, or resumes."""
    sid = _subscriber_from(token, "preferences")
    done = None
    if request.method == "POST":
        weeks = request.form.get("weeks", "")
        if weeks == "resume":
            consent.resume(ctx(), sid)
            done = "Resumed: the next digest comes to your inbox."
        elif weeks.isdigit():
            until = consent.pause(ctx(), sid, int(weeks), source="pause link")
            done = f"Paused until {until:%-d %B %Y}. The digest comes back by itself after that."
        else:
            abort(400, "choose how many weeks to pause")
    live = [s for s in consent.preferences(ctx(), sid)["subscriptions"]
            if s.status in ("active", "paused")]
    if not live:
        return _page("Nothing to pause", "This address receives no digest at the moment.",
                     link=("Your preferences", f"/preferences/{token}"))
    return render_template("pause.html", token=token, done=done, pause_weeks=consent.PAUSE_WEEKS,
                           paused=live[0].status == "paused", paused_until=live[0].paused_until), 200


@bp.post("/preferences/<token>/privacy")
def preferences_privacy(token: str) -> tuple[str, int]:
    sid = _subscriber_from(token, "preferences")
    action = request.form.get("action")
    if action not in ("export", "erase"):
        abort(400, "unknown action")
    _mail(sid, action)
    return _page("Check your inbox", "A link is on its way to your address. It works for 24 hours.")


@bp.get("/export/<token>")
def export(token: str) -> Response:
    sid = _subscriber_from(token, "export", LINK_HOURS * 3600)
    data = consent.export_data(ctx(), sid)
    return Response(json.dumps(data, indent=2, ensure_ascii=False), mimetype="application/json",
                    headers={"Content-Disposition": "attachment; filename=my-digest-data.json",
                             "Cache-Control": "no-store"})


@bp.route("/erase/<token>", methods=["GET", "POST"])
def erase(token: str) -> tuple[str, int]:
    sid = _subscriber_from(token, "erase", LINK_HOURS * 3600)
    if request.method == "GET":
        return render_template("erase.html", token=token), 200
    with contextlib.suppress(NotFound):
        store.erase(ctx(), sid)
    return _page("Your data is erased", "We deleted your subscription, your name and your history. "
                 "Only your address remains, on the do-not-mail list, so that we never write to it again.")


def _published() -> Any:
    weekly = select(lists.c.id).where(lists.c.slug == store.DEFAULT_LIST).scalar_subquery()
    return select(issues).where(issues.c.list_id == weekly, issues.c.number.is_not(None),
                                issues.c.status.in_((IssueStatus.SENDING, *DELIVERED)))


@bp.get("/archive")
def archive() -> str:
    with ctx().engine.connect() as conn:
        rows = conn.execute(_published().order_by(issues.c.number.desc()).limit(200)).all()
    return render_template("archive.html", issues=rows)


@bp.get("/issues/<int:number>")
def issue(number: int) -> Response:
    with ctx().engine.connect() as conn:
        row = conn.execute(_published().where(issues.c.number == number)).first()
    if row is None or not row.web_html:
        abort(404)
    return Response(row.web_html, mimetype="text/html", headers={"Content-Security-Policy": ARCHIVE_CSP})
