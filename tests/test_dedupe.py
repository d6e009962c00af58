"""Near-duplicate grouping: one article published three times (reworded, re-headed,
re-ordered, as in ../shared/sample-content/) becomes one story; a different article on the
same subject stays its own story. The texts below were written for this test."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
from datasketch import MinHash
from sqlalchemy import select

from core.config import PROJECT_ROOT, load_config
from core.db import utcnow
from core.models import articles
from pipeline.collect.dedupe import (
    Item,
    assign_stories,
    encode,
    features,
    group_items,
    group_texts,
    signature,
    similarity,
)
from pipeline.collect.identity import content_hash
from pipeline.collect.run import collect
from pipeline.curate.select import select_articles
from tests.feedgen import rss

ORIGINAL = [
    "Microneedling for Keratosis Pilaris: What to Know",
    "Microneedling is a clinic treatment in which a pen fitted with very fine needles makes "
    "thousands of tiny channels in the skin. The skin answers each small wound by laying down "
    "fresh collagen and elastin, which is why the method is sold for scars and uneven texture.",
    "Keratosis pilaris shows up as small rough bumps on the upper arms, thighs and sometimes the "
    "cheeks. Each bump is a hair follicle blocked by a plug of keratin. The condition is harmless "
    "and not contagious, but many people find the sandpaper feel and the redness bothersome.",
    "Because the needles open the surface, microneedling may help loosen those keratin plugs and "
    "even out the texture over a course of treatment. Most clinics plan three to six sessions "
    "spaced about four weeks apart, and results differ from person to person.",
    "After a session the skin is usually pink and a little swollen for a day or two, much like a "
    "mild sunburn. Gentle cleansing, a plain moisturiser and strict sun protection help it settle.",
    "Microneedling does not cure keratosis pilaris. Talk to a dermatologist first, especially if "
    "your skin scars easily or you have an active rash, and keep using a urea or lactic acid "
    "cream between sessions.",
]

REWRITE_A = [
    "Understanding Microneedling and Keratosis Pilaris",
    "Microneedling, sometimes called collagen induction, uses a pen with very fine needles to make "
    "thousands of tiny channels in the skin. Each small wound prompts the skin to build fresh "
    "collagen and elastin, which is why clinics offer it for scars and uneven texture.",
    "Keratosis pilaris appears as small rough bumps on the upper arms, thighs and cheeks. A plug of "
    "keratin blocks each hair follicle. It is harmless and not contagious, yet the sandpaper feel "
    "and the redness bother many people.",
    "How can microneedling help? Because the needles open the surface, the treatment may loosen "
    "the keratin plugs and smooth the texture over several sessions. Clinics usually plan three to "
    "six sessions about four weeks apart; results vary from person to person.",
    "Expect the skin to be pink and slightly swollen for a day or two afterwards, like a mild "
    "sunburn. Cleanse gently, use a plain moisturiser and protect the area from the sun.",
    "In conclusion, microneedling is not a cure for keratosis pilaris. See a dermatologist before "
    "you start, especially if you scar easily or have a rash, and keep applying a urea or lactic "
    "acid cream between sessions.",
]

REWRITE_B = [
    "Can Microneedling Smooth Keratosis Pilaris Bumps?",
    "Keratosis pilaris is a harmless, non-contagious condition: small rough bumps, mostly on the "
    "upper arms and thighs, each one a hair follicle blocked by a keratin plug. The redness and the "
    "sandpaper feel are what bother most people.",
    "Microneedling is a clinic treatment that makes thousands of tiny channels in the skin with a "
    "pen of very fine needles. The skin repairs each small wound with fresh collagen and elastin, "
    "which is why the method is popular for scars and uneven texture.",
    "Since the needles open the surface, the treatment may loosen the keratin plugs and even out "
    "texture over a course of three to six sessions, spaced roughly four weeks apart. Results "
    "differ from one person to the next.",
    "The skin usually looks pink and a little swollen for a day or two after a session, like a mild "
    "sunburn. Gentle cleansing, a plain moisturiser and careful sun protection help it calm down.",
    "Bottom line: microneedling will not cure keratosis pilaris. Ask a dermatologist first if your "
    "skin scars easily or you have an active rash, and keep a urea or lactic acid cream going "
    "between sessions.",
]

OTHER_SAME_TOPIC = [
    "Home Dermarollers and Keratosis Pilaris: Risks Before Results",
    "Rollers with short needles are sold online as an easy way to treat rough skin at home. For "
    "keratosis pilaris the appeal is obvious: the bumps sit on large areas such as the upper arms "
    "and thighs, and clinic microneedling sessions are expensive.",
    "Dermatologists are cautious. A home roller cannot be sterilised properly, the needles blunt "
    "quickly and tear rather than puncture, and rolling over inflamed follicles can spread "
    "bacteria. Infections, dark marks and scars are the complaints doctors see most often.",
    "There is also little evidence. Published reports on needling for keratosis pilaris are small "
    "and mostly describe clinic devices combined with peels or lasers, not rollers used alone in a "
    "bathroom.",
    "If you still want to try, use a new roller for each area, clean the skin with alcohol, never "
    "roll over active spots, and stop at once if redness lasts more than a day. A nightly urea "
    "cream and a gentle salicylic acid wash remain the first things to try.",
]


def as_text(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs[1:])


def as_html(paragraphs: list[str]) -> str:
    return "".join(f"<p>{p}</p>" for p in paragraphs[1:])


VERSIONS = [ORIGINAL, REWRITE_A, REWRITE_B]


def _item(paragraphs: list[str], slug: str) -> dict[str, str]:
    return {"title": paragraphs[0], "link": f"https://{slug}.example.com/microneedling-kp",
            "guid": f"{slug}-1", "description": as_html(paragraphs)}


def test_three_versions_are_one_story_and_a_same_topic_article_is_not():
    texts = [paragraphs[0] + "\n" + as_text(paragraphs) for paragraphs in [*VERSIONS, OTHER_SAME_TOPIC]]
    assert group_texts(texts, load_config().collect.near_duplicate_threshold) == [0, 0, 0, 3]


def test_short_texts_are_grouped_only_when_identical():
    short = ["Urea cream softens KP bumps.", "Lactic acid lotion softens KP bumps.",
             "urea cream  softens KP bumps."]
    assert all(signature(t) is None for t in short)  # too little text to judge similarity
    items = [Item(i, None, None, content_hash("", t)) for i, t in enumerate(short)]
    assert group_items(items, 0.28) == [0, 1, 0]


def test_signatures_are_datasketch_minhashes():
    """Stored signatures stay comparable with new ones: the same values as datasketch's own
    MinHash, for ASCII text and for text that takes the regular-expression path."""
    texts = [as_text(ORIGINAL), as_text(OTHER_SAME_TOPIC),
             "Crème brûlée, naïve façades and “curly quotes”: KELVIN \u212a-signs aside, the résumé "
             + as_text(REWRITE_A)]
    for text in texts:
        expected = MinHash(num_perm=256, seed=1, scheme="affine32")
        expected.update_batch(sorted(features(text)))
        assert np.array_equal(signature(text), expected.hashvalues)


def _texts(rng: random.Random, n: int, vocabulary: list[str]) -> list[str]:
    """`n` texts of 60 words; every fourth a copy of an earlier one with a fifth reworded."""
    texts: list[str] = []
    for i in range(n):
        if i % 4 == 3:
            words = rng.choice(texts).split()
            for k in rng.sample(range(len(words)), len(words) // 5):
                words[k] = rng.choice(vocabulary)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocabulary, k=60)))
    return texts


def test_a_few_new_items_among_stored_ones_are_grouped_as_in_one_batch():
    """group_pending's two cases: everything new (a first collect) and a few new articles among
    many stored ones, where only the stored rows sharing an LSH band with a new one are read."""
    rng = random.Random(5)
    vocabulary = ["".join(rng.choices("bcdfgklmnprstaeiou", k=7)) for _ in range(400)]
    texts = _texts(rng, 200, vocabulary)
    minhashes = [encode(signature(t)) for t in texts]
    ids = list(range(1, len(texts) + 1))
    all_new = assign_stories(ids, [None] * len(ids), minhashes, [None] * len(ids), 0.28)
    assert len(set(all_new.tolist())) < len(texts) - 40  # the copies joined their stories
    assert (all_new[190:] != ids[190:]).any()  # some of the last ten are copies
    stored = all_new[:190].tolist()
    some_new = assign_stories(ids, stored + [None] * 10, minhashes, [None] * len(ids), 0.28)
    assert some_new.tolist() == all_new.tolist()


def test_a_copy_of_a_copy_joins_the_first_story():
    """C is a near-duplicate of B only, B of A: C gets A's story, as B did."""
    rng = random.Random(3)
    a = [f"word{chr(97 + k % 26)}{chr(97 + k // 26)}x" for k in range(100)]
    b = a[:60] + [f"other{chr(97 + k % 26)}{chr(97 + k // 26)}y" for k in range(40)]
    c = b[:20] + b[60:] + [f"third{chr(97 + k % 26)}{chr(97 + k // 26)}z" for k in range(40)]
    texts = [" ".join(rng.sample(w, len(w))) for w in (a, b, c)]
    sa, sb, sc = (signature(t) for t in texts)
    assert similarity(sa, sb) >= 0.28 and similarity(sb, sc) >= 0.28 > similarity(sa, sc)
    assert group_texts(texts, 0.28) == [0, 0, 0]


