"""Jinja2 + premailer, once per issue and content variant; never per recipient."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from premailer import Premailer

from kpdigest.config import Config
from pipeline.personalize import Placeholders
from pipeline.sanitize import excerpt

log = logging.getLogger(__name__)


@dataclass
class Rendered:
    html: str  # CSS inlined, with recipient placeholders
    text: str
    subject: str
    preheader: str
    html_bytes: int
    notes: list[str] = field(default_factory=list)  # what was trimmed to fit the size budget


def environment(cfg: Config) -> jinja2.Environment:
    """Autoescaping on for HTML; feed HTML enters only via the `|safe` of sanitised summaries."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(cfg.templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"),
                                            default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = _wrap
    return env


def _wrap(text: str, width: int = 78, indent: str = "") -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text or "", width=width, initial_indent=indent,
                                   subsequent_indent=indent, break_long_words=False,
                                   break_on_hyphens=False))


def inline_css(html: str) -> str:
    """Inline CSS for mail clients that drop <style>; media queries stay in a style block.
    Network access is off: a template can never make premailer fetch anything."""
    return Premailer(
        html, allow_network=False, keep_style_tags=False, remove_classes=False,
        strip_important=False, cssutils_logging_level=logging.CRITICAL,
        disable_validation=True, cache_css_parsing=True,
    ).transform(pretty_print=False)


def sections(articles: list[dict[str, Any]], cfg: Config) -> list[dict[str, Any]]:
    """Editor picks first, then one section per configured topic in config order."""
    picks = [a for a in articles if a.get("picked_by") == "editor"]
    rest = [a for a in articles if a.get("picked_by") != "editor"]
    out: list[dict[str, Any]] = []
    if picks:
        out.append({"slug": "editors-picks", "label": "Editor's picks", "articles": picks})
    for slug, topic in cfg.topics.items():
        chosen = [a for a in rest if (a.get("topics") or [None])[0] == slug]
        if chosen:
            out.append({"slug": slug, "label": topic.label, "articles": chosen})
    leftover = [a for a in rest if not a.get("topics") or a["topics"][0] not in cfg.topics]
    if leftover:
        out.append({"slug": "more", "label": "More reading", "articles": leftover})
    return out


def render_issue(cfg: Config, *, number: int, date: datetime, subject: str, intro: str,
                 articles: list[dict[str, Any]], key: str, web_url: str) -> Rendered:
    """Render the HTML and text parts of one variant and fit the HTML in the size budget."""
    env = environment(cfg)
    items = [dict(a) for a in articles]
    notes: list[str] = []
    for attempt in range(40):
        ctx = _context(cfg, number=number, date=date, subject=subject, intro=intro,
                       articles=items, key=key, web_url=web_url)
        html = inline_css(env.get_template("email/digest.html.j2").render(ctx))
        size = len(html.encode("utf-8"))
        if size <= cfg.digest.max_html_bytes or not items:
            break
        longest = max(items, key=lambda a: len(a.get("summary_html") or ""))
        if attempt < 20 and len(longest.get("summary_html") or "") > 200:
            longest["summary_html"] = ""  # fall back to the plain excerpt
            longest["excerpt"] = excerpt(longest.get("excerpt") or "", 160)
            notes.append(f"shortened the summary of {longest['title']!r}")
        else:
            dropped = items.pop()
            notes.append(f"left out {dropped['title']!r} to stay under "
                         f"{cfg.digest.max_html_bytes} bytes")
    for note in notes:
        log.warning("issue %s: %s", number, note)
    text = env.get_template("email/digest.txt.j2").render(ctx)
    return Rendered(html=html, text=text, subject=subject, preheader=ctx["preheader"],
                    html_bytes=size, notes=notes)


def preheader(articles: list[dict[str, Any]]) -> str:
    titles = [a["title"] for a in articles[:3]]
    more = len(articles) - len(titles)
    line = " · ".join(titles)
    return excerpt(line + (f" and {more} more" if more > 0 else ""), 140)


def _context(cfg: Config, *, number: int, date: datetime, subject: str, intro: str,
             articles: list[dict[str, Any]], key: str, web_url: str) -> dict[str, Any]:
    return {
        "site": cfg.site,
        "sender": cfg.sender,
        "issue": {"number": number, "date": date, "subject": subject, "intro": intro,
                  "web_url": web_url},
        "sections": sections(articles, cfg),
        "articles": articles,
        "preheader": preheader(articles),
        "recipient": Placeholders(key),
        "summary_chars": cfg.digest.summary_chars,
    }
