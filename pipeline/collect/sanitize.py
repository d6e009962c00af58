"""Feed HTML is hostile input: an allowlist sanitiser (nh3/ammonia) decides what survives."""

from __future__ import annotations

import html
import re
import threading
from typing import Any
from urllib.parse import urljoin

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "i", "img", "li", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup",
    "u", "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Elements whose text is never content: dropped with what they contain, not just unwrapped.
DROP_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "embed",
                     "svg", "math", "form", "select", "textarea", "title"}
_WS_RE = re.compile(r"\s+")
_BLOCK_RE = re.compile(r"<(/?)(p|div|br|li|h[1-6]|tr|td|th|blockquote|pre|figure|figcaption)\b", re.I)
# nh3's output is normalised (attributes double-quoted), so these can be simple.
_IMG_RE = re.compile(r"<img\b[^>]*>")
_DIM_RE = re.compile(r'\b(width|height)="\s*(\d+)')
_SRC_RE = re.compile(r'\bsrc="([^"]*)"')


_OPTIONS: dict[str, Any] = dict(
    tags=ALLOWED_TAGS, clean_content_tags=DROP_WITH_CONTENT - ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
    url_schemes=URL_SCHEMES, link_rel="noopener noreferrer nofollow", strip_comments=True)
# URLs on which urllib's urljoin gives what nh3 (the WHATWG URL standard) gives: plain ASCII
# that needs no percent-encoding, no empty path segment, no encoded dot, and a base with a
# lower-case host, no port and a path.
_PLAIN_URL = re.compile(r"[A-Za-z0-9._~!$&()*+,=:@%/?#-]*\Z")
_PLAIN_BASE = re.compile(r"https?://[a-z0-9.-]+/[A-Za-z0-9._~!$&()*+,=:@%/?-]*\Z")


def _plain(url: str) -> bool:
    return _PLAIN_URL.match(url) is not None and "//" not in url and "%2e" not in url.lower()


def _plain_base(base: str) -> bool:
    return _PLAIN_BASE.match(base) is not None and _plain(base[8:])  # past "https://"


class _Job(threading.local):
    """What `_resolve` needs to know of the fragment this thread is cleaning."""

    base: str | None = None
    unusual = False  # a relative URL that only nh3's own resolver gets right


_job = _Job()


def _resolve(url: str) -> str | None:
    """The shared cleaner's callback for a relative URL: made absolute by urljoin when that is
    what nh3 would give; anything else is left to a second, per-fragment pass."""
    if not _plain(url):
        _job.unusual = True
        return None
    base = _job.base
    if url[:1] == "/" and "/." not in url:  # a path from the root: urljoin would only prefix it
        return base[:base.index("/", 8)] + url
    full = urljoin(base, url)
    return full if full.startswith(("http://", "https://")) else None


# Built once: nh3.clean(**options) converts the allowlists and builds a cleaner on every call,
# two thirds of its cost on a feed summary.
_CLEANER = nh3.Cleaner(url_relative=_resolve, **_OPTIONS)
_TEXT_CLEANER = nh3.Cleaner(tags=set(), clean_content_tags=DROP_WITH_CONTENT, strip_comments=True)


def _absolutize(base_url: str | None) -> object:
    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr not in ("href", "src"):
            return value
        value = value.strip()
        absolute = value[:8].lower().startswith(("http://", "https://"))
        try:
            full = urljoin(base_url, value) if base_url and not absolute else value
        except ValueError:
            return None
        if not full.lower().startswith(("http://", "https://", "mailto:")):
            return None  # javascript:, data:, vbscript:, relative without a base...
        return full

    return attribute_filter


def _clean_per_fragment(fragment: str, base_url: str | None) -> str:
    """nh3 with this fragment's base: its resolver where it can parse the base, else Python's."""
    if base_url and base_url.startswith(("http://", "https://")):
        try:
            return nh3.clean(fragment, url_relative=("rewrite_with_base", base_url), **_OPTIONS)
        except ValueError:
            pass
    return nh3.clean(fragment, attribute_filter=_absolutize(base_url), **_OPTIONS)


def _is_pixel(img_tag: str) -> bool:
    """1x1 (or 0x0) images are tracking beacons, whatever their URL."""
    dims = {k: int(v) for k, v in _DIM_RE.findall(img_tag)}
    return any(v <= 1 for v in dims.values()) or not _SRC_RE.search(img_tag)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Allowlisted HTML: no script/style/iframe/form, no event handlers, no javascript:/data:
    URLs, no 1x1 tracking pixels; relative links made absolute against `base_url`.

    The common case (an ordinary http(s) base, relative URLs if any plain) takes a cleaner
    built once; the rest builds one for the fragment, at three times the cost."""
    if not fragment:
        return ""
    clean = None
    if base_url and _plain_base(base_url):
        _job.base, _job.unusual = base_url, False
        clean = _CLEANER.clean(fragment)
        if _job.unusual:
            clean = None
    return _without_pixels(clean if clean is not None else _clean_per_fragment(fragment, base_url))


def _without_pixels(clean: str) -> str:
    if "<img" in clean:
        clean = _IMG_RE.sub(lambda m: "" if _is_pixel(m.group(0)) else m.group(0), clean)
    return clean.strip()


def first_image(clean_html: str) -> str | None:
    """The first (non-pixel) image of sanitised HTML, used when a feed names no image."""
    for tag in _IMG_RE.findall(clean_html):
        src = _SRC_RE.search(tag)
        if src and src.group(1).startswith(("http://", "https://")):
            return html.unescape(src.group(1))
    return None


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment (script/style content dropped), whitespace folded."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return _WS_RE.sub(" ", fragment).strip()
    spaced = _BLOCK_RE.sub(r" <\1\2", fragment)  # block boundaries become word boundaries
    text = _TEXT_CLEANER.clean(spaced)
    return _WS_RE.sub(" ", html.unescape(text)).strip()


_TAG_RE = re.compile(r"<[^>]*>")
# nh3 writes tag names in lower case: no IGNORECASE needed on its output.
_CLEAN_BLOCK_RE = re.compile(r"</?(?:p|div|br|li|h[1-6]|tr|td|th|blockquote|pre|figure|figcaption)\b[^>]*>")


def clean_text(clean_html: str) -> str:
    """Visible text of HTML that `sanitize_html` produced (well-formed, nothing hidden in it):
    a regex is enough there and much cheaper than a second sanitiser pass."""
    text = _TAG_RE.sub("", _CLEAN_BLOCK_RE.sub(" ", clean_html))  # a block tag is a word break
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split())


def excerpt(text: str, limit: int) -> str:
    """Cut at a word boundary and mark the cut, so excerpts never end mid-word."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.-")
    return cut + "…"
