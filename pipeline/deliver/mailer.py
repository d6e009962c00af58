"""Transactional mail to one person: the sign-up confirmation, emailed links (preferences,
data export, erasure) and the welcome. Plain text, built here and handed over one by one
by the lane (pipeline/deliver/lane.py), never inside a web request."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

import jinja2
from sqlalchemy import desc, select

from core.config import Config
from core.context import Context
from core.errors import NotFound
from core.models import articles, issue_articles, issues, subscribers
from core.states import IssueStatus
from pipeline.compose.render import environment, oneline, render_confirm
from pipeline.deliver.transports import get_transport
from subscribers.tokens import link

SUBJECTS = {
    "preferences": "Your {name} preferences link",
    "export": "Your {name} data export link",
    "erase": "Confirm erasing your data from {name}",
}
WELCOME_STORIES = 5  # the best recent stories a welcome shows
WELCOME_ISSUES = 4  # ... chosen from this many latest sent issues
# One Jinja environment per configuration: building one compiles every template anew
# (16 ms a confirmation); the loader still notices an edited template (auto_reload).
_ENVS: dict[int, tuple[Config, jinja2.Environment]] = {}


def _env(cfg: Config) -> jinja2.Environment:
    hit = _ENVS.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        if len(_ENVS) > 16:
            _ENVS.clear()
        hit = _ENVS[id(cfg)] = (cfg, environment(cfg))
    return hit[1]


def build_message(ctx: Context, to: str, subject: str, body: str,
                  message_id: str | None = None) -> EmailMessage:
    """`message_id`: a stable id (the lane's row) so a resent copy is recognisably the same."""
    cfg = ctx.config
    msg = EmailMessage()
    msg["From"] = formataddr((cfg.sender.from_name, cfg.sender.from_email))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{message_id or uuid.uuid4().hex}@{cfg.sender.domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    if cfg.sender.reply_to:
        msg["Reply-To"] = cfg.sender.reply_to
    msg.set_content(body)
    return msg


def _subscriber(ctx: Context, subscriber_id: int) -> Any:
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    if sub is None:
        raise NotFound("no such subscriber")
    return sub


def link_message(ctx: Context, subscriber_id: int, purpose: str,
                 message_id: str | None = None) -> EmailMessage:
    """The mail carrying a signed link for `purpose` (confirm, preferences, export, erase)."""
    sub = _subscriber(ctx, subscriber_id)
    cfg = ctx.config
    url = link(cfg.site.base_url, cfg.secret_key, purpose, subscriber_id)
    if purpose == "confirm":
        subject, body = render_confirm(cfg, confirm_url=url, name=sub.name, env=_env(cfg))
    else:
        subject = SUBJECTS[purpose].format(name=oneline(cfg.site.name))
        body = _env(cfg).get_template("email/link.txt.j2").render(
            site=cfg.site, name=oneline(sub.name), url=url, purpose=purpose)
    return build_message(ctx, sub.email, subject, body, message_id)


def send_link(ctx: Context, subscriber_id: int, purpose: str) -> str:
    """Mail a signed link at once; returns the transport's message id. The web queues
    instead (lane.queue_link); this is for the command line and tests."""
    return get_transport(ctx.config).send_single(link_message(ctx, subscriber_id, purpose))


def best_recent(ctx: Context, limit: int = WELCOME_STORIES) -> list[Any]:
    """The strongest stories of the latest sent issues, for the welcome mail."""
    with ctx.engine.connect() as conn:
        recent = select(issues.c.id).where(issues.c.status == IssueStatus.SENT) \
            .order_by(desc(issues.c.number)).limit(WELCOME_ISSUES).scalar_subquery()
        return list(conn.execute(
            select(articles.c.title, articles.c.link, articles.c.source)
            .join(issue_articles, issue_articles.c.article_id == articles.c.id)
            .where(issue_articles.c.issue_id.in_(recent))
            .order_by(desc(issue_articles.c.picked_by == "editor"), desc(articles.c.score),
                      articles.c.id).limit(limit)).all())


def welcome_message(ctx: Context, subscriber_id: int | None, *, to: str | None = None,
                    message_id: str | None = None) -> EmailMessage:
    """The welcome (templates/email/welcome.txt.j2, editable): what the newsletter is, the
    best recent stories, how to change preferences. Without a subscriber (an editor's test
    send to `to`), the links are the generic ones."""
    cfg = ctx.config
    base = cfg.site.base_url.rstrip("/")
    if subscriber_id is not None:
        sub = _subscriber(ctx, subscriber_id)
        to, name = sub.email, sub.name
        prefs = link(cfg.site.base_url, cfg.secret_key, "preferences", subscriber_id)
    else:
        name, prefs = "", f"{base}/preferences"
    if not to:
        raise NotFound("a welcome needs an address")
    body = _env(cfg).get_template("email/welcome.txt.j2").render(
        site=cfg.site, name=oneline(name), stories=best_recent(ctx), preferences_url=prefs,
        archive_url=f"{base}/archive")
    subject = f"Welcome to {oneline(cfg.site.name)}"
    return build_message(ctx, to, subject if subscriber_id else f"[Test] {subject}", body,
                         message_id)
