"""Near-duplicate stories: syndicated copies and SEO rewrites of one article become one story.

Each article gets a MinHash signature (datasketch's affine32 scheme) of its content words:
stopwords dropped, plural/verb endings trimmed. Word n-grams only catch verbatim copies;
rewrites that reword and reorder sentences (the sample article's three versions share 12-21%
of their word 3-grams) still share a third or more of their content words, while two
different articles on the same subject share far fewer. `story_id` is the id of the group's
first article: selection shows each story once.

Grouping is bounded in memory and time whatever the input (a feed whose every entry is
alike must not kill the collector): the LSH band keys of every signature (85 bands of 3
values, read off the stored base64 text) are sorted once; a new article looks in each bucket
it shares at the bucket's first and latest few rows only, keeps the NEAREST candidates that
share the most bands, and confirms them by the estimated Jaccard similarity in cheap stages
(2, 4, 6 bits of each value) before decoding the few that pass. So a cluster of ten thousand
mutually similar entries is grouped in linear time, and a story holds at most MAX_STORY
articles. New articles are settled in id order, CHUNK at a time, each chunk committed: a
killed pass resumes where it stopped. A cluster is reported (collect summary, feed health).
"""

from __future__ import annotations

import gc
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np
from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.engine import Connection, Engine

from core.config import Config
from core.models import articles, articles_ungrouped
from pipeline.collect.minhash import NUM_PERM, decode, encode, features, signature, similarity

__all__ = ["Grouping", "Item", "assign_stories", "decode", "encode", "features", "group_items",
           "group_pending", "group_pending_in_chunks", "group_texts", "signature", "similarity"]
log = logging.getLogger(__name__)


# --- grouping -------------------------------------------------------------------------------

ROWS = 3
BANDS = NUM_PERM // ROWS  # 85 bands: 1-(1-J^3)^85 is 98% at Jaccard 0.35, 85% at 0.28, 8% at 0.1
ENCODED = 1368  # len(encode(values)): 1024 bytes in base64
_BAND_CHARS = 16  # 3 values are 12 bytes, 16 base64 characters: a band is a substring
_Pairs = tuple[np.ndarray, np.ndarray]
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
        return _SEXTET[np.take(self.chars, _SEXTET_AT, axis=1)]


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
    return (counts * _BYTE_SUM) >> np.uint64(56)


def _pending_keys(keys: np.ndarray, later: np.ndarray) -> np.ndarray:
    """(rows, 85) bool: the keys that some pending row also has (plus a few by chance). A
    bitmap of the pending rows' keys, so that a few new articles among many stored ones sort
    a few thousand keys, not millions; sized to let few stored rows through by chance."""
    bits = min(24, max(16, (int(later.sum()) * BANDS * BANDS * 8).bit_length()))
    table = np.zeros(1 << bits, dtype=bool)
    mask = np.uint32((1 << bits) - 1)
    table[keys[later] & mask] = True
    return table[keys & mask]


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
    return counts[:, 0] + counts[:, 1]


# --- bounded candidates --------------------------------------------------------------------

BUDGET = 4096  # listed candidates per new article within which every one is confirmed
PER_BAND = 4  # past BUDGET, rows one bucket offers: its first 4 and the 4 just before the article
NEAREST = 16  # past BUDGET, candidates confirmed: those that share the most bands with it
MAX_STORY = 1000  # articles in one story: the next copy of a full story starts a story of its own
CHUNK = 1000  # new articles grouped and committed at a time
CLUSTER_REPORT = 50  # this many entries of one feed joining one story in a pass are reported
_LISTED_AT_ONCE = 1 << 14  # candidate pairs listed and checked at a time: CPU caches


