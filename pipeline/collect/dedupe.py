"""Near-duplicate stories: syndicated copies and SEO rewrites of one article become one story.

Each article gets a MinHash signature (datasketch's affine32 scheme) of its content words:
stopwords dropped, plural/verb endings trimmed. Word n-grams only catch verbatim copies;
rewrites that reword and reorder sentences (the sample article's three versions share 12-21%
of their word 3-grams) still share a third or more of their content words, while two
different articles on the same subject share far fewer. `story_id` is the id of the group's
first article: selection shows each story once.

Grouping works on a whole batch at once, in numpy, so that its cost does not grow with a
Python loop per stored article: the LSH band keys of every signature (85 bands of 3 values)
are sorted, articles that share a key with a pending (not yet grouped) article later than
them are candidate pairs, and candidates are confirmed by their estimated Jaccard similarity.
Signatures are stored as base64 text, and three values are 16 characters of it, so band keys
and the cheap confirmation stages read the stored text directly; only the few pairs that pass
them are decoded and compared value for value.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import numpy as np
from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection

from core.config import Config
from core.models import articles, articles_ungrouped
from pipeline.collect.minhash import NUM_PERM, decode, encode, features, signature, similarity

__all__ = ["Item", "assign_stories", "decode", "encode", "features", "group_items", "group_pending",
           "group_texts", "signature", "similarity"]


# --- grouping -------------------------------------------------------------------------------

ROWS = 3
BANDS = NUM_PERM // ROWS  # 85 bands: 1-(1-J^3)^85 is 98% at Jaccard 0.35, 85% at 0.28, 8% at 0.1
ENCODED = 1368  # len(encode(values)): 1024 bytes in base64
_BAND_CHARS = 16  # 3 values are 12 bytes, 16 base64 characters: a band is a substring
_Pairs = tuple[np.ndarray, np.ndarray]
_PAIRS_PER_CHUNK = 1 << 14  # pairs checked at a time: their rows stay in the CPU caches
# One character lying wholly inside each value: its 6 bits, a 6-bit MinHash read off the text.
_SEXTET_AT = np.array([_BAND_CHARS * band + c for band in range(BANDS) for c in (0, 6, 11)]
                      + [_BAND_CHARS * BANDS], dtype=np.intp)
_SEXTET = np.zeros(256, dtype=np.uint8)  # base64 character -> its 6 bits
_SEXTET[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)] = \
    range(64)
_EVEN_BITS = np.uint64(0x5555555555555555)
_NIBBLE_BITS = np.uint64(0x1111111111111111)
_BYTE_SUM = np.uint64(0x0101010101010101)
_KEY_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_BAND_SALT = np.arange(BANDS, dtype=np.uint64) * np.uint64(0x27D4EB2F165667C5)


def _two_bit_floor(need: int) -> int:
    """Fewest 2-bit matches (of 256) that a pair with `need` equal values shows in all but one
    case in 2,000: its other values agree on their low two bits by chance, a quarter of them.
    The cheap first check; pairs with more equal values pass it even more surely."""
    rest = NUM_PERM - need
    total = 0.0
    for k in range(rest + 1):
        total += math.comb(rest, k) * 0.25**k * 0.75 ** (rest - k)
        if total > 5e-4:
            return need + k
    return need + rest


@dataclass
class _Encoded:
    """The batch's signatures as one (rows, 1368) array of base64 characters."""

    pos: np.ndarray  # batch position of each row
    chars: np.ndarray
    texts: list[str]

    @classmethod
    def of(cls, minhashes: Sequence[str | None]) -> _Encoded:
        pos = [i for i, text in enumerate(minhashes) if text]
        texts: list[str] = [minhashes[i] for i in pos]  # type: ignore[misc]
        if any(len(t) != ENCODED for t in texts):  # not written by `encode`: make it so, or skip
            texts = [encode(decode(t)) for t in texts]  # type: ignore[misc]
            pos = [i for i, t in zip(pos, texts, strict=True) if t]
            texts = [t for t in texts if t]
        try:
            chars = np.array(texts, dtype=f"S{ENCODED}").view(np.uint8).reshape(len(texts), ENCODED)
        except UnicodeEncodeError:  # garbage: one byte per character still, and never matches
            raw = "".join(texts).encode("ascii", "replace")
            chars = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), ENCODED)
        return cls(np.array(pos, dtype=np.intp), chars, texts)

    def subset(self, rows: np.ndarray) -> _Encoded:
        return _Encoded(self.pos[rows], self.chars[rows], [self.texts[r] for r in rows.tolist()])

    def band_keys(self) -> np.ndarray:
        """(rows, 85) uint32: equal for two rows when that band's 16 characters are equal (and,
        rarely, by chance: a chance collision costs a comparison, never a wrong group)."""
        words = self.chars.view(np.uint64)
        k = words[:, 0:2 * BANDS:2] * _KEY_MIX[0]
        k ^= words[:, 1:2 * BANDS:2] * _KEY_MIX[1]
        k += _BAND_SALT
        return (k >> np.uint64(32)).astype(np.uint32)

    def sextets(self) -> np.ndarray:
        return _SEXTET[np.take(self.chars, _SEXTET_AT, axis=1)]  # type: ignore[no-any-return]


