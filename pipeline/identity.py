"""Stable identity of an article: guid, else canonical link, else a content hash."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = {
    "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid", "yclid", "_ga",
    "ref", "ref_src", "spm", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "wickedid",
}


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop default ports, fragments and tracking parameters."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    if parts.port and not ((scheme == "http" and parts.port == 80)
                           or (scheme == "https" and parts.port == 443)):
        host = f"{host}:{parts.port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS]
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, urlencode(sorted(query)), ""))


def content_hash(title: str, text: str) -> str:
    norm = " ".join(f"{title}\n{text}".lower().split())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def article_identity(guid: str | None, link: str | None, title: str, text: str) -> str:
    """The key that makes one story stored once, whichever feed or re-publication it came from.

    A guid that is itself a URL is canonicalised like a link, so the same permalink used as
    guid by one feed and as link by another still matches.
    """
    if guid and guid.strip():
        g = guid.strip()
        if g.startswith(("http://", "https://")):
            return "url:" + canonical_url(g)[:290]
        return "guid:" + hashlib.sha256(g.encode()).hexdigest()
    if link and link.strip():
        return "url:" + canonical_url(link)[:290]
    return "hash:" + content_hash(title, text)
