"""A queue item as the digest will show it, before it is saved: the digest's own template
rendered with just that item (the editors' live preview)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from core.context import Context
from core.db import utcnow
from core.errors import NotFound
from core.models import articles, issues, queue_items
from core.states import Origin
from pipeline.compose.issues import archive_html, web_url
from pipeline.compose.personalize import new_key
from pipeline.compose.render import render_issue
from pipeline.curate.queue import image_url, render_markdown


def item_article(ctx: Context, item_id: int, form: dict[str, Any] | None = None) -> dict[str, Any]:
    """The item's article as selection hands it to the renderer, with the unsaved `form`
    values (title, markdown, image, image_alt, link, section) on top."""
    with ctx.engine.connect() as conn:
        row = conn.execute(select(articles, queue_items.c.section, queue_items.c.summary_markdown)
                           .join(queue_items, queue_items.c.article_id == articles.c.id)
                           .where(queue_items.c.id == item_id)).mappings().first()
    if row is None:
        raise NotFound(f"no queue item {item_id}")
    art = {**row, "picked_by": Origin.EDITOR}
    form = form or {}
    if (form.get("title") or "").strip():
        art["title"] = form["title"].strip()[:500]
    if form.get("markdown") is not None:
        art["summary_html"] = render_markdown(form["markdown"], ctx.config.site.base_url)
    if "image" in form:
        art["image_url"] = image_url(form["image"], art.get("link") or ctx.config.site.base_url)
    if form.get("image_alt") is not None:
        art["image_alt"] = form["image_alt"]
    if (form.get("link") or "").strip():
        art["link"] = form["link"].strip()
    if "section" in form:
        art["section"] = form["section"] if form["section"] in ctx.config.topics else ""
    return art


def preview_item(ctx: Context, item_id: int, form: dict[str, Any] | None = None) -> str:
    """The next issue's HTML carrying only this item, as a browser shows the web version."""
    cfg = ctx.config
    art = item_article(ctx, item_id, form)
    with ctx.engine.connect() as conn:
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
    key = new_key()
    rendered = render_issue(cfg, number=number, date=utcnow(), subject=art["title"],
                            intro=cfg.digest.intro, articles=[art], key=key,
                            web_url=web_url(cfg, number))
    return archive_html(cfg, rendered, key)
