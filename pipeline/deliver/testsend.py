""""Send a test to yourself": one copy of an issue, as subscribers get it, to an editor.

The test goes through the configured transport (so an editor sees the provider's real
rendering) but never touches the delivery ledger: it is not a delivery.
"""

from __future__ import annotations

from sqlalchemy import func, select

from core.addresses import normalize_email
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.models import issue_variants, issues
from pipeline.compose.composer import compose_next, mail_types, message_for_test
from pipeline.compose.issues import get_issue, make_subject, web_url
from pipeline.compose.message import Recipient, copy_for_test
from pipeline.compose.personalize import new_key
from pipeline.compose.render import render_issue
from pipeline.curate.select import select_articles
from pipeline.deliver.transports import get_transport


def _next_issue(ctx: Context) -> tuple[str, str, str, str]:
    """Subject, HTML, text and key of the next issue, rendered without freezing anything."""
    cfg, now = ctx.config, utcnow()
    with ctx.engine.connect() as conn:
        sel = select_articles(conn, cfg, now)
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
    key = new_key()
    subject = make_subject(cfg, number, sel.picked, now)
    r = render_issue(cfg, number=number, date=now, subject=subject, intro=cfg.digest.intro,
                     articles=sel.picked, key=key, web_url=web_url(cfg, number))
    return subject, r.html, r.text, key


def _frozen_issue(ctx: Context, number: int) -> tuple[str, str, str, str]:
    with ctx.engine.connect() as conn:
        row = get_issue(conn, number)
        variant = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == row.id)
                               .order_by(issue_variants.c.variant).limit(1)).first()
    if variant is None:
        raise NotFound(f"issue #{number} has no rendering (it was skipped)")
    return row.subject, variant.html_template, variant.text_template, row.placeholder_key


def send_test(ctx: Context, to: str, number: int | None = None, name: str = "") -> str:
    """Mail issue `number` (default: the next one) to `to`; the transport's message id."""
    cfg = ctx.config
    addr = normalize_email(to)
    subject, html_t, text_t, key = _next_issue(ctx) if number is None else _frozen_issue(ctx, number)
    base = cfg.site.base_url.rstrip("/")
    values = Recipient(0, addr, name, f"{base}/unsubscribe", f"{base}/preferences").values()
    msg = copy_for_test(cfg, addr, subject, text_t, html_t, key, values)
    return get_transport(cfg).send_single(msg)


def send_tests(ctx: Context, addresses: list[str], kinds: list[str]) -> list[str]:
    """Mail each chosen kind (a digest variant, the confirmation) to each address through
    the configured transport, never the ledger; returns one line per message: what, to
    whom, the transport's reference."""
    known = mail_types(ctx)
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds:
        raise InvalidInput(f"choose what to send, of: {', '.join(known.values())}")
    cfg = ctx.config
    transport = get_transport(cfg)
    comp = compose_next(ctx, checks=False) if any(k.startswith("digest:") for k in kinds) else None
    done = []
    for kind in kinds:
        for addr in addresses:
            msg = message_for_test(cfg, comp, kind, addr)
            done.append(f"{known[kind]} to {addr}: {transport.send_single(msg)}")
    return done
