"""The issue composer: the next issue as each topic variant's readers would get it now,
with the pre-send checks run on exactly that rendering, and test sends of every mail type.

Nothing is frozen here; `build_issue` freezes the same selection when the issue is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, literal_column, select

from core.addresses import normalize_email
from core.config import Config
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput
from core.models import issues, lists, subscriptions
from core.states import IssueStatus, SubscriptionStatus
from pipeline.compose.check import CheckReport, check_variant, sample_recipient
from pipeline.compose.check import _spam as spam_check  # `issue check`'s SpamAssassin step
from pipeline.compose.issues import (
    archive_html,
    make_subject,
    period_for,
    variant_articles,
    web_url,
)
from pipeline.compose.message import clean_header, confirmation_message, copy_for_test
from pipeline.compose.personalize import new_key
from pipeline.compose.prepare import PreparedVariant
from pipeline.compose.render import Rendered, render_issue
from pipeline.curate.select import Selection, select_articles
from subscribers.store import DEFAULT_LIST

MAX_TEST_ADDRESSES = 20


@dataclass
class Variant:
    variant: str  # the stored topic set, "" = every topic
    name: str  # in words: "Keratosis pilaris, Skin care" or "every topic"
    readers: int
    rendered: Rendered
    key: str
    titles: list[str] = field(default_factory=list)


@dataclass
class Composition:
    number: int
    subject: str
    selection: Selection
    variants: list[Variant]
    skip_reason: str | None  # set when build_issue would skip the issue now
    checks: CheckReport | None = None
    built: Any = None  # this period's issue when it exists already: Send now sends that one


def variant_name(cfg: Config, variant: str) -> str:
    if not variant:
        return "every topic"
    return ", ".join(cfg.topics[s].label if s in cfg.topics else s for s in variant.split(","))


def _audiences(ctx: Context) -> dict[str, int]:
    """Active readers per topic set of the default list; "" (every topic) always present."""
    topics = func.coalesce(subscriptions.c.topics, literal_column("''"))
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(topics, func.count())
            .join(lists, lists.c.id == subscriptions.c.list_id)
            .where(lists.c.slug == DEFAULT_LIST, subscriptions.c.status == SubscriptionStatus.ACTIVE)
            .group_by(topics)).all()
    counts = {v: int(n) for v, n in rows}
    counts.setdefault("", 0)
    return dict(sorted(counts.items()))


def compose_next(ctx: Context, now: datetime | None = None, *, checks: bool = True,
                 spam: bool = False) -> Composition:
    """Render every variant of the next issue as `build_issue` would now, and check them."""
    ctx.require_schema()
    cfg, now = ctx.config, now or utcnow()
    with ctx.engine.connect() as conn:
        sel = select_articles(conn, cfg, now)
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
    subject = make_subject(cfg, number, sel.picked, now)
    variants = []
    for variant, readers in _audiences(ctx).items():
        chosen = variant_articles(sel.picked, variant)
        key = new_key()
        r = render_issue(cfg, number=number, date=now, subject=subject, intro=cfg.digest.intro,
                         articles=chosen, key=key, web_url=web_url(cfg, number))
        variants.append(Variant(variant, variant_name(cfg, variant), readers, r, key,
                                [a["title"] for a in chosen]))
    comp = Composition(number, subject, sel, variants,
                       None if sel.enough(cfg) else sel.reason(cfg), built=this_period(ctx, now))
    if checks:
        comp.checks = _check(cfg, comp, spam)
    return comp


def this_period(ctx: Context, now: datetime) -> Any:
    """This period's issue of the default list, unless skipped (None when not built)."""
    with ctx.engine.connect() as conn:
        return conn.execute(select(issues).join(lists, lists.c.id == issues.c.list_id).where(
            lists.c.slug == DEFAULT_LIST, issues.c.period == period_for(now, ctx.config),
            issues.c.status != IssueStatus.SKIPPED)).first()


def _prepared(cfg: Config, comp: Composition, v: Variant) -> PreparedVariant:
    return PreparedVariant(cfg, 0, comp.number, v.variant, v.key, comp.subject,
                           v.rendered.html, v.rendered.text)


def _check(cfg: Config, comp: Composition, spam: bool) -> CheckReport:
    """The pre-send check (`issue check`) on these renderings: size, images' alt text,
    links, footer; SpamAssassin's score when asked (it takes seconds)."""
    report = CheckReport(comp.number)
    prepared = {}
    for v in comp.variants:
        label = f"variant {v.name}"
        prepared[label] = _prepared(cfg, comp, v)
        check_variant(cfg, prepared[label], label, report, web_url(cfg, comp.number))
    if spam:
        spam_check(cfg, prepared, report)
    return report


DARK_QUERY = "@media (prefers-color-scheme: dark)"


def variant_html(ctx: Context, variant: str, *, dark: bool = False) -> str:
    """One variant of the next issue as a browser shows it (generic links); `dark` applies
    the template's own dark-mode rules, as a mail client in dark mode would."""
    if variant not in _audiences(ctx):
        raise InvalidInput(f"no reader gets the topic set {variant!r}")
    cfg, now = ctx.config, utcnow()
    with ctx.engine.connect() as conn:
        sel = select_articles(conn, cfg, now)
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
    key = new_key()
    r = render_issue(cfg, number=number, date=now, subject=make_subject(cfg, number, sel.picked, now),
                     intro=cfg.digest.intro, articles=variant_articles(sel.picked, variant), key=key,
                     web_url=web_url(cfg, number))
    html = archive_html(cfg, r, key)
    return html.replace(DARK_QUERY, "@media all") if dark else html


def parse_addresses(text: str) -> list[str]:
    """Addresses separated by commas, spaces or lines; each checked, at most 20."""
    raw = [a for a in text.replace(",", " ").split() if a]
    if not raw:
        raise InvalidInput("give at least one address")
    if len(raw) > MAX_TEST_ADDRESSES:
        raise InvalidInput(f"at most {MAX_TEST_ADDRESSES} addresses for a test")
    return list(dict.fromkeys(normalize_email(a) for a in raw))


def mail_types(ctx: Context) -> dict[str, str]:
    """Every mail a reader can get, by key: each digest variant and the confirmation."""
    kinds = {f"digest:{v}": f"digest for {variant_name(ctx.config, v)}" for v in _audiences(ctx)}
    kinds["confirm"] = "sign-up confirmation"
    return kinds


def message_for_test(cfg: Config, comp: Composition | None, kind: str, addr: str) -> EmailMessage:
    base = cfg.site.base_url.rstrip("/")
    if kind == "confirm":
        msg = confirmation_message(cfg, to_email=addr, name="",
                                   confirm_url=f"{base}/confirm/TEST-LINK")
        msg.replace_header("Subject", clean_header(f"[Test] {msg['Subject']}"))
        msg["X-Kpdigest-Test"] = "yes"
        return msg
    assert comp is not None
    v = next(v for v in comp.variants if f"digest:{v.variant}" == kind)
    values = sample_recipient(cfg).values() | {"email": addr, "name": "", "greeting": "Hello,"}
    return copy_for_test(cfg, addr, comp.subject, v.rendered.text, v.rendered.html, v.key, values)


def picks(comp: Composition) -> list[dict[str, Any]]:
    """The picks in mailing order (editor picks first, in editor order)."""
    return comp.selection.picked
