"""Property tests (hypothesis) of the near-duplicate filters against brute force on small
inputs: the staged checks never reject a pair that has enough equal values and never keep
one that has not; a batch's stories are those of comparing every pair one by one in id
order; and past the candidate budget (a feed of look-alikes) every grouping is still a
confirmed match and an exact copy is never left on its own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.collect import dedupe
from pipeline.collect.minhash import NUM_PERM, encode

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def signatures(draw: st.DrawFn, max_items: int = 10) -> list[np.ndarray | None]:
    """Signatures that are copies of earlier ones with a drawn number of values changed (so
    that equal-value counts land on both sides of the threshold), fresh ones, and a few
    missing (text too short)."""
    n = draw(st.integers(1, max_items))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out: list[np.ndarray | None] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["fresh", "copy", "copy", "copy", "none"]))
        earlier = [s for s in out if s is not None]
        if kind == "none":
            out.append(None)
        elif kind == "fresh" or not earlier:
            out.append(rng.integers(0, 2**32, NUM_PERM, dtype=np.uint32))
        else:
            values = earlier[draw(st.integers(0, len(earlier) - 1))].copy()
            changed = draw(st.integers(0, NUM_PERM))
            at = rng.choice(NUM_PERM, changed, replace=False)
            # changed values keep some low bits now and then: the cheap stages read low bits
            flips = rng.integers(1, 2**24, changed, dtype=np.uint32)
            values[at] ^= flips << rng.integers(0, 8, changed).astype(np.uint32)  # never 0: changed
            out.append(values)
    return out


def _need(threshold: float) -> int:
    return math.ceil(threshold * NUM_PERM)


def _equal(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a == b))


def _shares_a_band(a: np.ndarray, b: np.ndarray) -> bool:
    """The LSH condition: some band's 3 values all equal."""
    r = dedupe.ROWS
    return any(np.array_equal(a[r * k:r * (k + 1)], b[r * k:r * (k + 1)])
               for k in range(dedupe.BANDS))


def _matches(a: np.ndarray | None, b: np.ndarray | None, need: int) -> bool:
    return a is not None and b is not None and _shares_a_band(a, b) and _equal(a, b) >= need


def _reference(stories: list[int | None], sigs: list[np.ndarray | None], hashes: list[str | None],
               threshold: float) -> list[int]:
    """Brute force: in id order, a pending item takes the smallest story among every earlier
    item it matches (same content hash, or a shared band and enough equal values)."""
    need = _need(threshold)
    out: list[int] = []
    for i, given_story in enumerate(stories):
        if given_story is not None:
            out.append(given_story)
            continue
        found = [out[j] for j in range(i) if (hashes[i] and hashes[i] == hashes[j])
                 or _matches(sigs[j], sigs[i], need)]
        out.append(min([i + 1, *found]))
    return out


@SETTINGS
@given(sigs=signatures(12), threshold=st.sampled_from([0.28, 0.5, 0.8, 1.0]))
def test_the_staged_checks_keep_exactly_the_pairs_with_enough_equal_values(sigs, threshold):
    present = [s for s in sigs if s is not None]
    if len(present) < 2:
        return
    need = _need(threshold)
    checks = dedupe._Checks(dedupe._Encoded.of([encode(s) for s in present]), need)
    x, y = (a.ravel() for a in np.triu_indices(len(present), 1))
    kept_x, kept_y = checks.confirm(x.astype(np.intp), y.astype(np.intp))
    expected = {(int(a), int(b)) for a, b in zip(x, y, strict=True)
                if _equal(present[a], present[b]) >= need}
    assert set(zip(kept_x.tolist(), kept_y.tolist(), strict=True)) == expected


@SETTINGS
@given(sigs=signatures(), data=st.data(), threshold=st.sampled_from([0.28, 0.5, 0.9]))
def test_a_batch_is_grouped_as_by_comparing_every_pair_in_id_order(sigs, data, threshold):
    n = len(sigs)
    hashes = data.draw(st.lists(st.sampled_from([None, None, "h1", "h2"]), min_size=n, max_size=n))
    stored = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ids = list(range(1, n + 1))
    # Stored items keep the story a brute-force pass over them would have given them.
    all_new = _reference([None] * n, sigs, hashes, threshold)
    stories = [all_new[i] if stored[i] else None for i in range(n)]
    got = dedupe.assign_stories(ids, stories, [encode(s) for s in sigs], hashes, threshold).tolist()
    assert got == _reference(stories, sigs, hashes, threshold)


@SETTINGS
@given(sigs=signatures(), threshold=st.sampled_from([0.28, 0.5]))
def test_past_the_budget_every_grouping_is_a_confirmed_match(sigs, threshold):
    """BUDGET 0: every article is in crowded buckets, as in a feed of look-alikes."""
    n = len(sigs)
    need = _need(threshold)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dedupe, "BUDGET", 0)
        mp.setattr(dedupe, "PER_BAND", 1)
        mp.setattr(dedupe, "NEAREST", 2)
        got = dedupe.assign_stories(range(1, n + 1), [None] * n, [encode(s) for s in sigs],
                                    [None] * n, threshold).tolist()
    for i in range(n):
        if got[i] != i + 1:  # joined: through a confirmed match with a member of that story
            assert any(got[j] == got[i] and _matches(sigs[j], sigs[i], need) for j in range(i))
        copy = any(s is not None and np.array_equal(s, sigs[i]) for s in sigs[:i])
        if sigs[i] is not None and copy:
            assert got[i] != i + 1  # an exact copy is never left on its own
