"""Counted links and the measurement pages: `/r/<token>` (the reader's redirect), the
analytics opt-in from the preferences page, and the editors' click report.

The redirect reads a signed token, finds the URL in the issue's link table (held in
memory after the first click on an issue), hands the click to the buffered counter and
answers at once: the database is never on the reader's path once the issue's links are
loaded. A bad token answers 400 and redirects nowhere.

A good token is answered by `FastPath`, a WSGI layer in front of Flask (inside ProxyFix,
so the client address is the same as Flask's): a redirect is the one request every reader
makes, and Flask's routing, session and header machinery would be most of its cost. Every
other request, and every bad token (for its 400 page), goes to the Flask route below.
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.http import parse_cookie
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from pipeline.measure import consent as reader_consent
from pipeline.measure.counter import ClickCounter
from pipeline.measure.links import (
    InvalidLink,
    LinkCache,
    Target,
    read_link_token,
    read_vote_token,
    serializer,
)
from pipeline.measure.machines import Classifier
from subscribers.tokens import InvalidToken, read_token
from web.security import ctx, requires

log = logging.getLogger(__name__)
bp = Blueprint("measure", __name__)
STATE = "kpdigest.measure"


class Measure:
    """Per app: the signing key read once, the link cache and the click counter."""

    def __init__(self, app: Flask) -> None:
        kctx = app.extensions["kpdigest"]
        cfg = kctx.config.analytics
        self.secret = kctx.config.secret_key
        self.serializer = serializer(self.secret)
        self.max_age = cfg.link_max_age_days * 86400
        self.links = LinkCache(kctx.engine)
        self.counter: ClickCounter | None = None
        if cfg.enabled:
            try:
                self.links.warm()
            except SQLAlchemyError:  # a database down at start-up: links load on first click
                log.warning("could not preload the counted links", exc_info=True)
            self.counter = ClickCounter(kctx.engine, Classifier(cfg), bound=cfg.buffer_clicks,
                                        flush_seconds=cfg.flush_seconds).start()
        atexit.register(self.close)

    def resolve(self, token: str) -> Target:
        """The link a token names, else InvalidLink."""
        issue_id, link_id = read_link_token(self.secret, token, self.max_age, self.serializer)
        target = self.links.target(issue_id, link_id)
        if target is None:
            raise InvalidLink("this link is not valid")
        return target

    def count(self, target: Target, environ: dict[str, Any]) -> None:
        if self.counter is not None:
            self.counter.record(
                target.issue_id, target.link_id, head=environ.get("REQUEST_METHOD") == "HEAD",
                agent=environ.get("HTTP_USER_AGENT", ""), ip=environ.get("REMOTE_ADDR") or "",
                reader=reader_consent.reader_from_cookie(self.secret, _cookie(environ)))

    def close(self) -> None:
        """Write what is buffered (up to 10 s) and stop the counter's thread."""
        if self.counter is not None:
            self.counter.close()
        self.links.close()


def _cookie(environ: dict[str, Any]) -> str | None:
    raw = environ.get("HTTP_COOKIE")
    if not raw or reader_consent.COOKIE not in raw:
        return None
    return parse_cookie(raw).get(reader_consent.COOKIE)


class FastPath:
    """`GET|HEAD /r/<good token>` answered before Flask; anything else passes through."""

    def __init__(self, app: Any, m: Measure) -> None:
        self.app = app
        self.m = m

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/r/") and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            try:
                target = self.m.resolve(path[3:])
            except InvalidLink:
                return self.app(environ, start_response)  # the Flask route's 400 page
            self.m.count(target, environ)
            start_response("302 Found", [("Location", target.location), *REDIRECT_HEADERS])
            return [b""]
        return self.app(environ, start_response)


