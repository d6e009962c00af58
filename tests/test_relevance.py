"""Relevance: configured topics with weights, whole words only, case-insensitive."""

from __future__ import annotations

from core.config import Topic
from pipeline.collect.relevance import score_text

TOPICS = {
    "kp": Topic(label="KP", keywords=["keratosis pilaris", "KP", "chicken skin", "urea"], weight=2.0),
    "beauty": Topic(label="Beauty", keywords=["SPF", "serum", "skin care"], weight=1.0),
}


def test_keywords_match_on_word_boundaries_case_insensitively():
    assert score_text("Why Keratosis Pilaris flares", TOPICS)[0] == ["kp"]
    assert score_text("kp in winter", TOPICS)[0] == ["kp"]
    assert score_text("(KP)", TOPICS)[0] == ["kp"]
    for text in ("a new backpack", "KPI dashboards", "the skpd file", "chicken skinny jeans",
                 "ureas", "SPFs", "serums"):
        assert score_text(text, TOPICS) == ([], 0.0), text


def test_score_rewards_distinct_keywords_over_repeats_and_respects_weights():
    one = score_text("urea", TOPICS)[1]
    repeated = score_text("urea urea urea", TOPICS)[1]
    varied = score_text("urea, chicken skin, keratosis pilaris", TOPICS)[1]
    stuffed = score_text("urea " * 500, TOPICS)[1]
    beauty = score_text("serum", TOPICS)[1]
    assert one == 2.0 and beauty == 1.0
    assert varied > repeated > one
    assert stuffed < 8 * one  # 500 repeats saturate
    topics, both = score_text("KP and SPF", TOPICS)
    assert topics == ["kp", "beauty"] and both == 3.0


def test_literal_search_finds_exactly_what_the_pattern_finds():
    """The fast path (str.find and a sweep) against the regular expression it replaces, on
    texts made to trip it: keywords glued to letters, digits, underscores and each other,
    overlapping keywords ("chicken skin care"), repeats, punctuation."""
    import random

    from pipeline.collect.relevance import _literal_hits, _literal_order, _pattern

    keywords = ("keratosis pilaris", "kp", "chicken skin", "skin care", "skin", "care", "kp kp", "a",
                "urea", "ure")
    ordered = _literal_order(keywords)
    assert ordered is not None
    pattern = _pattern(keywords, True)
    pieces = [*keywords, "x", "_", "9", " ", "  ", "-", ".", "\n"]
    rng = random.Random(5)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) + rng.choice(["", " ", "", "-"]) for _ in range(rng.randint(0, 12)))
        assert _literal_hits(text, ordered) == pattern.findall(text), text
    assert _literal_order(("c++", "kp")) is None and _literal_order(("(kp)",)) is None