@dataclass
class _Buckets:
    """Every signature's band keys, sorted once: the row of each (key, row) entry, where its
    run of equal keys starts, and the entries of pending rows that have an earlier row in
    their run, ordered by row, so that a chunk of pending rows finds its entries by bisection.
    A pending row whose buckets hold at most BUDGET earlier rows in all is compared with every
    one of them; one in crowded buckets (a feed of look-alikes) is `bounded`: it sees only the
    first and latest PER_BAND rows of each bucket. O(rows x 85) memory, whatever the keys."""

    row: np.ndarray
    run_start: np.ndarray
    pend: np.ndarray
    pend_row: np.ndarray
    bounded: np.ndarray  # per row

    @classmethod
    def of(cls, keys: np.ndarray, later: np.ndarray, shared: np.ndarray | None) -> _Buckets:
        n = len(keys)
        entries = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)[:, None]
        entries = entries.ravel() if shared is None else entries[shared]
        entries.sort()  # by key, then row: a run of equal keys lists its rows in id order
        row = (entries & np.uint64(0xFFFFFFFF)).astype(np.intp)
        key = entries >> np.uint64(32)
        del entries
        index = np.arange(len(row))
        starts = np.ones(len(row), dtype=bool)
        starts[1:] = key[1:] != key[:-1]
        run_start = np.where(starts, index, 0)
        np.maximum.accumulate(run_start, out=run_start)
        pend = np.flatnonzero(later[row] & (run_start < index))
        pend = pend[np.argsort(row[pend], kind="stable")]
        listed = np.bincount(row[pend], weights=pend - run_start[pend], minlength=n)
        return cls(row, run_start, pend, row[pend], listed > BUDGET)

    def pairs(self, lo: int, hi: int) -> Iterator[_Pairs]:
        """(earlier, later) rows for the pending rows lo <= row < hi, _LISTED_AT_ONCE or so
        at a time (a row's candidates together), with repeats: a pair listed k times shares
        k bands. A bounded row lists at most 85 x 2 x PER_BAND, however large its buckets."""
        a, b = np.searchsorted(self.pend_row, (lo, hi))
        at = self.pend[a:b]
        start = self.run_start[at]
        bounded = self.bounded[self.pend_row[a:b]]
        count = np.where(bounded, np.minimum(at - start, 2 * PER_BAND), at - start)
        head = np.where(bounded, PER_BAND, count)  # offsets below it count from the bucket start
        total = np.cumsum(count)
        cuts = np.searchsorted(total, np.arange(_LISTED_AT_ONCE, total[-1] if len(total) else 0,
                                                _LISTED_AT_ONCE))
        rows = self.pend_row[a:b]
        cuts = [0, *np.searchsorted(rows, rows[cuts]).tolist(), len(at)]  # at row boundaries
        for i, j in pairwise(dict.fromkeys(cuts)):
            c = count[i:j]
            last = np.repeat(at[i:j], c)
            offset = np.arange(len(last)) - np.repeat(np.cumsum(c) - c, c)
            first = np.repeat(start[i:j], c) + offset
            before = last - 1 - (offset - np.repeat(head[i:j], c))
            pick = np.where(offset < np.repeat(head[i:j], c), first, before)
            yield self.row[pick], self.row[last]


def _nearest(x: np.ndarray, y: np.ndarray, n_rows: int, bounded: np.ndarray) -> _Pairs:
    """Of a bounded row's candidates, the NEAREST that share the most bands
    (a pair's share of equal bands estimates its share of equal values), earliest first."""
    crowded = bounded[y]
    if not crowded.any():  # repeats are harmless to the checks, cheaper than removing them
        return x, y
    free_x, free_y, x, y = x[~crowded], y[~crowded], x[crowded], y[crowded]
    code, counts = np.unique(y.astype(np.int64) * n_rows + x, return_counts=True)
    later, earlier = np.divmod(code, n_rows)
    order = np.lexsort((earlier, -counts, later))
    later, earlier = later[order], earlier[order]
    rank = np.arange(len(later)) - np.searchsorted(later, later)
    keep = rank < NEAREST
    return (np.concatenate((free_x, earlier[keep].astype(np.intp))),
            np.concatenate((free_y, later[keep].astype(np.intp))))


