"""Relevance: configured topics with weights, whole words only, case-insensitive."""

from __future__ import annotations

from kpdigest.config import Topic
from pipeline.relevance import score_text

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
