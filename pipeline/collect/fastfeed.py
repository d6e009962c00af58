"""A fast path for the common case: well-formed RSS 2.0 or Atom 1.0 using only the elements
we read, parsed by libxml2 (lxml) into exactly the part of feedparser's result that
`pipeline.collect.parse` reads.

feedparser drives a Python SAX handler per element, most of a first collect's CPU. Most real
feeds are plain, well-formed RSS 2.0 or Atom 1.0, so those are read here at about a fifth of
the cost, with feedparser's own encoding detection (`convert_to_utf8`), text clean-ups and
date readers (the usual RFC 822 form with its arithmetic, read directly). Anything else
returns None and feedparser parses the document: an encoding problem, an XML error, a
DOCTYPE, `xml:base` or Content-Location, markup inside a text element, an element or
attribute we do not know, a repeated element whose order feedparser resolves.
`tests/test_fastfeed.py` holds the fast path to feedparser's answer on every document of the
feed corpus it accepts.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from typing import Any

from feedparser.datetimes import _parse_date as _feedparser_date
from feedparser.datetimes.rfc822 import _parse_date_rfc822
from feedparser.encodings import convert_to_utf8
from feedparser.mixin import _cp1252, _FeedParserMixin
from feedparser.urls import _urljoin
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
MEDIA = "{http://search.yahoo.com/mrss/}"
# Extension elements that say nothing feedparser maps to the fields we read.
IGNORED_ITEM = {"comments", "{http://wellformedweb.org/CommentAPI/}commentRss",
                "{http://purl.org/rss/1.0/modules/slash/}comments"}
IGNORED_CHANNEL = {"description", "language", "copyright", "managingEditor", "webMaster",
                   "pubDate", "lastBuildDate", "category", "generator", "docs", "ttl", "image",
                   "rating", "skipHours", "skipDays", "cloud", "textInput",
                   "{http://purl.org/rss/1.0/modules/syndication/}updatePeriod",
                   "{http://purl.org/rss/1.0/modules/syndication/}updateFrequency"}
IGNORED_FEED = {ATOM + n for n in ("updated", "subtitle", "author", "generator", "icon",
                                   "logo", "rights", "category", "contributor")}
# Namespaces whose item elements feedparser reads into no field we use.
HARMLESS_ITEM_NS = {"http://wellformedweb.org/commentapi/", "http://purl.org/rss/1.0/modules/slash/",
                    "http://rssnamespace.org/feedburner/ext/1.0"}
# Elements of these namespaces can name a feed's title or link; others in a channel cannot.
TITLED_NS = {ns.strip("{}") for ns in (ATOM, DC, MEDIA, "{http://purl.org/dc/terms/}")}
CORE_NS = {"", "http://www.w3.org/2005/atom"}  # RSS and Atom elements: never inert
KNOWN_NS = {uri.lower() for uri in _FeedParserMixin.namespaces}
KNOWN_PREFIXES = set(_FeedParserMixin.namespaces.values())
HTML_TYPES = {"text/html", "application/xhtml+xml"}
_EMAIL_RE = re.compile(r"(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|"
                       r"(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?")
_ENTITY_RE = re.compile("&([A-Za-z0-9_]+);")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                          remove_comments=True, remove_pis=True)


class Unsupported(Exception):
    """Something feedparser handles and this fast path does not: parse with feedparser."""


class FastParsed(dict):
    """The part of feedparser's result `pipeline.collect.parse` reads: feed, entries, version, bozo."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def fast_parse(body: bytes, headers: dict[str, str]) -> FastParsed | None:
    """feedparser's result for `body`, or None when only feedparser can tell."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "content-location" in lowered or b"<!DOCTYPE" in body[:4096] or b"xml:base" in body:
        return None
    state: dict[str, Any] = {}
    data = convert_to_utf8(lowered, body, state)
    if state.get("bozo") or not state.get("encoding"):
        return None
    try:
        root = etree.fromstring(data, _PARSER)
        if root.tag == "rss" and root.get("version") == "2.0" and not root.nsmap.get(None):
            return FastParsed(_rss(root), bozo=False, version="rss20")
        if root.tag == ATOM + "feed":
            return FastParsed(_atom(root), bozo=False, version="atom10")
    except (etree.XMLSyntaxError, Unsupported, ValueError):
        return None
    return None


def _fix(text: str) -> str:
    """feedparser's clean-ups of every text value: UTF-8 read as Latin-1, cp1252 controls
    (neither can change ASCII text, most of it)."""
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    return text.translate(_cp1252)


def _text(el: Any) -> str:
    if len(el):
        raise Unsupported(f"markup inside <{el.tag}>")
    return _fix((el.text or "").strip())


def _uri(value: str) -> str:
    """feedparser resolves URI elements against an empty base: that only drops extra slashes
    after the first "scheme://", so a URI without them is returned as it is."""
    start = value.find("://")
    if start == -1 or value[start + 3:start + 4] != "/":
        return value
    return _urljoin("", value)


def _link_text(el: Any) -> str:
    value = _uri(_text(el))
    if "&" not in value:
        return value
    return _ENTITY_RE.sub(r"&\g<1>", value.replace("&amp;", "&"))


_RFC822_DAY = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ")
# The form nearly every RSS feed writes ("Fri, 27 Nov 2026 14:46:42 +0000"), read here with
# feedparser's arithmetic; anything else goes to feedparser.
_RFC822 = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) "
                     r"(?:GMT|([+-])(\d\d)(\d\d))\Z")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}


def _parse_date(value: str) -> Any:
    """feedparser's date parser. It tries its W3C-DTF parser before RFC 822, which cannot read
    a date that starts with a day name ("Fri, 27 Nov 2026 ..."): those go to RFC 822 first."""
    plain = _RFC822.match(value)
    if plain and plain.group(2) in _MONTHS:
        day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = plain.groups()
        offset = 0 if sign is None else (int(tz_hours) * 60 + int(tz_minutes)) * (-1 if sign == "-" else 1)
        with contextlib.suppress(ValueError, OverflowError):  # 31 Feb: feedparser's other readers
            stamp = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
            return (stamp - timedelta(minutes=offset)).utctimetuple()
    if _RFC822_DAY.match(value):
        with contextlib.suppress(KeyError, OverflowError, ValueError, AttributeError):
            parsed = _parse_date_rfc822(value)
            if parsed and len(parsed) == 9:
                return parsed
    return _feedparser_date(value)


def _once(seen: set[str], tag: str) -> None:
    """feedparser resolves repeats by document order and depth; leave those to it."""
    if tag in seen:
        raise Unsupported(f"repeated <{tag}>")
    seen.add(tag)


def _attrs(el: Any) -> dict[str, str]:
    """Attributes as feedparser keys them: no namespaced ones, rel and type lower-cased."""
    out = {}
    for key, value in el.attrib.items():
        if key.startswith("{"):
            raise Unsupported("namespaced attribute")
        out[key.lower()] = value.lower() if key.lower() in ("rel", "type") else value
    return out


def _rss(root: Any) -> dict[str, Any]:
    channels = [c for c in root if c.tag == "channel"]
    if len(channels) != 1 or len(root) != 1:
        raise Unsupported("not one channel")
    feed: dict[str, Any] = {}
    entries = []
    seen: set[str] = set()
    for el in channels[0]:
        tag = el.tag
        if tag == "item":
            entries.append(_rss_item(el))
        elif tag in ("title", "link"):
            _once(seen, tag)
            feed[tag] = _text(el) if tag == "title" else _ENTITY_RE.sub(r"&\g<1>", _uri(_text(el)))
        elif tag == ATOM + "link":
            if _attrs(el).get("rel", "alternate") == "alternate":
                raise Unsupported("atom:link alternate in a channel")
        elif tag not in IGNORED_CHANNEL and not _inert_in_channel(el):
            raise Unsupported(f"channel element {tag}")
    return {"feed": feed, "entries": entries}


def _rss_item(item: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    seen: set[str] = set()
    guid_is_link = False
    for el in item:
        tag = el.tag
        if tag in IGNORED_ITEM or (isinstance(tag, str) and tag[:1] == "{" and _inert_in_item(el)):
            continue
        if tag not in ("category", "enclosure", MEDIA + "content", MEDIA + "thumbnail"):
            _once(seen, "author" if tag == DC + "creator" else tag)  # one author, either way
        if tag == "title":
            entry["title"] = _text(el)
        elif tag == "link":
            entry["link"] = _link_text(el)
        elif tag == "guid":
            guid_is_link = _attrs(el).get("ispermalink", "true") == "true"
            entry["id"] = _uri(_text(el)) if guid_is_link else _text(el)
        elif tag == "description":
            entry["summary"] = _text(el)
        elif tag == CONTENT + "encoded":
            entry["content"] = [{"value": _text(el), "type": "text/html"}]
        elif tag in ("pubDate", DC + "date"):
            key = "published" if tag == "pubDate" else "updated"
            entry[key] = _text(el)
            entry[key + "_parsed"] = _parse_date(entry[key])
        elif tag in ("author", DC + "creator"):
            _rss_author(entry, _text(el))
        elif tag == "category":
            _tag(entry, _text(el) or None, _attrs(el).get("domain"), None)
        elif tag == "enclosure":
            attrs = _attrs(el)
            attrs["href"] = attrs.pop("url", attrs.get("href", ""))
            entry.setdefault("enclosures", []).append(attrs)
        elif tag in (MEDIA + "content", MEDIA + "thumbnail"):
            _media(entry, el)
        else:
            raise Unsupported(f"item element {tag}")
    return _fallbacks(entry, id_is_link=guid_is_link)


def _namespace(el: Any) -> str:
    if not isinstance(el.tag, str):
        return ""  # comments and processing instructions are removed by the parser anyway
    return el.tag[1:].split("}", 1)[0].lower() if el.tag.startswith("{") else ""


def _all_namespaced(el: Any) -> bool:
    """No RSS or Atom element hides inside (feedparser would read an inner <title> as the
    feed's). Namespaces compare lower-cased, as feedparser compares them."""
    return all(_namespace(d) not in CORE_NS for d in el.iterdescendants())


def _inert_in_channel(el: Any) -> bool:
    """An extension element at channel level that cannot set the feed's title or link."""
    ns = _namespace(el)
    if ns in CORE_NS or (el.tag.lower().endswith("}title") and ns in TITLED_NS):
        return False
    return _all_namespaced(el)


def _inert_in_item(el: Any) -> bool:
    """An item element feedparser has no handler for (unknown namespace and prefix), or one
    of a namespace whose handlers fill no field we read."""
    ns = _namespace(el)
    if ns in HARMLESS_ITEM_NS:
        return _all_namespaced(el)
    if ns in CORE_NS or ns in KNOWN_NS or el.prefix in KNOWN_PREFIXES:
        return False
    return _all_namespaced(el)


def _fallbacks(entry: dict[str, Any], id_is_link: bool) -> dict[str, Any]:
    """As feedparser: content stands in for a missing summary, a permalink id for the link."""
    if "summary" not in entry and "content" in entry:
        entry["summary"] = entry["content"][0]["value"]
    if id_is_link and "link" not in entry and "id" in entry:
        entry["link"] = entry["id"]
    return entry


def _rss_author(entry: dict[str, Any], author: str) -> None:
    """feedparser's `_sync_author_detail` for a one-string author ("jo@x.org (Jo)")."""
    entry["author"] = author
    email = None
    match = _EMAIL_RE.search(author)
    if match:
        email = match.group(0)
        author = author.replace(email, "").replace("()", "").replace("<>", "").replace("&lt;&gt;", "")
        author = author.strip()
        if author and author[0] == "(":
            author = author[1:]
        if author and author[-1] == ")":
            author = author[:-1]
        author = author.strip()
    detail = {}
    if author:
        detail["name"] = author
    if email:
        detail["email"] = email
    if detail:
        entry["author_detail"] = detail


def _tag(entry: dict[str, Any], term: str | None, scheme: str | None, label: str | None) -> None:
    tags = entry.setdefault("tags", [])
    value = {"term": term, "scheme": scheme, "label": label}
    if (term or scheme or label) and value not in tags:
        tags.append(value)


def _media(entry: dict[str, Any], el: Any) -> None:
    if len(el) or (el.text or "").strip():
        raise Unsupported("media element with content")
    key = "media_content" if el.tag.endswith("content") else "media_thumbnail"
    entry.setdefault(key, []).append(_attrs(el))


def _atom(root: Any) -> dict[str, Any]:
    feed: dict[str, Any] = {}
    entries = []
    seen: set[str] = set()
    for el in root:
        tag = el.tag
        if tag == ATOM + "entry":
            entries.append(_atom_entry(el))
        elif tag == ATOM + "title":
            _once(seen, tag)
            feed["title"] = _atom_text(el)
        elif tag == ATOM + "link":
            _atom_link(feed, el)
        elif tag == ATOM + "id":
            _once(seen, tag)
            feed["id"] = _uri(_text(el))
        elif tag not in IGNORED_FEED and not _inert_in_channel(el):
            raise Unsupported(f"feed element {tag}")
    if "link" not in feed and "id" in feed:
        feed["link"] = feed["id"]  # as for entries: an Atom id doubles as the link
    return {"feed": feed, "entries": entries}


def _atom_text(el: Any) -> str:
    kind = _attrs(el).get("type", "text")
    if kind not in ("text", "html", "text/plain", "text/html") or "src" in el.attrib:
        raise Unsupported(f"Atom text of type {kind}")
    return _text(el)


def _atom_link(context: dict[str, Any], el: Any) -> None:
    attrs = _attrs(el)
    href = attrs["href"] = _uri(attrs.get("href", ""))
    if not href or (el.text or "").strip() or len(el):
        raise Unsupported("Atom link without href")
    rel = attrs.get("rel", "alternate")
    kind = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
    if rel == "alternate" and kind in HTML_TYPES:
        context["link"] = href
    elif rel == "enclosure":
        context.setdefault("enclosures", []).append({**attrs, "rel": "enclosure"})


def _atom_entry(node: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    seen: set[str] = set()
    for el in node:
        tag = el.tag
        if tag not in (ATOM + "link", ATOM + "category", MEDIA + "content", MEDIA + "thumbnail"):
            _once(seen, tag)
        if tag == ATOM + "title":
            entry["title"] = _atom_text(el)
        elif tag == ATOM + "id":
            entry["id"] = _uri(_text(el))  # feedparser treats an Atom id as a permalink guid
        elif tag == ATOM + "link":
            _atom_link(entry, el)
        elif tag == ATOM + "summary":
            entry["summary"] = _atom_text(el)
        elif tag == ATOM + "content":
            entry["content"] = [{"value": _atom_text(el)}]
        elif tag in (ATOM + "published", ATOM + "updated"):
            key = tag[len(ATOM):]
            entry[key] = _text(el)
            entry[key + "_parsed"] = _parse_date(entry[key])
        elif tag == ATOM + "author":
            _atom_author(entry, el)
        elif tag == ATOM + "category":
            attrs = _attrs(el)
            if (el.text or "").strip() or len(el):
                raise Unsupported("category with content")
            _tag(entry, attrs.get("term"), attrs.get("scheme"), attrs.get("label"))
        elif tag in (MEDIA + "content", MEDIA + "thumbnail"):
            _media(entry, el)
        else:
            raise Unsupported(f"entry element {tag}")
    return _fallbacks(entry, id_is_link=True)  # feedparser treats an Atom id as a permalink guid


def _atom_author(entry: dict[str, Any], el: Any) -> None:
    detail = {}
    for part in el:
        name = part.tag[len(ATOM):] if part.tag.startswith(ATOM) else None
        if name not in ("name", "email", "uri") or name in detail:
            raise Unsupported(f"author element {part.tag}")
        detail[name if name != "uri" else "href"] = _text(part)
    if (el.text or "").strip():
        raise Unsupported("author text")
    name, email = detail.get("name"), detail.get("email")
    entry["author_detail"] = detail
    author = f"{name} ({email})" if name and email else name or email
    if author:
        entry["author"] = author