class _Checks:
    """The staged confirmation of candidate pairs: 2 bits, 4 bits and 6 bits of each value
    read off the base64 text (none can reject a pair with `need` equal values), then the
    few survivors decoded and compared value for value."""

    def __init__(self, sigs: _Encoded, need: int) -> None:
        self.texts, self.need = sigs.texts, need
        self.sextets = sigs.sextets()
        self.two, self.four = _two_bit(self.sextets), _four_bit(self.sextets)
        self.most_two, self.most_four = NUM_PERM - _two_bit_floor(need), NUM_PERM - need

    def confirm(self, x: np.ndarray, y: np.ndarray) -> _Pairs:
        keep = _two_bit_mismatches(self.two, x, y) <= self.most_two  # lets ~1 in 10 through
        x, y = x[keep], y[keep]
        keep = _four_bit_mismatches(self.four, x, y) <= self.most_four
        x, y = x[keep], y[keep]
        keep = np.count_nonzero(self.sextets[x] == self.sextets[y], axis=1) >= self.need
        x, y = x[keep], y[keep]
        rows, index = np.unique(np.concatenate((x, y)), return_inverse=True)
        values = np.zeros((len(rows), NUM_PERM), dtype=np.uint32)
        valid = np.zeros(len(rows), dtype=bool)
        for i, r in enumerate(rows.tolist()):
            decoded = decode(self.texts[r])
            if decoded is not None:
                values[i], valid[i] = decoded, True
        ix, iy = index[: len(x)], index[len(x):]
        same = np.count_nonzero(values[ix] == values[iy], axis=1)
        keep = (same >= self.need) & valid[ix] & valid[iy]
        return x[keep], y[keep]


def _same_content(hashes: Sequence[str | None], pending: Sequence[bool]) -> _Pairs:
    """(earlier, later) positions: each pending item with the first and the latest earlier
    item of its content hash (the latest: a full story's next copy finds the new story)."""
    first: dict[str, int] = {}
    latest: dict[str, int] = {}
    src: list[int] = []
    dst: list[int] = []
    for i, (h, p) in enumerate(zip(hashes, pending, strict=True)):
        if not h:
            continue
        if p and h in latest:
            src += (first[h], latest[h])
            dst += (i, i)
        first.setdefault(h, i)
        latest[h] = i
    return np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp)


@dataclass
class Grouping:
    """What a grouping pass did, for the collect summary and the feeds' health."""

    joined: int = 0  # new articles that joined an earlier story
    chunks: int = 0  # committed chunks
    full: int = 0  # new articles that matched only full stories (MAX_STORY) and began their own
    by_feed_story: Counter[tuple[int | None, int]] = field(default_factory=Counter)

    def clusters(self) -> list[tuple[int | None, int]]:
        """(feed id, entries) of each feed whose entries joined one story CLUSTER_REPORT times
        or more in this pass: a templated or republishing feed, worth a line."""
        return [(feed, n) for (feed, _story), n in sorted(self.by_feed_story.items(),
                                                          key=lambda kv: (-kv[1], kv[0][1]))
                if n >= CLUSTER_REPORT]