def _two_bit(sextets: np.ndarray) -> np.ndarray:
    """(rows, 8) uint64: the low 2 bits of each value's sextet, 32 to a word."""
    v = (sextets & np.uint8(3)).reshape(len(sextets), NUM_PERM // 4, 4)
    packed = v[:, :, 0] | (v[:, :, 1] << 2) | (v[:, :, 2] << 4) | (v[:, :, 3] << 6)
    return np.ascontiguousarray(packed).view(np.uint64)


def _two_bit_mismatches(packed: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.take(packed, x, axis=0)
    d ^= np.take(packed, y, axis=0)
    d |= d >> np.uint64(1)
    d &= _EVEN_BITS  # one bit per 2-bit field that differs
    # 8 counts of at most 32 in one word: summed by a multiplication (256 wraps to 0: a pair
    # differing everywhere passes here and fails the next check).
    counts = np.bitwise_count(d).view(np.uint64)[:, 0]
    return (counts * _BYTE_SUM) >> np.uint64(56)  # type: ignore[no-any-return]


def _pending_keys(keys: np.ndarray, later: np.ndarray) -> np.ndarray:
    """(rows, 85) bool: the keys that some pending row also has (plus a few by chance). A
    bitmap of the pending rows' keys, so that a few new articles among many stored ones sort
    a few thousand keys, not millions; sized to let few stored rows through by chance."""
    bits = min(24, max(16, (int(later.sum()) * BANDS * BANDS * 8).bit_length()))
    table = np.zeros(1 << bits, dtype=bool)
    mask = np.uint32((1 << bits) - 1)
    table[keys[later] & mask] = True
    return table[keys & mask]  # type: ignore[no-any-return]


def _candidates(keys: np.ndarray, later: np.ndarray,
                shared: np.ndarray | None) -> Iterator[Callable[[], _Pairs]]:
    """Chunks of (earlier, later) row pairs that share a band key, the later row pending
    (`shared`: the only keys worth sorting, None for all), each as a function that lists
    them: the listing is as costly as the checks, and runs in their threads."""
    n = len(keys)
    entries = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)[:, None]
    entries = entries.ravel() if shared is None else entries[shared]
    entries.sort()  # by key, then row: a run of equal keys lists its rows in id order
    if len(entries) < 2:
        return
    row = (entries & np.uint64(0xFFFFFFFF)).astype(np.intp)
    key = entries >> np.uint64(32)
    index = np.arange(len(entries))
    run_start = np.where(np.concatenate(([True], key[1:] != key[:-1])), index, 0)
    np.maximum.accumulate(run_start, out=run_start)
    before = index - run_start  # rows earlier in the same run
    before[~later[row]] = 0
    total = np.cumsum(before)
    if total[-1] == 0:
        return
    bounds = np.searchsorted(total, np.arange(_PAIRS_PER_CHUNK, total[-1], _PAIRS_PER_CHUNK), side="right")

    def pairs(lo: int, hi: int) -> _Pairs:
        count = before[lo:hi]
        last = np.repeat(np.arange(lo, hi), count)
        offset = np.arange(len(last)) - np.repeat(np.cumsum(count) - count, count)
        return row[run_start[last] + offset], row[last]

    starts, ends = np.concatenate(([0], bounds)).tolist(), np.concatenate((bounds, [len(entries)])).tolist()
    for lo, hi in zip(starts, ends, strict=True):
        yield partial(pairs, lo, hi)


def _four_bit(sextets: np.ndarray) -> np.ndarray:
    """(rows, 16) uint64: the low 4 bits of each value's sextet, 16 to a word."""
    v = sextets & np.uint8(15)
    return np.ascontiguousarray(v[:, 0::2] | (v[:, 1::2] << 4)).view(np.uint64)


def _four_bit_mismatches(packed: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.take(packed, x, axis=0)
    d ^= np.take(packed, y, axis=0)
    d |= d >> np.uint64(1)
    d |= d >> np.uint64(2)
    d &= _NIBBLE_BITS  # one bit per 4-bit field that differs
    counts = (np.bitwise_count(d).view(np.uint64) * _BYTE_SUM) >> np.uint64(56)  # 2 sums <= 128
    return counts[:, 0] + counts[:, 1]  # type: ignore[no-any-return]


CONFIRM_THREADS = 2  # numpy lets go of the GIL in the checks: chunks are confirmed in parallel


def _in_threads(work: Callable[[Callable[[], _Pairs]], _Pairs],
                chunks: Iterator[Callable[[], _Pairs]]) -> Iterator[_Pairs]:
    """`work` over the chunks, in order, a few at a time in a small thread pool: a first
    collect's hundreds of candidate chunks are the serial end of the run. A single chunk
    (the usual steady-state pass) is done right here."""
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None:
        yield work(first)
        return
    with ThreadPoolExecutor(CONFIRM_THREADS, thread_name_prefix="kpd-dedupe") as pool:
        pending: deque[Future[_Pairs]] = deque([pool.submit(work, first), pool.submit(work, second)])
        for chunk in chunks:
            pending.append(pool.submit(work, chunk))
            if len(pending) > 2 * CONFIRM_THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _near_pairs(minhashes: Sequence[str | None], pending: np.ndarray,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Batch positions (earlier, later) of the pairs whose later item is pending, that share an
    LSH band and whose signatures agree on at least `threshold` of their values."""
    none = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    need = math.ceil(threshold * NUM_PERM)
    sigs = _Encoded.of(minhashes)
    later = pending[sigs.pos]
    if not later.any() or need > NUM_PERM:
        return none
    keys, shared = sigs.band_keys(), None
    if not later.all():  # only rows sharing a key with a pending row matter
        shared = _pending_keys(keys, later)
        rows = np.flatnonzero(shared.any(axis=1))
        sigs, keys, later, shared = sigs.subset(rows), keys[rows], later[rows], shared[rows]
    sextets = sigs.sextets()
    two, four = _two_bit(sextets), _four_bit(sextets)
    most_two, most_four = NUM_PERM - _two_bit_floor(need), NUM_PERM - need

    def confirm(chunk: Callable[[], _Pairs]) -> _Pairs:
        x, y = chunk()
        keep = _two_bit_mismatches(two, x, y) <= most_two  # lets ~1 in 10 through
        x, y = x[keep], y[keep]
        # Pairs with `need` equal values have at least as many equal 4-bit parts: no loss.
        keep = _four_bit_mismatches(four, x, y) <= most_four
        return x[keep], y[keep]

    found_x, found_y = [], []
    for x, y in _in_threads(confirm, _candidates(keys, later, shared)):
        found_x.append(x)
        found_y.append(y)
    if not found_x:
        return none
    pairs = np.unique(np.concatenate(found_x) * len(sigs.texts) + np.concatenate(found_y))
    x, y = np.divmod(pairs, len(sigs.texts))
    keep = np.count_nonzero(sextets[x] == sextets[y], axis=1) >= need  # 6 bits: still no loss
    x, y = x[keep], y[keep]  # and only the few true matches are decoded and compared
    rows, index = np.unique(np.concatenate((x, y)), return_inverse=True)
    values = np.zeros((len(rows), NUM_PERM), dtype=np.uint32)
    valid = np.zeros(len(rows), dtype=bool)
    for i, r in enumerate(rows.tolist()):
        decoded = decode(sigs.texts[r])
        if decoded is not None:
            values[i], valid[i] = decoded, True
    ix, iy = index[: len(x)], index[len(x):]
    same = np.count_nonzero(values[ix] == values[iy], axis=1)
    keep = (same >= need) & valid[ix] & valid[iy]
    return sigs.pos[x[keep]], sigs.pos[y[keep]]


def _same_content(hashes: Sequence[str | None], pending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(earlier, later) positions: each pending item and the first item with its content hash."""
    first = dict(zip(reversed(hashes), range(len(hashes) - 1, -1, -1), strict=True))
    pairs = [(first[hashes[p]], p) for p in np.flatnonzero(pending).tolist()
             if hashes[p] and first[hashes[p]] < p]
    src, dst = zip(*pairs, strict=True) if pairs else ((), ())
    return np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp)


def assign_stories(ids: Sequence[int], stories: Sequence[int | None], minhashes: Sequence[str | None],
                   hashes: Sequence[str | None], threshold: float) -> np.ndarray:
    """The story of every item of a batch in id order: an item with a story keeps it; a
    pending one (story None) takes the story of its earliest similar or identical earlier item
    (the smallest story among them), else its own id. As if the items were grouped one by one
    in id order, but with every match known at once: the stories of chained matches are
    settled by relaxing the (earlier -> later) edges until nothing changes."""
    id_array = np.array(ids, dtype=np.int64)
    if (np.diff(id_array) <= 0).any():
        raise ValueError("items must come in increasing id order")
    pending = np.array([s is None for s in stories], dtype=bool)
    story = np.array([s or 0 for s in stories], dtype=np.int64)
    story = np.where(story == 0, id_array, story)
    near, same = _near_pairs(minhashes, pending, threshold), _same_content(hashes, pending)
    src, dst = np.concatenate((near[0], same[0])), np.concatenate((near[1], same[1]))
    while len(src):
        settled = story.copy()
        np.minimum.at(settled, dst, story[src])
        if np.array_equal(settled, story):
            break
        story = settled
    return story


@dataclass
class Item:
    id: int
    story_id: int | None  # None: not grouped yet
    values: np.ndarray | None
    content_hash: str | None = None


def group_items(items: Sequence[Item], threshold: float) -> list[int]:
    """`assign_stories` for items in id order, signatures given as values."""
    return assign_stories([i.id for i in items], [i.story_id for i in items],
                          [encode(i.values) for i in items], [i.content_hash for i in items],
                          threshold).tolist()


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Loading the recent articles creates a few hundred thousand objects (rows, strings),
    none of them in a reference cycle; the cyclic collector would walk them again and again
    while they are made (measured: about a sixth of the steady-state pass's CPU time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def group_pending(conn: Connection, cfg: Config, now: datetime) -> int:
    """Compare every article listed as ungrouped with the others of the last
    `collect.near_duplicate_days` and give it the story of its earliest near-duplicate (it was
    stored as its own story); returns how many joined an existing story. One pass after a
    collect run (or an editor's add), in one transaction: only the rows that join another
    story are rewritten, and the list is emptied of what this pass compared."""
    u = articles_ungrouped.c
    if conn.execute(select(u.article_id).limit(1)).first() is None:
        return 0  # nothing new: a run of 304s never loads the signatures
    since = now - timedelta(days=cfg.collect.near_duplicate_days)
    with _no_cyclic_gc():
        # One statement, so that what counts as pending is what this pass reads.
        rows = conn.execute(
            select(articles.c.id, articles.c.story_id, articles.c.minhash, articles.c.content_hash,
                   u.article_id.is_not(None))
            .select_from(articles.outerjoin(articles_ungrouped, u.article_id == articles.c.id))
            .where(or_(articles.c.created_at >= since, u.article_id.is_not(None)))
            .order_by(articles.c.id)).all()
        if not rows:  # grouped meanwhile by another run
            return 0
        ids, stories, minhashes, hashes, listed = zip(*rows, strict=True)
        del rows
        pending = np.array(listed, dtype=bool)
        stories = [None if p else s for s, p in zip(stories, listed, strict=True)]
        story = assign_stories(ids, stories, minhashes, hashes, cfg.collect.near_duplicate_threshold)
        new_ids, new_story = np.array(ids, dtype=np.int64)[pending], story[pending]
    joined = new_story != new_ids
    if joined.any():
        conn.execute(update(articles).where(articles.c.id == bindparam("aid"))
                     .values(story_id=bindparam("sid")),
                     [{"aid": a, "sid": s} for a, s in zip(new_ids[joined].tolist(),
                                                            new_story[joined].tolist(), strict=True)])
    done = new_ids.tolist()
    compared = delete(articles_ungrouped).where(u.article_id.in_(bindparam("ids", expanding=True)))
    for lo in range(0, len(done), 900):  # within SQLite's oldest limit on bound parameters
        conn.execute(compared, {"ids": done[lo:lo + 900]})
    return int(joined.sum())


def group_texts(texts: Iterable[str], threshold: float) -> list[int]:
    """Story index of each text (the index of its group's first text): grouping without a
    database, for benchmarks and tools."""
    minhashes = [encode(signature(t)) for t in texts]
    return assign_stories(range(len(minhashes)), [None] * len(minhashes), minhashes,
                          [None] * len(minhashes), threshold).tolist()
