"""Jinja2 + premailer, once per issue and content variant; never per recipient.

Templates render in Jinja2's immutable sandbox: the templates folder is a setting, so an
operator may point it at files that editors can change, and a template must not be able
to reach into Python. Article text is data, never template source.
"""

from __future__ import annotations

import logging
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from premailer import Premailer

from core.config import Config
from pipeline.collect.sanitize import excerpt, html_to_text
from pipeline.compose.personalize import Personalizer, Placeholders, defuse

log = logging.getLogger(__name__)
_IMG_RE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")
# Representative per-recipient values, to measure the HTML a reader actually receives.
_SAMPLE_VALUES = {"unsubscribe_url": "https://" + "u" * 120, "preferences_url": "https://" + "p" * 120,
                  "name": "N" * 40, "email": "e" * 60, "greeting": "Hello " + "N" * 40 + ","}


@dataclass
class Rendered:
    html: str  # CSS inlined, with recipient placeholders
    text: str
    subject: str
    preheader: str
    html_bytes: int  # as a reader receives it: placeholders filled with long sample values
    notes: list[str] = field(default_factory=list)  # what was trimmed to fit the size budget


def environment(cfg: Config) -> jinja2.Environment:
    """Autoescaping on for HTML; feed HTML enters only as the sanitised `summary` markup."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(cfg.templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"),
                                            default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    env.filters["oneline"] = oneline
    env.filters["long_date"] = lambda d: f"{d.day} {d:%B %Y}"
    env.filters["short_date"] = lambda d: f"{d.day} {d:%b %Y}"
    env.filters["host"] = lambda url: urlsplit(url).hostname or url
    return env


def oneline(text: str | None) -> str:
    """Feed text may carry newlines and tabs; a title or source is one line."""
    return _WS_RE.sub(" ", text or "").strip()


def wrap(text: str | None, width: int = 78, indent: str = "") -> str:
    """Word-wrap for the text part; URLs and long words are never broken."""
    return "\n".join(textwrap.wrap(oneline(text), width=width, initial_indent=indent,
                                   subsequent_indent=indent, break_long_words=False,
                                   break_on_hyphens=False))


def inline_css(html: str) -> str:
    """Inline CSS for mail clients that drop <style>; media queries stay in a style block.
    Network access is off: a template can never make premailer fetch anything."""
    return Premailer(
        html, allow_network=False, keep_style_tags=False, remove_classes=False,
        strip_important=False, cssutils_logging_level=logging.CRITICAL,
        disable_validation=True, cache_css_parsing=True,
        disable_basic_attributes=["width", "height"],  # keep the templates' explicit pixel widths
    ).transform(pretty_print=False)


def _web_link(url: str | None) -> str | None:
    """An http(s) URL with a host, else None (a `javascript:` or malformed link is dropped)."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def article_view(a: dict[str, Any], cfg: Config, key: str,
                 links: Mapping[int, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """What a template sees of one article: one-line title, a summary that fits the
    digest (the sanitised markup when short, else a plain excerpt), images only as the
    article's own picture with alt text. `links` maps article ids to their counted `link`
    and `more` / `less` vote links (pipeline.measure.links); `url` stays the article's
    own address."""
    title = defuse(oneline(a.get("title")) or "(untitled)", key)
    summary_html = _IMG_RE.sub("", a.get("summary_html") or "").strip()
    plain = html_to_text(summary_html) or a.get("excerpt") or ""
    if len(plain) > cfg.digest.summary_chars:
        summary_html = ""
    text = excerpt(oneline(plain), cfg.digest.summary_chars)
    image = _web_link(a.get("image_url"))
    url = _web_link(a.get("link"))
    counted = links.get(a["id"], {}) if links and url and "id" in a else {}
    return {
        "title": title,
        "link": counted.get("link") or url,
        "url": url,
        "more_url": counted.get("more"),
        "less_url": counted.get("less"),
        "source": defuse(oneline(a.get("source")), key),
        "published_at": a.get("published_at"),
        "summary_html": defuse(summary_html, key),
        "summary_text": defuse(text, key),
        "image_url": image,
        "image_alt": defuse(oneline(a.get("image_alt")) or title, key) if image else "",
        "topics": a.get("topics") or [],
        "picked_by": a.get("picked_by") or "feed",
        "section": a.get("section") or "",  # an editor pick's chosen topic section
    }


def sections(articles: list[dict[str, Any]], cfg: Config) -> list[dict[str, Any]]:
    """Editor picks first, then one section per configured topic in config order; an editor
    pick given a section leads that topic's section instead."""
    picks = [a for a in articles if a.get("picked_by") == "editor" and not a.get("section")]
    rest = [a for a in articles if a.get("picked_by") != "editor" or a.get("section")]
    out: list[dict[str, Any]] = []
    if picks:
        out.append({"slug": "editors-picks", "label": "Editor's picks", "articles": picks})
    for slug, topic in cfg.topics.items():
        chosen = [a for a in rest if (a.get("section") or (a.get("topics") or [None])[0]) == slug]
        if chosen:
            out.append({"slug": slug, "label": topic.label, "articles": chosen})
    leftover = [a for a in rest if (a.get("section") or (a.get("topics") or [None])[0])
                not in cfg.topics]
    if leftover:
        out.append({"slug": "more", "label": "More reading", "articles": leftover})
    return out


def received_bytes(html: str, key: str) -> int:
    """The HTML's size once long per-recipient values replace its placeholders."""
    return len(Personalizer(html, key).fill(_SAMPLE_VALUES).encode("utf-8"))


def render_issue(cfg: Config, *, number: int, date: datetime, subject: str, intro: str,
                 articles: list[dict[str, Any]], key: str, web_url: str,
                 links: Mapping[int, Mapping[str, str]] | None = None) -> Rendered:
    """Render the HTML and text parts of one variant and fit the HTML in the size budget:
    first the longest summaries become short excerpts, then the last items go."""
    env = environment(cfg)
    items = [article_view(a, cfg, key, links) for a in articles]
    notes: list[str] = []
    budget = cfg.digest.max_html_bytes
    while True:
        ctx = _context(cfg, number=number, date=date, subject=subject, intro=intro,
                       articles=items, key=key, web_url=web_url)
        html = inline_css(env.get_template("email/digest.html.j2").render(ctx))
        size = received_bytes(html, key)
        if size <= budget or not items:
            break
        notes += _trim(items, excess=size - budget, budget=budget, per_item=size // len(items))
    for note in notes:
        log.warning("issue %s: %s", number, note)
    text = env.get_template("email/digest.txt.j2").render(ctx)
    return Rendered(html=html, text=text, subject=subject, preheader=ctx["preheader"],
                    html_bytes=size, notes=notes)


def _trim(items: list[dict[str, Any]], *, excess: int, budget: int, per_item: int) -> list[str]:
    """Estimate what saves `excess` bytes; the caller renders again to be sure."""
    notes: list[str] = []
    saved = 0
    for a in sorted(items, key=lambda a: -(len(a["summary_html"]) + len(a["summary_text"]))):
        length = len(a["summary_html"]) + len(a["summary_text"])
        if saved >= excess or length <= 200:
            break
        a["summary_html"] = ""
        a["summary_text"] = excerpt(a["summary_text"], 120)
        saved += length - len(a["summary_text"])
        notes.append(f"shortened the summary of {a['title']!r} to stay under {budget} bytes")
    if not notes:
        while items and saved < excess:
            dropped = items.pop()
            saved += max(per_item, 1)
            notes.append(f"left out {dropped['title']!r} to stay under {budget} bytes")
    return notes


def preheader(articles: list[dict[str, Any]]) -> str:
    """The preview line: the first headlines, so an inbox list shows what is inside."""
    titles = [a["title"] for a in articles[:3]]
    more = len(articles) - len(titles)
    line = " · ".join(titles)
    return excerpt(line + (f" and {more} more" if more > 0 else ""), 140)


def _context(cfg: Config, *, number: int, date: datetime, subject: str, intro: str,
             articles: list[dict[str, Any]], key: str, web_url: str) -> dict[str, Any]:
    local = date.astimezone(ZoneInfo(cfg.schedule.timezone)) if date.tzinfo else date
    return {
        "site": cfg.site,
        "brand": cfg.brand,
        "sender": cfg.sender,
        "issue": {"number": number, "date": local, "subject": defuse(subject, key),
                  "intro": defuse(intro or "", key), "web_url": web_url},
        "sections": sections(articles, cfg),
        "articles": articles,
        "preheader": preheader(articles),
        "recipient": Placeholders(key),
    }


def render_confirm(cfg: Config, *, confirm_url: str, name: str = "",
                   env: jinja2.Environment | None = None) -> tuple[str, str]:
    """Subject and plain-text body of the double opt-in email: no advertising, one link.
    `env`: an environment kept by a caller that renders many (the lane)."""
    text = (env or environment(cfg)).get_template("email/confirm.txt.j2").render(
        site=cfg.site, confirm_url=confirm_url, name=oneline(name),
        hours=cfg.web.confirm_expiry_hours)
    return f"Confirm your subscription to {oneline(cfg.site.name)}", text
