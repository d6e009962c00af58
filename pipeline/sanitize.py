"""Feed HTML is hostile input: an allowlist sanitiser (nh3/ammonia) decides what survives."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "i", "img", "li", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup",
    "u", "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
URL_SCHEMES = {"http", "https", "mailto"}
_TAG_RE = re.compile(r"<[^>]+>")
_WS_RE = re.compile(r"\s+")
_PIXEL_RE = re.compile(
    r"<img\b[^>]*\b(?:width|height)=[\"']?[01](?:px)?[\"']?[^>]*>", re.IGNORECASE)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Allowlisted HTML: no script/style/iframe/form, no event handlers, no javascript:/data:
    URLs, no 1x1 tracking pixels; relative links made absolute against `base_url`."""
    if not fragment:
        return ""
    without_pixels = _PIXEL_RE.sub("", fragment)

    def absolutize(tag: str, attr: str, value: str) -> str | None:
        if attr in ("href", "src"):
            full = urljoin(base_url, value) if base_url else value
            if not full.lower().startswith(("http://", "https://", "mailto:")):
                return None
            return full
        return value

    return nh3.clean(
        without_pixels,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
        attribute_filter=absolutize,
    ).strip()


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace folded."""
    text = _TAG_RE.sub(" ", fragment or "")
    return _WS_RE.sub(" ", html.unescape(text)).strip()


def excerpt(text: str, limit: int) -> str:
    """Cut at a word boundary and mark the cut, so excerpts never end mid-word."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.-")
    return cut + "…"
