"""Build small RSS documents for tests, with dates relative to now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape


def rss(title: str, items: list[dict[str, str]], link: str = "https://feed.example.com/") -> bytes:
    """items: dicts with title, link, guid, description (HTML), optional days_ago."""
    now = datetime.now(UTC)
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
             f"<title>{escape(title)}</title><link>{escape(link)}</link><description>t</description>"]
    for it in items:
        when = now - timedelta(days=float(it.get("days_ago", 1)))
        parts.append(
            "<item>"
            f"<title>{escape(it['title'])}</title>"
            + (f"<link>{escape(it['link'])}</link>" if it.get("link") else "")
            + (f'<guid isPermaLink="false">{escape(it["guid"])}</guid>' if it.get("guid") else "")
            + f"<pubDate>{format_datetime(when)}</pubDate>"
            f"<description>{escape(it.get('description', ''))}</description>"
            "</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


KP_ITEMS = [
    {"title": "Urea creams for keratosis pilaris compared", "link": "https://a.example.com/urea",
     "guid": "a-urea", "description": "<p>Urea softens KP bumps; lactic acid helps too.</p>"},
    {"title": "Chicken skin in winter", "link": "https://a.example.com/winter",
     "guid": "a-winter", "description": "<p>Keratosis pilaris gets rougher when air is dry.</p>"},
    {"title": "Microneedling and KP redness", "link": "https://a.example.com/needling",
     "guid": "a-needling", "description": "<p>Microneedling sessions for keratosis pilaris.</p>"},
]
BEAUTY_ITEMS = [
    {"title": "An evening skincare routine", "link": "https://b.example.com/evening",
     "guid": "b-evening", "description": "<p>Cleanse, serum, moisturizer: a simple skincare routine.</p>"},
    {"title": "Sunscreen every day", "link": "https://b.example.com/spf",
     "guid": "b-spf", "description": "<p>Wear SPF 30 sunscreen as the last step of a skincare routine.</p>"},
]
