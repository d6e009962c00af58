"""The editor queue: articles an editor adds by URL or writes in Markdown, then approves,
pins and orders. Approved items lead the next issue."""

from __future__ import annotations

import html
import ipaddress
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from core.context import Context
from core.db import new_id, utcnow
from core.errors import FetchError, InvalidInput, NotFound, StateError, UnsafeURL
from core.models import articles, queue_item_events, queue_items
from core.search import reindex_article
from pipeline.collect.dedupe import encode, group_pending, signature
from pipeline.collect.fetch import fetch, make_session
from pipeline.collect.identity import article_identity, clean_url, content_hash
from pipeline.collect.relevance import score_text
from pipeline.collect.sanitize import excerpt, html_to_text, sanitize_html
from pipeline.collect.store import store_articles

STATES = ("queued", "approved", "rejected", "used")
EDITABLE = {"title", "summary", "image", "source", "author", "published"}
DESK_EDITABLE = {"link", "markdown", "image_alt", "note", "section"}  # also, by the item page


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
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
        if not ip.is_global or ip.is_multicast:
            kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local
                    else "private" if ip.is_private else "non-public")
            raise UnsafeURL(f"refusing {url}: {parts.hostname} resolves to {ip}, a {kind} address "
                            "(set collect.allow_private_addresses = true to allow it)")


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


def parse_date(value: Any, now: datetime) -> datetime | None:
    """An editor's or a page's date (datetime or ISO text), in UTC and never in the future."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise InvalidInput(f"not a date: {value!r} (use YYYY-MM-DD)") from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return min(when.astimezone(UTC), now)


def _add(ctx: Context, record: dict[str, Any], state: str, note: str | None, added_by: str | None) -> int:
    now = utcnow()
    with ctx.engine.begin() as conn:
        _seen, new_ids = store_articles(conn, [record], None, origin="editor", now=now)
        group_pending(conn, ctx.config, now)
        if new_ids:
            article_id = new_ids[0]
        else:
            article_id = conn.execute(select(articles.c.id)
                                      .where(articles.c.identity == record["identity"])).scalar_one()
        return _enqueue(conn, article_id, state, note, added_by, now)


def _enqueue(conn: Connection, article_id: int, state: str, note: str | None, added_by: str | None,
             now: datetime) -> int:
    existing = conn.execute(select(queue_items.c.id).where(queue_items.c.article_id == article_id)).scalar()
    if existing:
        raise AlreadyQueued(int(existing))
    position = (conn.execute(select(func.max(queue_items.c.position))).scalar() or 0) + 1
    item_id = int(new_id(conn.execute(insert(queue_items).values(
        article_id=article_id, state=state, position=position, note=note, added_by=added_by,
        created_at=now, updated_at=now))))
    log_event(conn, item_id, added_by, "added", {"state": state}, now)
    return item_id


def log_event(conn: Connection, item_id: int, actor: str | None, action: str,
              detail: dict[str, Any], now: datetime | None = None) -> None:
    """One line of an item's history: who did what, when."""
    conn.execute(insert(queue_item_events).values(item_id=item_id, actor=actor, action=action,
                                                  detail=detail, created_at=now or utcnow()))


def history(ctx: Context, item_id: int) -> list[Any]:
    """An item's history, newest first."""
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(queue_item_events).where(queue_item_events.c.item_id == item_id)
                            .order_by(queue_item_events.c.id.desc()).limit(500)))


def render_markdown(markdown: str, base_url: str) -> str:
    """An editor's Markdown as sanitised HTML (raw HTML in it is shown as text)."""
    return sanitize_html(MarkdownIt("commonmark", {"html": False}).render(markdown), base_url)


def _scored(ctx: Context, title: str, text: str) -> dict[str, Any]:
    topics, score = score_text(f"{title}\n{title}\n{text}", ctx.config.topics)
    return {"topics": topics, "score": score, "content_hash": content_hash(title, text),
            "minhash": encode(signature(f"{title}\n{text}"))}


