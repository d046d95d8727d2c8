"""Exact and near-duplicate pairs across everything being validated, in sub-quadratic time.

A pair's text is its query and both instructions, normalised (lowercase, NFKC, no
punctuation). Exact duplicates share that text. Near duplicates are found by MinHash
over word unigrams and bigrams with LSH banding (only pairs that collide in a band are
candidates; a small bucket is compared all-pairs, a large one as a star on its first
member, so the work grows with the row count, not its square), then confirmed by
rapidfuzz's `ratio` >= the threshold.
Confirmed pairs are clustered; each cluster keeps its smallest pair_id, so the survivor
never depends on the order or the sharding of the input.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz

from dvsynth.validators.rules import normalize

# 24 bands of 4 rows: a pair with Jaccard 0.64 (one word changed in a 12-word text)
# collides in some band with probability 0.99; one with 0.3 in a given band, 0.008.
NUM_BANDS = 24
ROWS_PER_BAND = 4
#: Buckets up to this size are compared all-pairs; larger ones as a star on their first
#: member, so that no bucket costs more than linear work.
SMALL_BUCKET = 8
NUM_PERM = NUM_BANDS * ROWS_PER_BAND
BATCH = 50_000
VERIFY_CHUNK = 100_000
_MASK = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True)
class Duplicate:
    kind: str  # "exact" | "near"
    survivor: str

    @property
    def reason(self) -> str:
        return f"dedup:{self.kind}:{self.survivor}"


def pair_text(query: str, instruction_a: str | None, instruction_b: str | None) -> str:
    """What dedup compares for a pair: its query and both instructions."""
    return " | ".join((query, instruction_a or "", instruction_b or ""))


def _permutations(seed: int = 20260427) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
    return a, b


class _ShingleHasher:
    """Word -> 32-bit crc, cached; a text -> its unigram and bigram hashes (uint64)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        cache = self._cache
        ids = []
        for word in words:
            value = cache.get(word)
            if value is None:
                value = cache[word] = zlib.crc32(word.encode("utf-8"))
            ids.append(value)
        unigrams = np.asarray(ids or [0], dtype=np.uint64)
        bigrams = (unigrams[:-1] << np.uint64(32)) | unigrams[1:]
        return np.concatenate([unigrams, bigrams])


def band_keys(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), NUM_BANDS) uint64: one hash per band of each text's MinHash signature."""
    a, b = _permutations()
    mix = np.random.default_rng(7).integers(1, 2**63, size=ROWS_PER_BAND, dtype=np.uint64)
    hasher = _ShingleHasher()
    keys = np.empty((len(texts), NUM_BANDS), dtype=np.uint64)
    for start in range(0, len(texts), BATCH):
        chunk = [hasher(text.split()) for text in texts[start : start + BATCH]]
        lengths = np.fromiter((len(c) for c in chunk), dtype=np.int64, count=len(chunk))
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        shingles = np.concatenate(chunk)
        signature = np.empty((len(chunk), NUM_PERM), dtype=np.uint64)
        for k in range(NUM_PERM):
            permuted = (shingles * a[k] + b[k]) >> np.uint64(32)
            signature[:, k] = np.minimum.reduceat(permuted, offsets)
        for band in range(NUM_BANDS):
            rows = signature[:, band * ROWS_PER_BAND : (band + 1) * ROWS_PER_BAND]
            keys[start : start + len(chunk), band] = (rows * mix).sum(axis=1)
    return keys


def _candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """(m, 2) int64 index pairs (leader, member) that share a bucket in some band."""
    found = []
    for band in range(keys.shape[1]):
        column = keys[:, band]
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        sizes = np.diff(np.concatenate([starts, [len(order)]]))
        position = np.arange(len(order)) - np.repeat(starts, sizes)
        size_of = np.repeat(sizes, sizes)
        # Member at position p links to the members 1..SMALL_BUCKET-1 places before it
        # in a small bucket (all pairs), and to the bucket's first member in a large one.
        for lag in range(1, SMALL_BUCKET):
            linked = (position >= lag) & (size_of <= SMALL_BUCKET)
            index = np.flatnonzero(linked)
            found.append(np.stack([order[index - lag], order[index]], axis=1))
        large = np.flatnonzero((position > 0) & (size_of > SMALL_BUCKET))
        leaders = order[np.repeat(starts, sizes)[large]]
        found.append(np.stack([leaders, order[large]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    del found
    pairs.sort(axis=1)
    # One int64 per pair (left * n + right) dedups far cheaper than np.unique(axis=0).
    n = keys.shape[0]
    flat = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([flat // n, flat % n], axis=1)


class _Clusters:
    """Union-find whose root is always the smallest index (the survivor)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def find_duplicates(
    ids: Sequence[str], texts: Sequence[str], threshold: float = 90.0
) -> dict[str, Duplicate]:
    """id -> Duplicate for every item that is not its cluster's survivor."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    sorted_ids = [ids[i] for i in order]
    normalized = [normalize(texts[i]) for i in order]
    duplicates: dict[str, Duplicate] = {}
    first_with: dict[str, int] = {}
    unique: list[int] = []
    for i, text in enumerate(normalized):
        if text in first_with:
            duplicates[sorted_ids[i]] = Duplicate("exact", sorted_ids[first_with[text]])
        else:
            first_with[text] = i
            unique.append(i)
    if len(unique) < 2:
        return duplicates
    keys = band_keys([normalized[i] for i in unique])
    clusters = _Clusters(len(unique))
    candidates = _candidate_pairs(keys)
    del keys
    for start in range(0, len(candidates), VERIFY_CHUNK):  # small Python lists at a time
        for left, right in candidates[start : start + VERIFY_CHUNK].tolist():
            if clusters.find(left) == clusters.find(right):
                continue
            a, b = normalized[unique[left]], normalized[unique[right]]
            if fuzz.ratio(a, b, score_cutoff=threshold):
                clusters.union(left, right)
    for position, index in enumerate(unique):
        root = clusters.find(position)
        if root != position:
            duplicates[sorted_ids[index]] = Duplicate("near", sorted_ids[unique[root]])
    return duplicates


@dataclass
class Dedup:
    """Dedup as the last stage: it compares the kept rows of every run given at once, so
    it runs over all rows after the per-row steps (`validators.run`), not inside them."""

    near_threshold: float = 90.0
    name: str = "dedup"
    reason_prefix: str = "dedup"

    def settings(self) -> dict[str, float]:
        return {"near_threshold": self.near_threshold}

    def describe(self) -> str:
        return f"exact and near-duplicate removal (rapidfuzz ratio >= {self.near_threshold:g})"

    def __call__(self, ids: Sequence[str], texts: Sequence[str]) -> dict[str, Duplicate]:
        return find_duplicates(ids, texts, self.near_threshold)