REDIRECT_HEADERS = (("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                    ("X-Content-Type-Options", "nosniff"), ("Content-Length", "0"))


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    app = state.app
    m = app.extensions[STATE] = Measure(app)
    if isinstance(app.wsgi_app, ProxyFix):  # behind the proxy fix: the same client address
        app.wsgi_app.app = FastPath(app.wsgi_app.app, m)
    else:
        app.wsgi_app = FastPath(app.wsgi_app, m)


def measure() -> Measure:
    return current_app.extensions[STATE]


def _bad(message: str) -> tuple[str, int]:
    return render_template("message.html", title="This link does not work",
                           message=f"{message}. Open the article from the issue's web version "
                                   "instead."), 400


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def follow(token: str) -> Any:
    """302 to the issue's own link; the click is counted after the answer, in batches."""
    m = measure()
    try:
        target = m.resolve(token)
    except InvalidLink as exc:
        return _bad(str(exc))
    m.count(target, request.environ)
    return Response(status=302, headers={"Location": target.location, **dict(REDIRECT_HEADERS)})


@bp.route("/f/<token>", methods=["GET", "HEAD"])
def vote(token: str) -> tuple[str, int]:
    """"More / less like this": one click, no login; counted per topic and source. Link
    scanners open it too: their visits are machine traffic, apart like clicks."""
    m = measure()
    try:
        issue_id, link_id, value = read_vote_token(m.secret, token, m.max_age)
        target = m.links.target(issue_id, link_id)
        if target is None:
            raise InvalidLink("this link is not valid")
    except InvalidLink as exc:
        return _bad(str(exc))
    if m.counter is not None:
        m.counter.record(issue_id, link_id, head=request.method == "HEAD",
                         agent=request.headers.get("User-Agent", ""),
                         ip=request.remote_addr or "", vote=value)
    more = value > 0
    return render_template("message.html", title="Thank you",
                           message="We will pick more stories like this one." if more else
                           "We will pick fewer stories like this one."), 200


@bp.app_context_processor
def _consent_helper() -> dict[str, Any]:
    def measurement_consent(token: str) -> bool | None:
        """On the preferences page: None when counting is off, else the reader's choice."""
        if not ctx().config.analytics.enabled:
            return None
        try:
            sid = read_token(measure().secret, "preferences", token)
        except InvalidToken:
            return None
        return reader_consent.has_consent(ctx(), sid)

    return {"measurement_consent": measurement_consent}


@bp.post("/preferences/<token>/analytics")
def preferences_analytics(token: str) -> tuple[str, int] | Response:
    """Give or withdraw consent to individual analytics; sets or clears the cookie."""
    try:
        sid = read_token(measure().secret, "preferences", token)
    except InvalidToken as exc:
        return render_template("message.html", title="That did not work",
                               message=f"{exc}. Ask for a new link."), 400
    back = ("Back to your preferences", url_for("public.preferences", token=token))
    if request.form.get("action") == "give" and ctx().config.analytics.enabled:
        reader_consent.give(ctx(), sid)
        resp = Response(render_template(
            "message.html", title="Thank you",
            message="Your clicks in the digest now help us learn which stories you like "
                    "(in this browser). You can stop this at any time on this page.", link=back))
        resp.set_cookie(reader_consent.COOKIE, reader_consent.reader_cookie(measure().secret, sid),
                        max_age=reader_consent.COOKIE_DAYS * 86400, httponly=True,
                        samesite="Lax", secure=request.is_secure)
        return resp
    deleted = reader_consent.withdraw(ctx(), sid)
    resp = Response(render_template(
        "message.html", title="Stopped",
        message=f"We deleted the {deleted} clicks stored with your name and store no more. "
                "Clicks are still counted, without you.", link=back))
    resp.delete_cookie(reader_consent.COOKIE)
    return resp


@bp.get("/desk/issues/<int:number>/clicks")
@requires("admin", "editor")
def clicks_page(number: int) -> str:
    # Lazy: the report pulls in the composing stage (premailer, cssutils), which the
    # redirect process does not need to start answering.
    from pipeline.measure.report import feed_clicks, issue_clicks, weight_suggestions

    return render_template("desk/clicks.html", r=issue_clicks(ctx(), number),
                           feeds=feed_clicks(ctx()), suggestions=weight_suggestions(ctx()),
                           applied=request.args.get("applied"))


@bp.post("/desk/issues/<int:number>/weights/<topic>")
@requires("admin", "editor")
def apply_weight(number: int, topic: str) -> BaseResponse:
    """An editor approves a suggested topic weight (written to config.toml, audited)."""
    from pipeline.measure.weights import apply_suggestion  # lazy: start-up time (above)

    s = apply_suggestion(ctx(), topic, f"desk:{g.user.email}")
    return redirect(url_for("measure.clicks_page", number=number,
                            applied=f"{s.topic} {s.current:g} -> {s.suggested:g}"))


@bp.get("/desk/issues/<int:number>/clicks.csv")
@requires("admin", "editor")
def clicks_csv(number: int) -> Response:
    from pipeline.measure.report import issue_clicks, issue_csv  # lazy: start-up time (above)

    return Response(issue_csv(issue_clicks(ctx(), number)), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f"attachment; filename=issue-{number}-clicks.csv"})
