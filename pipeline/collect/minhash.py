"""MinHash signatures of articles' content words (datasketch's affine32 scheme).

Split from `pipeline.collect.dedupe` so that the parser processes, which sign every entry, import
neither SQLAlchemy nor the grouping code. Word n-grams only catch verbatim copies; rewrites
that reword and reorder sentences (the sample article's three versions share 12-21% of their
word 3-grams) still share a third or more of their content words, so the features are
content words: stopwords dropped, plural/verb endings trimmed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

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
_CACHE_LIMIT = 200_000  # words remembered per process (parser processes live long)


@lru_cache(maxsize=1)
def _affine() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutations for seed 1, generated as `MinHash._init_permutations`
    does. datasketch itself is not imported at run time: its package pulls in scipy (0.5-1 s
    per process, and every parser process would pay it); tests/test_dedupe.py holds these
    signatures to datasketch's own, value for value."""
    gen = np.random.RandomState(1)
    a = gen.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


def sha1_hash32(data: bytes) -> int:
    """datasketch's default 32-bit hash: the first four bytes of SHA-1, little-endian."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


def _stem(word: str | bytes) -> bytes:
    text = word.decode() if isinstance(word, bytes) else word  # endings count characters
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and len(text) - len(suffix) >= 4:
            return text[: -len(suffix)].encode()
    return text.encode()


def _fmix32(h: int) -> int:
    """MurmurHash3's finaliser, which datasketch's affine32 scheme applies to every hash."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


class _Memo(dict):
    """A dict that computes missing entries: looked up with `map(memo.__getitem__, ...)`, at
    C speed (vocabularies repeat, articles do not); forgets everything when full."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> Any:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        value = self[key] = self.compute(key)
        return value


_STEMS = _Memo(_stem)  # word (bytes for ASCII text, else str) -> stem
_HASHES = _Memo(lambda stem: _fmix32(sha1_hash32(stem)))  # stem -> datasketch's hash, pre-mixed
_ASCII_LETTERS = bytes(c if 97 <= c <= 122 else 32 for c in range(256))  # the rest separates words
_ASCII_STOPWORDS = frozenset(w.encode() for w in STOPWORDS)


def features(text: str) -> set[bytes]:
    """The content words of `text`, lower-cased and crudely stemmed."""
    lowered = text.lower()
    if lowered.isascii():  # the same words as the regular expression, split in C
        words = {w for w in lowered.encode().translate(_ASCII_LETTERS).split() if len(w) >= 3}
        return set(map(_STEMS.__getitem__, words - _ASCII_STOPWORDS))
    return set(map(_STEMS.__getitem__, set(_WORD_RE.findall(lowered)) - STOPWORDS))


def _word_hash(word: bytes) -> int | None:
    """An ASCII word's feature hash, None for a word that is no feature (short, a stopword)."""
    if len(word) < 3 or word in _ASCII_STOPWORDS:
        return None
    return _HASHES[_STEMS[word]]


_WORD_HASHES = _Memo(_word_hash)  # ASCII word -> its feature hash or None


def _hashes(text: str) -> np.ndarray | None:
    """The feature hashes of `text`. For ASCII text, straight from each distinct word, in C
    (`features` then a hash per stem, without building either set in Python): words with one
    stem give one hash, so the set is the same but for a 32-bit collision, which MinHash
    cannot tell from one feature anyway."""
    lowered = text.lower()
    if lowered.isascii():
        hashes = set(map(_WORD_HASHES.__getitem__, set(lowered.encode().translate(_ASCII_LETTERS).split())))
        hashes.discard(None)
    else:
        hashes = set(map(_HASHES.__getitem__, features(text)))
    if len(hashes) < MIN_FEATURES:
        return None
    return np.fromiter(hashes, dtype=np.uint32, count=len(hashes))


def signature(text: str) -> np.ndarray | None:
    """MinHash hash values of `text` (uint32, datasketch's `MinHash(num_perm=256, seed=1,
    scheme="affine32").update_batch` value for value), or None when it is too short to compare
    safely."""
    return signatures([text])[0]


def signatures(texts: list[str]) -> list[np.ndarray | None]:
    """`signature` of each text: the words of all of them first, then the arithmetic."""
    features = [_hashes(text) for text in texts]
    a, b = _affine()
    out: list[np.ndarray | None] = []
    for hv in features:
        if hv is None:
            out.append(None)
            continue
        values = np.multiply.outer(hv, a)
        values += b
        out.append(values.min(axis=0))
    return out


def encode(values: np.ndarray | None) -> str | None:
    if values is None:
        return None
    return base64.b64encode(values.astype("<u4").tobytes()).decode("ascii")


def decode(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    try:
        values = np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)
    except ValueError:
        return None
    return values if len(values) == NUM_PERM else None


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM
