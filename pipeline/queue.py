"""The editor queue: articles an editor adds by URL or writes in Markdown, then approves,
pins and orders. Approved items lead the next issue."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from sqlalchemy import func, insert, select, update

from kpdigest.context import Context
from kpdigest.db import utcnow
from kpdigest.errors import FetchError, InvalidInput, NotFound, StateError, UnsafeURL
from kpdigest.models import articles, queue_items
from pipeline.collect import store_articles
from pipeline.fetch import fetch, make_session
from pipeline.identity import article_identity, content_hash
from pipeline.relevance import score_text
from pipeline.sanitize import excerpt, html_to_text, sanitize_html

STATES = ("queued", "approved", "rejected", "used")


class AlreadyQueued(StateError):
    """The article is in the queue already; `item_id` names it (adding is idempotent)."""

    def __init__(self, item_id: int) -> None:
        super().__init__(f"already in the queue as item {item_id}")
        self.item_id = item_id


def check_public_url(url: str, allow_private: bool = False) -> None:
    """SSRF guard: refuse URLs whose host resolves to a private, loopback or link-local IP."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved \
                or ip.is_multicast or ip.is_unspecified:
            raise UnsafeURL(f"{parts.hostname} resolves to {ip}, a non-public address; "
                            "set collect.allow_private_addresses = true to allow it")


def extract_page(html_bytes: bytes, url: str) -> dict[str, Any]:
    """Title, description, image, site name and date of a web page (trafilatura)."""
    import trafilatura

    text = html_bytes.decode("utf-8", errors="replace")
    meta = trafilatura.extract_metadata(text, default_url=url)
    body = trafilatura.extract(text, url=url, include_comments=False) or ""
    return {
        "title": (meta.title if meta else None) or url,
        "description": (meta.description if meta else None) or excerpt(body, 400),
        "image": meta.image if meta else None,
        "site": (meta.sitename if meta else None) or urlsplit(url).hostname or "",
        "date": meta.date if meta else None,
        "author": meta.author if meta else None,
        "text": body,
    }


def _add(ctx: Context, record: dict[str, Any], state: str, note: str | None, added_by: str | None) -> int:
    now = utcnow()
    with ctx.engine.begin() as conn:
        _seen, new_ids = store_articles(conn, [record], None, origin="editor")
        if new_ids:
            article_id = new_ids[0]
        else:
            article_id = conn.execute(select(articles.c.id)
                                      .where(articles.c.identity == record["identity"])).scalar_one()
            existing = conn.execute(select(queue_items.c.id)
                                    .where(queue_items.c.article_id == article_id)).scalar()
            if existing:
                raise AlreadyQueued(int(existing))
        position = (conn.execute(select(func.max(queue_items.c.position))).scalar() or 0) + 1
        return int(conn.execute(insert(queue_items).values(
            article_id=article_id, state=state, position=position, note=note, added_by=added_by,
            created_at=now, updated_at=now)).inserted_primary_key[0])


def _record(ctx: Context, *, title: str, link: str | None, summary_html: str, text: str,
            source: str, image: str | None = None, author: str | None = None) -> dict[str, Any]:
    topics, score = score_text(f"{title}\n{title}\n{text}", ctx.config.topics)
    return {
        "identity": article_identity(None, link, title, text), "source": source,
        "title": title, "link": link, "author": author, "published_at": utcnow(),
        "summary_html": summary_html, "excerpt": excerpt(text, ctx.config.collect.excerpt_chars),
        "image_url": image, "image_alt": title, "tags": [], "topics": topics, "score": score,
        "content_hash": content_hash(title, text),
    }


def add_url(ctx: Context, url: str, *, approve: bool = False, note: str | None = None,
            added_by: str | None = None, **edits: Any) -> int:
    """Queue a web page; fields extracted from the page can be overridden by `edits`."""
    check_public_url(url, ctx.config.collect.allow_private_addresses)
    with make_session(ctx.config) as session:
        page = fetch(session, url, ctx.config)
    info = extract_page(page.body, page.final_url or url)
    title = edits.get("title") or info["title"]
    summary = edits.get("summary") or info["description"] or ""
    record = _record(ctx, title=title, link=page.final_url or url,
                     summary_html=sanitize_html(f"<p>{_escape(summary)}</p>"),
                     text=info["text"] or summary, source=edits.get("source") or info["site"],
                     image=edits.get("image") or info["image"], author=info["author"])
    return _add(ctx, record, "approved" if approve else "queued", note, added_by)


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def add_markdown(ctx: Context, title: str, markdown: str, *, link: str | None = None,
                 approve: bool = False, note: str | None = None, added_by: str | None = None) -> int:
    """Queue an original tip written in Markdown (rendered, then sanitised like feed HTML)."""
    if not title.strip():
        raise InvalidInput("a tip needs a title")
    rendered = MarkdownIt("commonmark", {"html": False}).render(markdown)
    summary_html = sanitize_html(rendered, ctx.config.site.base_url)
    record = _record(ctx, title=title.strip(), link=link, summary_html=summary_html,
                     text=html_to_text(summary_html), source=ctx.config.site.name)
    return _add(ctx, record, "approved" if approve else "queued", note, added_by)


def add_file(ctx: Context, title: str, path: Path, **kwargs: Any) -> int:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return add_markdown(ctx, title, text, **kwargs)


def list_items(ctx: Context, states: tuple[str, ...] = ("queued", "approved")) -> list[Any]:
    """Queue items in editor order: pinned first, then by position."""
    with ctx.engine.connect() as conn:
        return conn.execute(
            select(queue_items, articles.c.title, articles.c.link, articles.c.source,
                   articles.c.score, articles.c.topics)
            .join(articles, articles.c.id == queue_items.c.article_id)
            .where(queue_items.c.state.in_(states))
            .order_by(queue_items.c.pinned.desc(), queue_items.c.position, queue_items.c.id)
        ).all()


def _get(conn: Any, item_id: int) -> Any:
    row = conn.execute(select(queue_items).where(queue_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no queue item {item_id}")
    return row


def set_state(ctx: Context, item_id: int, state: str, note: str | None = None) -> None:
    if state not in ("queued", "approved", "rejected"):
        raise InvalidInput(f"cannot set state {state!r}")
    with ctx.engine.begin() as conn:
        row = _get(conn, item_id)
        if row.state == "used":
            raise StateError(f"item {item_id} was already used in an issue")
        values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
        if note is not None:
            values["note"] = note
        conn.execute(update(queue_items).where(queue_items.c.id == item_id).values(**values))


def pin(ctx: Context, item_id: int, pinned: bool = True) -> None:
    with ctx.engine.begin() as conn:
        _get(conn, item_id)
        conn.execute(update(queue_items).where(queue_items.c.id == item_id)
                     .values(pinned=pinned, updated_at=utcnow()))


def move(ctx: Context, item_id: int, position: int) -> None:
    """Put an item at 1-based `position` among the open items; the others shift."""
    with ctx.engine.begin() as conn:
        _get(conn, item_id)
        ids = [r.id for r in conn.execute(
            select(queue_items.c.id).where(queue_items.c.state.in_(("queued", "approved")))
            .order_by(queue_items.c.position, queue_items.c.id))]
        if item_id in ids:
            ids.remove(item_id)
        ids.insert(max(0, min(position - 1, len(ids))), item_id)
        for pos, qid in enumerate(ids, start=1):
            conn.execute(update(queue_items).where(queue_items.c.id == qid).values(position=pos))