def test_unreadable_signatures_are_skipped():
    good = encode(signature(as_text(ORIGINAL)))
    copy = encode(signature(as_text(REWRITE_A)))
    assert good is not None and copy is not None
    broken = ["not base64 at all", "é" * len(good), good[:-8], "!" + good[1:]]
    minhashes = [good, *broken, copy]
    ids = list(range(len(minhashes)))
    stories = assign_stories(ids, [None] * len(ids), minhashes, [None] * len(ids), 0.28)
    assert stories.tolist() == [0, 1, 2, 3, 4, 0]


def _stories(ctx):
    with ctx.engine.connect() as conn:
        return {r.link.split("/")[2].split(".")[0]: (r.id, r.story_id)
                for r in conn.execute(select(articles.c.link, articles.c.id, articles.c.story_id))}


def test_collected_copies_become_one_story_in_the_digest(make_ctx, feed_server):
    feed_server.serve_bytes("/orig.xml", rss("Original", [_item(ORIGINAL, "orig")]))
    feed_server.serve_bytes("/a.xml", rss("Syndicator", [_item(REWRITE_A, "synd"),
                                                         _item(OTHER_SAME_TOPIC, "other")]))
    ctx = make_ctx(feeds=[("Original", feed_server.url("/orig.xml"), ["kp"]),
                          ("Syndicator", feed_server.url("/a.xml"), ["kp"])])
    report = collect(ctx)
    assert report.new == 3
    s = _stories(ctx)
    assert s["orig"][1] == s["synd"][1] == min(s["orig"][0], s["synd"][0])
    assert s["other"][1] == s["other"][0]

    # A third copy arriving in a later run joins the stored story.
    feed_server.serve_bytes("/b.xml", rss("Rewriter", [_item(REWRITE_B, "seo")]))
    ctx2 = make_ctx(feeds=[("Original", feed_server.url("/orig.xml"), ["kp"]),
                           ("Syndicator", feed_server.url("/a.xml"), ["kp"]),
                           ("Rewriter", feed_server.url("/b.xml"), ["kp"])])
    later = collect(ctx2)
    assert later.new == 1 and later.grouped == 1
    s = _stories(ctx2)
    assert s["seo"][1] == s["orig"][1]

    with ctx2.engine.connect() as conn:
        picked = select_articles(conn, ctx2.config, utcnow() + timedelta(seconds=1)).picked
    links = [a["link"] for a in picked]
    assert len(links) == 2
    assert sum("microneedling-kp" in link and "other" not in link for link in links) == 1
    assert any("other.example.com" in link for link in links)


def test_sample_feeds_show_the_syndicated_story_once(make_ctx):
    """`make demo`: Derm Notes carries a syndicated copy of a Bumpy Skin Journal item."""
    sample = PROJECT_ROOT / "sample" / "feeds"
    ctx = make_ctx(feeds=[("Bumpy Skin Journal", str(sample / "bumpy-skin-journal.xml"), ["kp"]),
                          ("Derm Notes Weekly", str(sample / "derm-notes.atom"), ["kp"])])
    report = collect(ctx)
    assert report.new == 7 and report.grouped == 1
    with ctx.engine.connect() as conn:
        picked = select_articles(conn, ctx.config, utcnow()).picked
    titles = [a["title"] for a in picked]
    assert titles.count("Why keratosis pilaris flares in winter") == 1
    assert len({a["story_id"] for a in picked}) == len(picked) >= 5  # 7 articles, 6 stories, 3 per source