def _record(ctx: Context, *, title: str, link: str | None, summary_html: str, text: str,
            source: str, image: str | None = None, author: str | None = None,
            published: datetime | None = None) -> dict[str, Any]:
    return {
        "identity": article_identity(None, link, title, text), "source": source[:200],
        "title": title[:500], "link": link, "author": author, "published_at": published or utcnow(),
        "summary_html": summary_html,
        "excerpt": excerpt(html_to_text(summary_html) or text, ctx.config.collect.excerpt_chars),
        "image_url": image, "image_alt": title[:200], "tags": [], **_scored(ctx, title, text),
    }


def _text_html(text: str) -> str:
    """Plain text from a page or an editor, as sanitised paragraphs."""
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    return sanitize_html("".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paras))


def add_url(ctx: Context, url: str, *, approve: bool = False, note: str | None = None,
            added_by: str | None = None, **edits: Any) -> int:
    """Queue a web page; extracted fields can be overridden by `edits` (title, summary,
    image, source, author, published). Every hop of a redirect passes the SSRF guard."""
    unknown = set(edits) - EDITABLE
    if unknown:
        raise InvalidInput(f"cannot set {', '.join(sorted(unknown))}; "
                           f"editable: {', '.join(sorted(EDITABLE))}")
    allow = ctx.config.collect.allow_private_addresses
    check_public_url(url, allow)
    with make_session(ctx.config) as session:
        page = fetch(session, url, ctx.config, guard=lambda u: check_public_url(u, allow))
    final = clean_url(page.final_url or url)
    info = extract_page(page.body, final)
    now = utcnow()
    fields = {**{k: v for k, v in info.items() if v}, **{k: v for k, v in edits.items() if v}}
    summary = fields.get("summary") or fields.get("description") or ""
    record = _record(ctx, title=html_to_text(fields.get("title") or final), link=final,
                     summary_html=_text_html(summary), text=info["text"] or summary,
                     source=fields.get("source") or fields.get("site") or "",
                     image=image_url(fields.get("image"), final), author=fields.get("author"),
                     published=parse_date(fields.get("published") or fields.get("date"), now))
    return _add(ctx, record, "approved" if approve else "queued", note, added_by)


def image_url(value: str | None, base: str) -> str | None:
    """An image reference made absolute against `base`; None unless http(s)."""
    if not value:
        return None
    full = urljoin(base, value.strip())
    return full if full.startswith(("http://", "https://")) else None


def add_article(ctx: Context, article_id: int, *, approve: bool = False, note: str | None = None,
                added_by: str | None = None) -> int:
    """Queue an article already collected from a feed: the editor's way to pick a story the
    relevance score left out."""
    with ctx.engine.begin() as conn:
        if conn.execute(select(articles.c.id).where(articles.c.id == article_id)).scalar() is None:
            raise NotFound(f"no article {article_id}")
        return _enqueue(conn, article_id, "approved" if approve else "queued", note, added_by, utcnow())


def edit_item(ctx: Context, item_id: int, by: str | None = None, **fields: Any) -> None:
    """Change any field of a queued item's article; relevance is recomputed from the text.
    `markdown` replaces the summary with rendered Markdown (kept for editing again);
    `section` is a topic slug (or "" for the editors' picks). Changes go to the history."""
    unknown = set(fields) - EDITABLE - DESK_EDITABLE
    if unknown:
        raise InvalidInput(f"cannot edit {', '.join(sorted(unknown))}")
    if fields.get("section") and fields["section"] not in ctx.config.topics:
        raise InvalidInput(f"section: {fields['section']!r} is not a topic")
    now = utcnow()
    with ctx.engine.begin() as conn:
        item = _get(conn, item_id)
        if item.state == "used":
            raise StateError(f"item {item_id} was already used in an issue")
        art = conn.execute(select(articles).where(articles.c.id == item.article_id)).one()
        values = _article_changes(ctx, art, fields, now)
        own = _item_changes(item, fields)
        if values:
            conn.execute(update(articles).where(articles.c.id == art.id).values(**values))
            reindex_article(conn, art)
        conn.execute(update(queue_items).where(queue_items.c.id == item_id)
                     .values(updated_at=now, **own))
        changed = {k: [_shown(art._mapping.get(k)), _shown(v)] for k, v in values.items()
                   if k in SHOWN and art._mapping.get(k) != v}
        changed.update({k: [_shown(getattr(item, k)), _shown(v)] for k, v in own.items()
                        if k != "summary_markdown" and getattr(item, k) != v})
        if changed:
            log_event(conn, item_id, by, "edited", changed, now)


