"""Topic relevance: weighted keyword hits on word boundaries, case-insensitive."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from kpdigest.config import Topic


@lru_cache(maxsize=64)
def _pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    # (?<!\w)/(?!\w) rather than \b so keywords ending in punctuation still work,
    # and "KP" never matches inside "backpack".
    alts = "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def score_text(text: str, topics: dict[str, Topic]) -> tuple[list[str], float]:
    """Return the topics an article belongs to and its relevance score.

    Score per topic = weight x (1 + log(distinct keywords hit)) x (1 + log(hits)); distinct
    keywords count more than repeats, so keyword stuffing saturates.
    """
    found: list[str] = []
    total = 0.0
    for slug, topic in topics.items():
        hits = _pattern(tuple(topic.keywords)).findall(text)
        if not hits:
            continue
        distinct = len({h.lower() for h in hits})
        found.append(slug)
        total += topic.weight * (1 + math.log(distinct)) * (1 + math.log(len(hits)))
    return found, round(total, 3)
