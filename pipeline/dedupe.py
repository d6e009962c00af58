"""Near-duplicate stories: syndicated copies and SEO rewrites of one article become one story.

Each article gets a MinHash signature (datasketch) of its content words: stopwords dropped,
plural/verb endings trimmed. Word n-grams only catch verbatim copies; rewrites that reword
and reorder sentences (the sample article's three versions share 12-21% of their word
3-grams) still share a third or more of their content words, while two different articles
on the same subject share far fewer. New articles are looked up in an LSH index of recent
signatures, so grouping costs a few band lookups per article instead of a comparison with
every other article; candidates are confirmed by their estimated Jaccard similarity.
`story_id` is the id of the group's first article: selection shows each story once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection

from kpdigest.config import Config
from kpdigest.models import articles

NUM_PERM = 256
SCHEME = "affine32"
MIN_FEATURES = 12  # fewer content words than this: too little text to call anything a copy
_WORD_RE = re.compile(r"[^\W\d_]{3,}")
STOPWORDS = frozenset("""
about above after again against all also along although among and any are around because been
before being below between both but can cannot could did does doing down during each either
even ever every few for from further had has have having her here hers him his how however
into its itself just like made make many may might more most much must near need never not now
off often once only other our ours out over own per quite rather really said same see she
should since some still such than that the their them then there these they this those though
through too under until upon very was way well were what when where whether which while who
whom whose why will with within without would yet you your yours
""".split())  # noqa: SIM905 - a word list reads better as text
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
@lru_cache(maxsize=1)
def _template() -> MinHash:
    """Permutations are generated once; every signature shares them (and must, to compare)."""
    return MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> bytes:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)].encode()
    return word.encode()


@lru_cache(maxsize=1)
def _affine() -> tuple[np.ndarray, np.ndarray]:
    a, b = _template().permutations
    return a.astype(np.uint32)[None, :], b.astype(np.uint32)[None, :]


@lru_cache(maxsize=200_000)
def _feature_hash(feature: bytes) -> int:
    """datasketch's own 32-bit SHA-1 hash, cached: vocabularies repeat, articles do not."""
    return sha1_hash32(feature)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser, which datasketch's affine32 scheme applies to every hash."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def features(text: str) -> set[bytes]:
    """The content words of `text`, lower-cased and crudely stemmed."""
    return {_stem(w) for w in set(_WORD_RE.findall(text.lower())) - STOPWORDS}


def signature(text: str) -> np.ndarray | None:
    """MinHash hash values of `text`, or None when it is too short to compare safely."""
    words = features(text)
    if len(words) < MIN_FEATURES:
        return None
    # datasketch's MinHash(scheme="affine32").update_batch, value for value, without
    # building a MinHash object (and checking its permutations) per article.
    hv = _fmix32(np.fromiter((_feature_hash(w) for w in words), dtype=np.uint32, count=len(words)))
    a, b = _affine()
    return (hv[:, None] * a + b).min(axis=0)  # type: ignore[no-any-return]


def encode(values: np.ndarray | None) -> str | None:
    if values is None:
        return None
    return base64.b64encode(values.astype("<u4").tobytes()).decode("ascii")


def decode(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    try:
        values = np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint64)
    except ValueError:
        return None
    return values if len(values) == NUM_PERM else None


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


@dataclass
class Item:
    id: int
    story_id: int
    values: np.ndarray | None
    content_hash: str | None


class BandIndex:
    """Locality-sensitive hashing over the MinHash values: 85 bands of 3 values each. Two
    articles land in a common bucket with probability 1-(1-J^3)^85: 98% at Jaccard 0.35,
    100% at 0.5, 8% at 0.1; candidates are then checked against the threshold. (datasketch's
    MinHashLSH does the same banding, but per band in Python: ten times slower here.)"""

    ROWS = 3
    BANDS = NUM_PERM // ROWS
    _MIX = np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D], dtype=np.uint64)
    _SALT = np.arange(BANDS, dtype=np.uint64) << np.uint64(40)

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}  # band key -> matrix rows

    def keys(self, values: np.ndarray) -> list[int]:
        rows = values[: self.BANDS * self.ROWS].astype(np.uint64).reshape(self.BANDS, self.ROWS)
        return ((rows * self._MIX).sum(axis=1) ^ self._SALT).tolist()  # type: ignore[no-any-return]

    def insert(self, key: int, values: np.ndarray) -> None:
        for k in self.keys(values):
            self.buckets.setdefault(k, []).append(key)

    def query(self, values: np.ndarray) -> set[int]:
        found: set[int] = set()
        for k in self.keys(values):
            bucket = self.buckets.get(k)
            if bucket:
                found.update(bucket)
        return found