class _Pass:
    """One grouping pass over a batch in id order. Pending items take the smallest story among
    their confirmed matches (an earlier item's), as if grouped one by one in id order; chunks
    of CHUNK pending items are settled in turn, so each can be committed. Memory is O(items):
    band buckets are sorted once, and each pending item looks at a bounded number of them."""

    def __init__(self, ids: Sequence[int], stories: Sequence[int | None],
                 minhashes: Sequence[str | None], hashes: Sequence[str | None], threshold: float,
                 feed_ids: Sequence[int | None] | None = None) -> None:
        self.ids = np.array(ids, dtype=np.int64)
        if (np.diff(self.ids) <= 0).any():
            raise ValueError("items must come in increasing id order")
        listed = [s is None for s in stories]
        self.pending = np.array(listed, dtype=bool)
        given = np.array([s or 0 for s in stories], dtype=np.int64)
        self.story = np.where(self.pending, self.ids, given)
        self.feed_ids = feed_ids
        story_ids, counts = np.unique(self.story, return_counts=True)
        self.sizes: dict[int, int] = dict(zip(story_ids.tolist(), counts.tolist(), strict=True))
        self.same = _same_content(hashes, listed)
        self.buckets: _Buckets | None = None
        need = math.ceil(threshold * NUM_PERM)
        sigs = _Encoded.of(minhashes)
        later = self.pending[sigs.pos]
        if later.any() and need <= NUM_PERM:
            keys, shared = sigs.band_keys(), None
            if not later.all():  # only rows sharing a key with a pending row matter
                shared = _pending_keys(keys, later)
                rows = np.flatnonzero(shared.any(axis=1))
                sigs, keys, later, shared = sigs.subset(rows), keys[rows], later[rows], shared[rows]
            self.buckets = _Buckets.of(keys, later, shared)
            self.checks = _Checks(sigs, need)
        self.sig_pos = sigs.pos

    def chunks(self) -> Iterator[np.ndarray]:
        """Batch positions of the pending items, CHUNK at a time, in id order."""
        waiting = np.flatnonzero(self.pending)
        for lo in range(0, len(waiting), CHUNK):
            yield waiting[lo:lo + CHUNK]

    def _edges(self, lo: int, hi: int) -> _Pairs:
        """Confirmed (earlier, later) matches of the pending items at positions lo..hi-1."""
        a, b = np.searchsorted(self.same[1], (lo, hi))
        src, dst = [self.same[0][a:b]], [self.same[1][a:b]]
        if self.buckets is not None:
            s_lo, s_hi = np.searchsorted(self.sig_pos, (lo, hi))
            for x, y in self.buckets.pairs(int(s_lo), int(s_hi)):
                x, y = self.checks.confirm(*_nearest(x, y, len(self.sig_pos), self.buckets.bounded))
                src.append(self.sig_pos[x])
                dst.append(self.sig_pos[y])
        return np.concatenate(src), np.concatenate(dst)

    def group(self, chunk: np.ndarray, grouping: Grouping) -> np.ndarray:
        """Settle a chunk: its positions whose story changed (to be written)."""
        src, dst = self._edges(int(chunk[0]), int(chunk[-1]) + 1)
        order = np.lexsort((src, dst))
        src, dst = src[order], dst[order]
        starts = np.flatnonzero(np.concatenate(([True], dst[1:] != dst[:-1]))) if len(dst) else dst
        bounds = [*starts.tolist(), len(dst)]
        story, sizes, changed = self.story, self.sizes, []
        for a, b in pairwise(bounds):
            d = int(dst[a])
            own = int(story[d])
            best = next((s for s in sorted(set(story[src[a:b]].tolist()))
                         if s < own and sizes.get(s, 0) < MAX_STORY), None)
            if best is None:
                grouping.full += 1
                continue
            story[d] = best
            sizes[best] = sizes.get(best, 0) + 1
            sizes[own] -= 1
            changed.append(d)
            feed = self.feed_ids[d] if self.feed_ids is not None else None
            grouping.by_feed_story[(feed, best)] += 1
        grouping.joined += len(changed)
        return np.array(changed, dtype=np.intp)


def assign_stories(ids: Sequence[int], stories: Sequence[int | None], minhashes: Sequence[str | None],
                   hashes: Sequence[str | None], threshold: float) -> np.ndarray:
    """The story of every item of a batch in id order: an item with a story keeps it; a
    pending one (story None) takes the story of its earliest similar or identical earlier item
    (the smallest story among its nearest matches), else its own id."""
    grouping_pass = _Pass(ids, stories, minhashes, hashes, threshold)
    grouping = Grouping()
    for chunk in grouping_pass.chunks():
        grouping_pass.group(chunk, grouping)
    return grouping_pass.story


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


