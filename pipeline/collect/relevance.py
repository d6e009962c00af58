"""Topic relevance: weighted keyword hits on word boundaries, case-insensitive."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from core.config import Topic


@lru_cache(maxsize=64)
def _pattern(keywords: tuple[str, ...], folded: bool = False) -> re.Pattern[str]:
    # (?<!\w)/(?!\w) rather than \b so keywords ending in punctuation still work,
    # and "KP" never matches inside "backpack".
    alts = "|".join(re.escape(k.lower() if folded else k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", 0 if folded else re.IGNORECASE)


@lru_cache(maxsize=64)
def _literal_order(keywords: tuple[str, ...]) -> tuple[str, ...] | None:
    """The folded pattern's alternatives in its order, when every keyword is ASCII and starts
    and ends with a word character (then a hit is a plain substring with a non-word
    character, or nothing, on either side); None when only the pattern can tell."""
    ordered = tuple(k.lower() for k in sorted(keywords, key=len, reverse=True))
    if all(k and k.isascii() and _is_word(k[0]) and _is_word(k[-1]) for k in ordered):
        return ordered
    return None


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"  # \w, for ASCII


def _literal_hits(lowered: str, ordered: tuple[str, ...]) -> list[str]:
    """What `_pattern(keywords, True).findall(lowered)` returns, from str.find: a literal
    search skips through the text in C where the pattern, which starts with a lookbehind,
    tries every position (~20x slower). Candidates at word boundaries are swept left to
    right like the regex: at one position the earlier alternative wins, matches do not
    overlap."""
    found = []
    size = len(lowered)
    for rank, kw in enumerate(ordered):
        start = lowered.find(kw)
        while start != -1:
            end = start + len(kw)
            before_ok = start == 0 or not _is_word(lowered[start - 1])
            if before_ok and (end == size or not _is_word(lowered[end])):
                found.append((start, rank, end))
            start = lowered.find(kw, start + 1)
    hits: list[str] = []
    pos = 0
    for start, rank, end in sorted(found):
        if start >= pos:
            hits.append(ordered[rank])
            pos = end
    return hits


@lru_cache(maxsize=64)
def _all_ascii(keywords: tuple[str, ...]) -> bool:
    return all(k.isascii() for k in keywords)


def _hits(text: str, lowered: str | None, keywords: tuple[str, ...]) -> list[str]:
    """Keyword hits, lower-cased. ASCII text and keywords are lower-cased once and matched
    case-sensitively (3-4x faster than IGNORECASE, same hits), as literal searches when the
    keywords allow it; anything else keeps the IGNORECASE pattern, whose Unicode case
    folding differs from str.lower()."""
    if lowered is not None and _all_ascii(keywords):
        ordered = _literal_order(keywords)
        if ordered is not None:
            return _literal_hits(lowered, ordered)
        return _pattern(keywords, True).findall(lowered)
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


def keyword_hits(text: str, topics: dict[str, Topic]) -> dict[str, dict[str, int]]:
    """Per topic, each keyword found in `text` and how often: the words that earned a score
    (the editors' inbox shows them)."""
    lowered = text.lower() if text.isascii() else None
    found: dict[str, dict[str, int]] = {}
    for slug, topic in topics.items():
        counts: dict[str, int] = {}
        for hit in _hits(text, lowered, tuple(topic.keywords)):
            counts[hit] = counts.get(hit, 0) + 1
        if counts:
            found[slug] = counts
    return found
