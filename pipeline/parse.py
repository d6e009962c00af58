"""feedparser entries -> article records (sanitised, identified, scored)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from kpdigest.config import Config
from kpdigest.errors import FetchError
from pipeline.identity import article_identity, content_hash
from pipeline.relevance import score_text
from pipeline.sanitize import excerpt, html_to_text, sanitize_html


@dataclass
class Parsed:
    title: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None


def parse_feed(body: bytes, headers: dict[str, str], base_url: str, cfg: Config,
               source: str, now: datetime) -> Parsed:
    """Parse bytes with the response headers (they carry the encoding).

    A malformed ("bozo") feed that still yields entries keeps them; the problem is returned
    as a warning. A document with no feed in it at all is an error.
    """
    parsed = feedparser.parse(body, response_headers={k.lower(): v for k, v in headers.items()},
                              sanitize_html=False, resolve_relative_uris=False)
    warning = None
    if parsed.bozo:
        warning = f"{parsed.bozo_exception.__class__.__name__}: {parsed.bozo_exception}"[:500]
    if not parsed.entries and (parsed.bozo or not parsed.get("version")):
        raise FetchError(f"not a readable feed ({warning or 'no feed elements'})")
    feed_link = parsed.feed.get("link") or base_url
    entries = [e for e in (entry_record(raw, feed_link, cfg, source, now) for raw in parsed.entries) if e]
    return Parsed(title=parsed.feed.get("title", ""), entries=entries, warning=warning)


def _date(raw: Any, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = raw.get(key)
        if value:
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError):
                continue
            return min(when, now)  # a date in the future is clamped to now
    return None


def _image(raw: Any, summary_html: str) -> str | None:
    for key in ("media_content", "media_thumbnail"):
        for item in raw.get(key) or []:
            url = item.get("url")
            if url and (key == "media_thumbnail" or item.get("medium", "image") == "image"
                        or str(item.get("type", "")).startswith("image/")):
                return url
    for enc in raw.get("enclosures") or []:
        if str(enc.get("type", "")).startswith("image/") and enc.get("href"):
            return enc["href"]
    start = summary_html.find("<img ")
    if start != -1:
        src = summary_html.find('src="', start)
        if src != -1:
            return summary_html[src + 5: summary_html.find('"', src + 5)]
    return None


def entry_record(raw: Any, base_url: str, cfg: Config, source: str,
                 now: datetime) -> dict[str, Any] | None:
    """One article record from one feed entry, or None if it has neither title nor link."""
    link = raw.get("link")
    body = ""
    if raw.get("content"):
        body = raw["content"][0].get("value", "")
    summary_src = raw.get("summary") or body
    summary_html = sanitize_html(summary_src, link or base_url)
    full_text = html_to_text(body or summary_src)
    title = html_to_text(raw.get("title", "")) or (link or "")
    if not title and not link:
        return None
    topics, score = score_text(f"{title}\n{title}\n{full_text}", cfg.topics)
    image = _image(raw, summary_html)
    return {
        "identity": article_identity(raw.get("id"), link, title, full_text),
        "source": source,
        "title": title[:500],
        "link": link,
        "author": raw.get("author"),
        "published_at": _date(raw, now),
        "summary_html": summary_html,
        "excerpt": excerpt(html_to_text(summary_src) or full_text, cfg.collect.excerpt_chars),
        "image_url": image if image and image.startswith(("http://", "https://")) else None,
        "image_alt": title[:200],
        "tags": [t.get("term") for t in raw.get("tags") or [] if t.get("term")][:20],
        "topics": topics,
        "score": score,
        "content_hash": content_hash(title, full_text),
        "_text": full_text,
    }
