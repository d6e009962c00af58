"""A fixed issue: date, articles, placeholder key and settings never change, so its
rendering is byte-for-byte reproducible (golden tests, screenshots, SpamAssassin, the
render benchmark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.config import PROJECT_ROOT, Config, load_config
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.compose.render import Rendered, render_issue

KEY = "0A1B2C3D4E"
NUMBER = 42
ISSUE_ID = 7
DATE = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
MESSAGE_DATE = "Thu, 26 Nov 2026 08:00:00 +0000"
SETTINGS = {
    "site": {"name": "The Smooth Skin Digest", "base_url": "https://digest.example.com",
             "language": "en",
             "postal_address": "Smooth Skin Digest, 1 Example Street, Springfield 01234, USA",
             "disclaimer": "Articles are for general information and are not medical advice. "
                           "Ask a dermatologist about your own skin."},
    "sender": {"from_name": "The Smooth Skin Digest", "from_email": "digest@example.com",
               "reply_to": "editors@example.com", "list_id": "weekly.digest.example.com",
               "unsubscribe_mailto": "", "feedback_id": "kpdigest"},
    "digest": {"subject": "{name} #{number}: {headline}", "intro": "", "max_html_bytes": 92160,
               "summary_chars": 320},
    "schedule": {"timezone": "Europe/London"},
    "web": {"confirm_expiry_hours": 72},
}

_KP = [
    ("Urea or lactic acid: which cream smooths KP faster?", "Bumpy Skin Journal",
     "<p>A small comparison of two common keratolytic creams. Both softened the <em>rough "
     "bumps</em> on upper arms within a month; urea felt less sticky, lactic acid stung a "
     "little on freshly shaved skin.</p>", True),
    ("Why keratosis pilaris flares in winter", "Bumpy Skin Journal",
     "<p>Dry indoor air pulls water from the outer layer of skin, and the keratin plugs "
     "around each hair follicle harden. A humidifier and a thicker night cream help.</p>", False),
    ("Strawberry legs or KP? How to tell them apart", "Derm Notes Weekly",
     "<p>Dark dots after shaving are often open pores or ingrown hairs, not keratosis "
     "pilaris. KP bumps feel like sandpaper and sit on the backs of the arms and thighs.</p>", True),
    ("Does microneedling help KP redness?", "Derm Notes Weekly",
     "<p>Early reports suggest fewer red marks after a few sessions, but the studies are "
     "tiny. Ask a dermatologist before trying it at home: needles and inflamed follicles "
     "do not mix.</p>", False),
    ("Salicylic acid body washes, tested on rough bumps", "Bumpy Skin Journal",
     "<p>Leave the wash on for a minute before rinsing, or it does little. Two of the "
     "five washes we tried also contained fragrance, which some readers found irritating.</p>",
     False),
]
_BEAUTY = [
    ("A three-step evening skincare routine", "Everyday Glow",
     "<p>Cleanse, treat, moisturize. A gentle cleanser, one serum and a plain moisturizer "
     "cover most of what skin needs at night.</p>", True),
    ("Sunscreen on cloudy days: yes, really", "Everyday Glow",
     "<p>Most UVA light passes through cloud. A broad-spectrum SPF 30 as the last morning "
     "step protects skin, more so while using retinol or acids.</p>", False),
    ("Body lotion that actually sinks in", "Everyday Glow",
     "<p>Apply lotion within three minutes of towelling off. Look for glycerin and "
     "ceramides; on rough patches a little urea smooths as it hydrates.</p>", True),
    ("Gentle exfoliation for sensitive skin", "Derm Notes Weekly",
     "<p>Swap gritty scrubs for a mild chemical exfoliant twice a week, and pause for a "
     "week when skin feels tight or stings.</p>", False),
    ("Niacinamide: what the percentages mean", "Derm Notes Weekly",
     "<p>Four to five percent is where most of the evidence sits. Higher numbers on the "
     "label mostly add the chance of flushing.</p>", False),
]


def articles() -> list[dict[str, Any]]:
    """Twelve articles: two editor picks, five KP stories, five beauty tips."""
    out: list[dict[str, Any]] = [
        _article(1, "Pat, don't rub: the two-minute KP habit", "The Smooth Skin Digest",
                 "<p>After a shower, <strong>pat your arms dry</strong> and apply your urea "
                 "cream while the skin is still damp: it spreads further and stings less.</p>"
                 "<ul><li>Keep the water lukewarm.</li><li>Give a new cream six weeks.</li></ul>",
                 ["kp"], editor=True, image=False, link=None),
        _article(2, "Reader question: can diet change keratosis pilaris?", "The Smooth Skin Digest",
                 "<p>Short answer: there is no good evidence that any diet clears KP. Moisture, "
                 "gentle acids and patience remain the reliable trio.</p>",
                 ["kp"], editor=True, image=False, link="https://digest.example.com/tips/diet"),
    ]
    for i, (title, source, summary, image) in enumerate(_KP):
        out.append(_article(10 + i, title, source, summary, ["kp"], image=image))
    for i, (title, source, summary, image) in enumerate(_BEAUTY):
        out.append(_article(20 + i, title, source, summary, ["beauty-tips"], image=image))
    return out


def _article(n: int, title: str, source: str, summary: str, topics: list[str], *,
             editor: bool = False, image: bool = False, link: str | None = "") -> dict[str, Any]:
    slug = "-".join(w.strip(":?,'").lower() for w in title.split()[:4])
    host = source.lower().replace(" ", "")
    return {
        "id": n, "title": title, "source": source,
        "link": f"https://{host}.example.com/{slug}" if link == "" else link,
        "published_at": DATE - timedelta(days=1 + n % 5, hours=n),
        "summary_html": summary, "excerpt": "", "topics": topics,
        "image_url": f"https://{host}.example.com/img/{slug}.jpg" if image else None,
        "image_alt": f"Photo for: {title}" if image else None,
        "picked_by": "editor" if editor else "feed",
    }


def config(**overrides: Any) -> Config:
    settings = {k: dict(v) for k, v in SETTINGS.items()}
    for section, values in overrides.items():
        settings.setdefault(section, {}).update(values)
    cfg = load_config(PROJECT_ROOT / "config.toml", settings)
    return cfg


def subject(cfg: Config, items: list[dict[str, Any]] | None = None) -> str:
    items = articles() if items is None else items
    return cfg.digest.subject.format(name=cfg.site.name, number=NUMBER,
                                     headline=items[0]["title"], date="26 November 2026")


def render(cfg: Config | None = None, items: list[dict[str, Any]] | None = None) -> Rendered:
    cfg = cfg or config()
    items = articles() if items is None else items
    return render_issue(cfg, number=NUMBER, date=DATE, subject=subject(cfg, items), intro=cfg.digest.intro,
                        articles=items, key=KEY, web_url=f"https://digest.example.com/issues/{NUMBER}")


def prepared(cfg: Config | None = None, rendered: Rendered | None = None) -> PreparedVariant:
    cfg = cfg or config()
    r = rendered or render(cfg)
    return PreparedVariant(cfg, ISSUE_ID, NUMBER, "", KEY, r.subject, r.html, r.text)


def recipient(n: int = 1, name: str = "Ann Example", email: str = "ann@example.com") -> Recipient:
    base = "https://digest.example.com"
    return Recipient(n, email, name, f"{base}/unsubscribe/tok{n}.sig", f"{base}/preferences/tok{n}.sig")
