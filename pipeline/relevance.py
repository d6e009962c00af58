"""Topic relevance: weighted keyword hits on word boundaries, case-insensitive."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from kpdigest.config import Topic


@lru_cache(maxsize=64)
def _pattern(keywords: tuple[str, ...], folded: bool = False) -> re.Pattern[str]:
    # (?<!\w)/(?!\w) rather than \b so keywords ending in punctuation still work,
    # and "KP" never matches inside "backpack".
    alts = "|".join(re.escape(k.lower() if folded else k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", 0 if folded else re.IGNORECASE)


def _hits(text: str, lowered: str | None, keywords: tuple[str, ...]) -> list[str]:
    """Keyword hits, lower-cased. ASCII text and keywords are lower-cased once and matched
    case-sensitively (3-4x faster than IGNORECASE, same hits); anything else keeps the
    IGNORECASE pattern, whose Unicode case folding differs from str.lower()."""
    if lowered is not None and all(k.isascii() for k in keywords):
        return _pattern(keywords, True).findall(lowered)  # type: ignore[no-any-return]
    return [h.lower() for h in _pattern(keywords).findall(text)]


def score_text(text: str, topics: dict[str, Topic]) -> tuple[list[str], float]:
    """Return the topics an article belongs to and its relevance score.

    Score per topic = weight x (1 + log(distinct keywords hit)) x (1 + log(hits)); distinct
    keywords count more than repeats, so keyword stuffing saturates.
    """
    found: list[str] = []
    total = 0.0
    lowered = text.lower() if text.isascii() else None
    for slug, topic in topics.items():
        hits = _hits(text, lowered, tuple(topic.keywords))
        if not hits:
            continue
        distinct = len(set(hits))
        found.append(slug)
        total += topic.weight * (1 + math.log(distinct)) * (1 + math.log(len(hits)))
    return found, round(total, 3)
