"""feedparser entries -> article records (sanitised, identified, scored, signed for dedupe)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from kpdigest.config import Config
from kpdigest.errors import FetchError
from pipeline.fastfeed import fast_parse
from pipeline.identity import article_identity, clean_url, content_hash
from pipeline.minhash import encode, signature
from pipeline.relevance import score_text
from pipeline.sanitize import clean_text, excerpt, first_image, html_to_text, sanitize_html

# Bozo reasons that only say the declared encoding was wrong or missing: the text is fine.
_HARMLESS_BOZO = ("CharacterEncodingOverride", "NonXMLContentType")


@dataclass
class Parsed:
    title: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None
    raw_entries: int = 0
    known: int = 0  # entries skipped because their identity is already stored


def parse_feed(body: bytes, headers: dict[str, str], base_url: str, cfg: Config,
               source: str, now: datetime, scope: int | None = None,
               known: frozenset[str] = frozenset()) -> Parsed:
    """Parse bytes with the response headers (they carry the encoding).

    A malformed ("bozo") feed that still yields entries keeps them; the problem is returned
    as a warning. A document with no feed in it at all is an error. Plain, well-formed RSS 2.0
    and Atom 1.0 take `pipeline.fastfeed` (same result, a fifth of the time) unless
    `collect.fast_parser` is off. Entries whose guid or link gives an identity in `known`
    (this feed's stored articles) are counted, not rebuilt: a changed feed usually brings
    one new entry among fifty, and sanitising and signing the other 49 would be waste.
    """
    parsed = fast_parse(body, headers) if cfg.collect.fast_parser else None
    if parsed is None:
        parsed = feedparser.parse(body, response_headers={k.lower(): v for k, v in headers.items()},
                                  sanitize_html=False, resolve_relative_uris=False)
    warning = None
    if parsed.bozo:
        exc = parsed.get("bozo_exception")
        warning = f"{exc.__class__.__name__}: {exc}"[:500]
    if not parsed.entries and not parsed.get("version"):
        kind = headers.get("Content-Type") or headers.get("content-type") or "unknown type"
        raise FetchError(f"not a readable feed ({kind}; {warning or 'no feed elements'})"[:500])
    feed_link = _link(parsed.feed.get("link"), base_url) or base_url
    entries = []
    skipped = 0
    for raw in parsed.entries:
        if known and quick_identity(raw, feed_link, scope) in known:
            skipped += 1
            continue
        record = entry_record(raw, feed_link, cfg, source, now, scope)
        if record:
            entries.append(record)
    return Parsed(title=html_to_text(parsed.feed.get("title", ""))[:200], entries=entries,
                  warning=warning, raw_entries=len(parsed.entries), known=skipped)


_worker_config: Config | None = None


def init_worker(cfg: Config) -> None:
    """Parser-process initialiser: the configuration crosses once per process, not per feed."""
    global _worker_config
    _worker_config = cfg


def parse_in_worker(body: bytes, headers: dict[str, str], base_url: str, source: str,
                    now: datetime, scope: int | None = None, known: frozenset[str] = frozenset()) -> Parsed:
    """`parse_feed` with the configuration `init_worker` left in this process."""
    assert _worker_config is not None, "init_worker was not run in this process"
    return parse_feed(body, headers, base_url, _worker_config, source, now, scope, known)


def is_harmless(warning: str | None) -> bool:
    """A warning that only says the declared encoding was wrong: nothing an editor must fix."""
    return bool(warning and warning.startswith(_HARMLESS_BOZO))


def _link(value: Any, base: str) -> str | None:
    """An absolute http(s) URL for a feed's link value (resolved against `base`), or None."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if not _plainly_absolute(value):
        try:
            value = urljoin(base, value)
        except ValueError:  # "http://[bad": no link rather than no feed
            return None
    if not value.startswith(("http://", "https://")):
        return None
    try:
        return clean_url(value)
    except ValueError:
        return None


def _plainly_absolute(url: str) -> bool:
    """Whether urljoin would give `url` back up to what `clean_url` normalises anyway: http(s)
    with a host, and no ";" (urljoin drops an empty ";params")."""
    host_at = 7 if url.startswith("http://") else 8 if url.startswith("https://") else 0
    return bool(host_at) and url[host_at:host_at + 1] not in ("", "/", "?", "#") and ";" not in url


def _date(raw: Any, now: datetime) -> datetime | None:
    """published, else updated, else created; a date in the future is clamped to now."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(raw, key)  # feedparser's own get() maps updated to published, with a warning
        if value:
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, TypeError):
                continue
            return min(when, now)
    return None


def _is_image(item: Any, key: str) -> bool:
    if key == "media_thumbnail":
        return True
    kind = str(item.get("type") or "")
    return kind.startswith("image/") or (not kind and item.get("medium", "image") == "image")


def _image(raw: Any, base: str, clean_html: str) -> str | None:
    """media:content, media:thumbnail, an image enclosure, else the first image in the text."""
    for key in ("media_content", "media_thumbnail"):
        for item in raw.get(key) or []:
            url = _link(item.get("url"), base)
            if url and _is_image(item, key):
                return url
    for enc in raw.get("enclosures") or []:
        if str(enc.get("type", "")).startswith("image/"):
            url = _link(enc.get("href"), base)
            if url:
                return url
    return first_image(clean_html)


def _author(raw: Any) -> str | None:
    detail = raw.get("author_detail") or {}
    name = detail.get("name") or raw.get("author")
    if not name:
        return None
    return html_to_text(str(name))[:200] or None


def _guid_and_link(raw: Any, base_url: str) -> tuple[str | None, str | None]:
    guid = raw.get("id") if isinstance(raw.get("id"), str) else None
    link = _link(raw.get("link"), base_url) or (_link(guid, base_url) if guid and "://" in guid else None)
    return guid, link


def quick_identity(raw: Any, base_url: str, scope: int | None = None) -> str | None:
    """The entry's identity when its guid or link decides it (as `entry_record` would
    compute it), without the costly rest; None when only its content can tell."""
    guid, link = _guid_and_link(raw, base_url)
    if not (guid and guid.strip()) and not (link and link.strip()):
        return None
    return article_identity(guid, link, "", "", scope=scope)


def entry_record(raw: Any, base_url: str, cfg: Config, source: str, now: datetime,
                 scope: int | None = None) -> dict[str, Any] | None:
    """One article record from one feed entry, or None if it has neither title nor link."""
    guid, link = _guid_and_link(raw, base_url)
    body = ""
    if raw.get("content"):
        body = raw["content"][0].get("value", "") or ""
    summary_src = raw.get("summary") or body
    base = link or base_url
    title = html_to_text(raw.get("title", ""))
    if not title and not link:
        return None
    title = title or link or ""
    summary_html = sanitize_html(summary_src, base)
    body_html = sanitize_html(body, base) if body and body is not summary_src else summary_html
    full_text = clean_text(body_html)
    summary_text = clean_text(summary_html) if body_html is not summary_html else full_text
    topics, score = score_text(f"{title}\n{title}\n{full_text}", cfg.topics)
    return {
        "identity": article_identity(guid, link, title, full_text, scope=scope),
        "source": source[:200],
        "title": title[:500],
        "link": link,
        "author": _author(raw),
        "published_at": _date(raw, now),
        "summary_html": summary_html,
        "excerpt": excerpt(summary_text or full_text, cfg.collect.excerpt_chars),
        "image_url": _image(raw, base, body_html),
        "image_alt": title[:200],
        "tags": [html_to_text(str(t.get("term")))[:100] for t in raw.get("tags") or [] if t.get("term")][:20],
        "topics": topics,
        "score": score,
        "content_hash": content_hash(title, full_text),
        "minhash": encode(signature(f"{title}\n{full_text}")),
    }