def _load(conn: Connection, cfg: Config, now: datetime) -> _Pass | None:
    """The pass over the articles listed as ungrouped and the others of the last
    `collect.near_duplicate_days`, read in one statement (what counts as pending is what
    this pass reads); None when nothing is listed."""
    u = articles_ungrouped.c
    if conn.execute(select(u.article_id).limit(1)).first() is None:
        return None  # nothing new: a run of 304s never loads the signatures
    since = now - timedelta(days=cfg.collect.near_duplicate_days)
    with _no_cyclic_gc():
        rows = conn.execute(
            select(articles.c.id, articles.c.story_id, articles.c.minhash, articles.c.content_hash,
                   articles.c.feed_id, u.article_id.is_not(None))
            .select_from(articles.outerjoin(articles_ungrouped, u.article_id == articles.c.id))
            .where(or_(articles.c.created_at >= since, u.article_id.is_not(None)))
            .order_by(articles.c.id)).all()
        if not rows:  # grouped meanwhile by another run
            return None
        ids, stories, minhashes, hashes, feed_ids, listed = zip(*rows, strict=True)
        del rows
        stories = tuple(None if p else s for s, p in zip(stories, listed, strict=True))
        threshold = cfg.collect.near_duplicate_threshold
        return _Pass(ids, stories, minhashes, hashes, threshold, feed_ids)


def _write(conn: Connection, grouping_pass: _Pass, chunk: np.ndarray, changed: np.ndarray) -> None:
    """A settled chunk: the rows that joined another story rewritten, the chunk unlisted."""
    if len(changed):
        conn.execute(update(articles).where(articles.c.id == bindparam("aid"))
                     .values(story_id=bindparam("sid")),
                     [{"aid": a, "sid": s} for a, s in zip(grouping_pass.ids[changed].tolist(),
                                                            grouping_pass.story[changed].tolist(),
                                                            strict=True)])
    done = grouping_pass.ids[chunk].tolist()
    u = articles_ungrouped.c
    compared = delete(articles_ungrouped).where(u.article_id.in_(bindparam("ids", expanding=True)))
    for lo in range(0, len(done), 900):  # within SQLite's oldest limit on bound parameters
        conn.execute(compared, {"ids": done[lo:lo + 900]})


def group_pending(conn: Connection, cfg: Config, now: datetime) -> int:
    """Group every article listed as ungrouped, in the caller's transaction (an editor's add:
    one article); returns how many joined an existing story."""
    grouping = Grouping()
    grouping_pass = _load(conn, cfg, now)
    if grouping_pass is not None:
        for chunk in grouping_pass.chunks():
            _write(conn, grouping_pass, chunk, grouping_pass.group(chunk, grouping))
    return grouping.joined


def group_pending_in_chunks(engine: Engine, cfg: Config, now: datetime) -> Grouping:
    """Group every article listed as ungrouped, CHUNK at a time, each chunk committed: a pass
    that is killed leaves the rest listed, and the next collect (even one where every feed
    answers 304) finishes them with the same bounded work per chunk."""
    grouping = Grouping()
    with engine.connect() as conn:
        grouping_pass = _load(conn, cfg, now)
    if grouping_pass is None:
        return grouping
    total = math.ceil(int(grouping_pass.pending.sum()) / CHUNK)
    for chunk in grouping_pass.chunks():
        changed = grouping_pass.group(chunk, grouping)
        with engine.begin() as conn:
            _write(conn, grouping_pass, chunk, changed)
        grouping.chunks += 1
        log.info("grouping: chunk %d of %d committed (%d articles)", grouping.chunks, total,
                 len(chunk))
    return grouping


def group_texts(texts: Iterable[str], threshold: float) -> list[int]:
    """Story index of each text (the index of its group's first text): grouping without a
    database, for benchmarks and tools."""
    minhashes = [encode(signature(t)) for t in texts]
    return assign_stories(range(len(minhashes)), [None] * len(minhashes), minhashes,
                          [None] * len(minhashes), threshold).tolist()
