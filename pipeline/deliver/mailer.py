"""Transactional mail to one subscriber: the sign-up confirmation and emailed links
(preferences, data export, erasure). Plain text, sent with the transport's send_single."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from sqlalchemy import select

from core.context import Context
from core.errors import NotFound
from core.models import subscribers
from pipeline.compose.render import environment, oneline, render_confirm
from pipeline.deliver.transports import get_transport
from subscribers.tokens import link

SUBJECTS = {
    "preferences": "Your {name} preferences link",
    "export": "Your {name} data export link",
    "erase": "Confirm erasing your data from {name}",
}


def build_message(ctx: Context, to: str, subject: str, body: str) -> EmailMessage:
    cfg = ctx.config
    msg = EmailMessage()
    msg["From"] = formataddr((cfg.sender.from_name, cfg.sender.from_email))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{cfg.sender.domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    if cfg.sender.reply_to:
        msg["Reply-To"] = cfg.sender.reply_to
    msg.set_content(body)
    return msg


def send_link(ctx: Context, subscriber_id: int, purpose: str) -> str:
    """Mail the subscriber a signed link for `purpose`; returns the transport's message id."""
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    if sub is None:
        raise NotFound("no such subscriber")
    cfg = ctx.config
    url = link(cfg.site.base_url, cfg.secret_key, purpose, subscriber_id)
    if purpose == "confirm":
        subject, body = render_confirm(cfg, confirm_url=url, name=sub.name)
    else:
        subject = SUBJECTS[purpose].format(name=oneline(cfg.site.name))
        body = environment(cfg).get_template("email/link.txt.j2").render(
            site=cfg.site, name=oneline(sub.name), url=url, purpose=purpose)
    msg = build_message(ctx, sub.email, subject, body)
    return get_transport(cfg).send_single(msg)