SHOWN = ("title", "excerpt", "image_url", "image_alt", "link", "source", "author")


def _shown(value: Any) -> str:
    return "" if value is None else str(value)[:300]


def _item_changes(item: Any, fields: dict[str, Any]) -> dict[str, Any]:
    own: dict[str, Any] = {}
    if "note" in fields:
        own["note"] = (fields["note"] or "").strip()[:1000] or None
    if "section" in fields:
        own["section"] = fields["section"] or None
    if fields.get("markdown") is not None:
        own["summary_markdown"] = fields["markdown"]
    return own


def _article_changes(ctx: Context, art: Any, fields: dict[str, Any],
                     now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if fields.get("title"):
        values["title"] = html_to_text(fields["title"])[:500]
        if not art.image_alt or art.image_alt == art.title:
            values["image_alt"] = values["title"][:200]
    if fields.get("markdown") is not None:
        values["summary_html"] = render_markdown(fields["markdown"], ctx.config.site.base_url)
    elif fields.get("summary") is not None:
        values["summary_html"] = _text_html(fields["summary"])
    if "summary_html" in values:
        values["excerpt"] = excerpt(html_to_text(values["summary_html"]),
                                    ctx.config.collect.excerpt_chars)
    for key in ("source", "author"):
        if fields.get(key) is not None:
            values[key] = str(fields[key])[:200]
    if "image" in fields:
        values["image_url"] = image_url(fields["image"], art.link or ctx.config.site.base_url)
    if fields.get("image_alt") is not None:
        values["image_alt"] = html_to_text(fields["image_alt"])[:200]
    if fields.get("published"):
        values["published_at"] = parse_date(fields["published"], now)
    if fields.get("link"):
        values["link"] = clean_url(fields["link"])
    if "title" in values or "summary_html" in values:
        text = html_to_text(values.get("summary_html", art.summary_html))
        values.update(_scored(ctx, values.get("title", art.title), text))
    return values


def add_markdown(ctx: Context, title: str, markdown: str, *, link: str | None = None,
                 approve: bool = False, note: str | None = None, added_by: str | None = None) -> int:
    """Queue an original tip written in Markdown (rendered, then sanitised like feed HTML)."""
    if not title.strip():
        raise InvalidInput("a tip needs a title")
    summary_html = render_markdown(markdown, ctx.config.site.base_url)
    record = _record(ctx, title=title.strip(), link=link, summary_html=summary_html,
                     text=html_to_text(summary_html), source=ctx.config.site.name)
    item_id = _add(ctx, record, "approved" if approve else "queued", note, added_by)
    with ctx.engine.begin() as conn:
        conn.execute(update(queue_items).where(queue_items.c.id == item_id)
                     .values(summary_markdown=markdown))
    return item_id


def add_file(ctx: Context, title: str, path: Path, **kwargs: Any) -> int:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return add_markdown(ctx, title, text, **kwargs)


def list_items(ctx: Context, states: tuple[str, ...] = ("queued", "approved")) -> list[Any]:
    """Queue items in editor order: pinned first, then by position."""
    with ctx.engine.connect() as conn:
        return list(conn.execute(
            _items_query().where(queue_items.c.state.in_(states))
            .order_by(queue_items.c.pinned.desc(), queue_items.c.position, queue_items.c.id)
        ))


def _items_query() -> Any:
    return select(queue_items, articles.c.title, articles.c.link, articles.c.source,
                  articles.c.score, articles.c.topics) \
        .join(articles, articles.c.id == queue_items.c.article_id)


def get_item(ctx: Context, item_id: int) -> Any:
    """One item as `list_items` shows it."""
    with ctx.engine.connect() as conn:
        row = conn.execute(_items_query().where(queue_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no queue item {item_id}")
    return row


def _get(conn: Any, item_id: int) -> Any:
    row = conn.execute(select(queue_items).where(queue_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no queue item {item_id}")
    return row


def set_state(ctx: Context, item_id: int, state: str, note: str | None = None,
              by: str | None = None) -> None:
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
        if row.state != state:
            log_event(conn, item_id, by, "state", {"from": row.state, "to": state})


def pin(ctx: Context, item_id: int, pinned: bool = True, by: str | None = None) -> None:
    with ctx.engine.begin() as conn:
        row = _get(conn, item_id)
        conn.execute(update(queue_items).where(queue_items.c.id == item_id)
                     .values(pinned=pinned, updated_at=utcnow()))
        if row.pinned != pinned:
            log_event(conn, item_id, by, "pinned", {"pinned": pinned})


def step(ctx: Context, item_id: int, delta: int, by: str | None = None) -> None:
    """Move an approved item `delta` places among the approved ones (the issue's order of
    editor picks); pinned items lead, so an item does not cross into the other group."""
    with ctx.engine.begin() as conn:
        row = _get(conn, item_id)
        if row.state != "approved":
            raise StateError(f"item {item_id} is {row.state}: only approved items have a place")
        order = conn.execute(select(queue_items.c.id, queue_items.c.pinned, queue_items.c.state)
                             .where(queue_items.c.state.in_(("queued", "approved")))
                             .order_by(queue_items.c.pinned.desc(), queue_items.c.position,
                                       queue_items.c.id)).all()
        approved = [r for r in order if r.state == "approved"]
        i = next(n for n, r in enumerate(approved) if r.id == item_id)
        j = i + delta
        if not 0 <= j < len(approved):
            return  # first or last already
        if approved[j].pinned != row.pinned:
            raise StateError("pinned items lead the issue: pin or unpin it to cross that line")
        ids = [r.id for r in order]
        a, b = ids.index(item_id), ids.index(approved[j].id)
        ids[a], ids[b] = ids[b], ids[a]
        for pos, qid in enumerate(ids, start=1):
            conn.execute(update(queue_items).where(queue_items.c.id == qid).values(position=pos))
        log_event(conn, item_id, by, "moved", {"position": j + 1})


def move(ctx: Context, item_id: int, position: int, by: str | None = None) -> None:
    """Put an item at 1-based `position` among the open items; the others shift."""
    with ctx.engine.begin() as conn:
        _get(conn, item_id)
        log_event(conn, item_id, by, "moved", {"position": position})
        ids = [r.id for r in conn.execute(
            select(queue_items.c.id).where(queue_items.c.state.in_(("queued", "approved")))
            .order_by(queue_items.c.position, queue_items.c.id))]
        if item_id in ids:
            ids.remove(item_id)
        ids.insert(max(0, min(position - 1, len(ids))), item_id)
        for pos, qid in enumerate(ids, start=1):
            conn.execute(update(queue_items).where(queue_items.c.id == qid).values(position=pos))


FIELD_NAMES = {"title": "title", "excerpt": "summary", "image_url": "image", "image_alt": "image alt text",
               "link": "link", "source": "source", "author": "author", "note": "note",
               "section": "section"}
STATE_WORDS = {"queued": "put it back in the queue", "approved": "approved it",
               "rejected": "rejected it (never in a digest)"}


def describe(event: Any) -> str:
    """An item's history line in plain words (without who and when)."""
    d = event.detail or {}
    if event.action == "added":
        return "added it" + (", approved" if d.get("state") == "approved" else "")
    if event.action == "state":
        return STATE_WORDS.get(d.get("to", ""), f"set it to {d.get('to')}")
    if event.action == "pinned":
        return "pinned it to the top" if d.get("pinned") else "unpinned it"
    if event.action == "moved":
        return f"moved it to position {d.get('position')}"
    parts = [f"{FIELD_NAMES.get(k, k)} from “{excerpt(old, 60) or 'nothing'}” to "
             f"“{excerpt(new, 60) or 'nothing'}”" for k, (old, new) in sorted(d.items())]
    return "changed " + "; ".join(parts)
