"""Stable identity of an article: guid, else canonical link, else a content hash."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = {
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "igshid",
    "yclid", "twclid", "ttclid", "li_fat_id", "_ga", "_gl", "_hsenc", "_hsmi", "__s", "hsctatracking",
    "ref", "ref_src", "ref_url", "spm", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id",
    "vero_conv", "wickedid", "s_cid", "cmpid", "icid", "ncid", "sr_share", "at_medium",
    "at_campaign",
}
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hmb_")


def _keep_param(name: str) -> bool:
    low = name.lower()
    return not low.startswith(TRACKING_PREFIXES) and low not in TRACKING_PARAMS


def clean_url(url: str) -> str:
    """The link as published minus tracking parameters and fragment: what we store and mail."""
    url = url.strip()
    if "?" not in url and "#" not in url:
        return urlunsplit(urlsplit(url))  # nothing to strip: only normalise, as below
    parts = urlsplit(url)
    if _only_tracking(parts.query):  # "?utm_source=rss", as feeds write it: nothing to re-encode
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _keep_param(k)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _only_tracking(query: str) -> bool:
    """Whether every parameter of `query` is a tracking one, as its names stand (a name with
    an escape is left to parse_qsl)."""
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        if pair and (not name or "%" in name or "+" in name or _keep_param(name)):
            return False
    return True


def canonical_url(url: str) -> str:
    """The comparison form of a URL: http and https, `www.` or not, default ports, parameter
    order, tracking parameters and fragments all stop mattering."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    if scheme == "http":
        scheme = "https"  # the same page served both ways is one page
    host = (parts.hostname or "").lower().rstrip(".")
    host = host.removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _keep_param(k))
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def content_hash(title: str, text: str) -> str:
    norm = " ".join(f"{title}\n{text}".lower().split())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def article_identity(guid: str | None, link: str | None, title: str, text: str,
                     scope: str | int | None = None) -> str:
    """The key that makes one story stored once, whichever feed or re-publication it came from.

    A guid that is itself a URL is canonicalised like a link, so the same permalink used as
    guid by one feed and as link by another still matches. Any other guid is only unique
    within its feed ("1", "2"... are common), so it is scoped by `scope` (the feed id).
    """
    g = (guid or "").strip()
    if g:
        if g.startswith(("http://", "https://")):
            return "url:" + _bounded(canonical_url(g))
        return "guid:" + hashlib.sha256(f"{scope}\n{g}".encode()).hexdigest()
    if link and link.strip():
        return "url:" + _bounded(canonical_url(link))
    return "hash:" + content_hash(title, text)


def _bounded(url: str) -> str:
    """Identity column is 300 chars; very long URLs keep a prefix plus a hash of the rest."""
    if len(url) <= 290:
        return url
    return url[:225] + "#" + hashlib.sha256(url.encode()).hexdigest()