class Grouper:
    """Assigns each item, in id order, to the story of the earliest similar item seen so far.

    Indexed signatures are rows of one uint32 matrix; the LSH buckets hold row numbers, so
    checking a few hundred candidates is a couple of numpy operations: the first 32 values
    weed out most of them, the survivors are compared in full. Only the first few members of
    a story are indexed: a story copied a hundred times still costs a handful of comparisons.
    """

    MEMBERS_INDEXED = 3
    PREFILTER = 32

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.lsh = BandIndex()
        self.matrix = np.zeros((1024, NUM_PERM), dtype=np.uint32)
        self.row_story = np.zeros(1024, dtype=np.int64)  # story of each indexed row
        self.rows = 0
        self.story_of: dict[int, int] = {}
        self.indexed_members: dict[int, int] = {}
        self.by_hash: dict[str, int] = {}
        self.joined = 0  # articles that joined an existing story since the index was built

    def add(self, item: Item, group: bool) -> int:
        """Index `item`; when `group`, first return the story it belongs to (else its own)."""
        if group:
            item.story_id = self._match(item)
        self.story_of[item.id] = item.story_id
        if item.content_hash:
            self.by_hash.setdefault(item.content_hash, item.id)
        members = self.indexed_members.get(item.story_id, 0)
        if item.values is not None and members < self.MEMBERS_INDEXED:
            self.indexed_members[item.story_id] = members + 1
            self.lsh.insert(self._store(item.values, item.story_id), item.values)
        return item.story_id

    def _store(self, values: np.ndarray, story: int) -> int:
        row = self.rows
        if row == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
            self.row_story = np.concatenate([self.row_story, np.zeros_like(self.row_story)])
        self.matrix[row] = values
        self.row_story[row] = story
        self.rows += 1
        return row

    def _match(self, item: Item) -> int:
        stories = []
        if item.content_hash and item.content_hash in self.by_hash:
            stories.append(self.story_of[self.by_hash[item.content_hash]])
        if item.values is not None:
            rows = np.fromiter(self.lsh.query(item.values), dtype=np.int64)
            if len(rows):
                values = item.values.astype(np.uint32)
                head = self.PREFILTER
                # At the threshold, 32 values agree ~threshold*32 times; a wide margin below
                # that keeps every real match while most random candidates drop out.
                near = np.count_nonzero(self.matrix[rows, :head] == values[:head], axis=1)
                rows = rows[near >= max(1, int(self.threshold * head * 0.4))]
                if len(rows):
                    same = np.count_nonzero(self.matrix[rows] == values, axis=1)
                    stories += self.row_story[rows[same >= self.threshold * NUM_PERM]].tolist()
        return min(stories, default=item.story_id)


def group_pending(conn: Connection, cfg: Config, now: datetime) -> int:
    """Give every article stored without a story yet the story of its earliest near-duplicate
    among the last `collect.near_duplicate_days` (or its own id); returns how many joined an
    existing story. One pass after a collect run (or an editor's add), in one transaction."""
    if conn.execute(select(articles.c.id).where(articles.c.story_id.is_(None)).limit(1)).first() is None:
        return 0  # nothing new: a run of 304s never loads the signatures
    since = now - timedelta(days=cfg.collect.near_duplicate_days)
    rows = conn.execute(
        select(articles.c.id, articles.c.story_id, articles.c.minhash, articles.c.content_hash)
        .where(or_(articles.c.created_at >= since, articles.c.story_id.is_(None)))
        .order_by(articles.c.id))
    grouper = Grouper(cfg.collect.near_duplicate_threshold)
    changes = []
    for row in rows:
        pending = row.story_id is None
        story = grouper.add(Item(row.id, row.story_id or row.id, decode(row.minhash), row.content_hash),
                            group=pending)
        if pending:
            changes.append({"aid": row.id, "sid": story})
    if changes:
        conn.execute(update(articles).where(articles.c.id == bindparam("aid"))
                     .values(story_id=bindparam("sid")), changes)
    return sum(1 for c in changes if c["sid"] != c["aid"])


def group_texts(texts: Iterable[str], threshold: float) -> list[int]:
    """Story index of each text (the index of its group's first text): grouping without a
    database, for benchmarks and tools."""
    grouper = Grouper(threshold)
    return [grouper.add(Item(i, i, signature(t), None), group=True) for i, t in enumerate(texts)]
