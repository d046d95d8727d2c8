"""Which keys a table may hold, in memory: lookups of keys it cannot hold skip SQLite.

Every row asks the store twice for something a fresh run never has: its seed's earlier
row (resuming) and its prompt's cached answer. At hundreds of rows a second those two
SQLite reads were ~4% of the CPU per row (benchmarks/README.md, throughput). A Bloom
filter answers "certainly not there" from a few bits; "maybe" still asks SQLite, so an
answer is never wrong, only sometimes not faster. It has no false negatives for keys
it was told about: every write of the table in this process must `add` its keys.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

MIN_BITS = 1 << 24  # 2 MiB: ~0.5% false positives at a million keys
BITS_PER_KEY = 16
_MASK64 = (1 << 64) - 1


class KeyFilter:
    """A Bloom filter of str keys (Python's own str hash, double hashing)."""

    def __init__(self, keys: Iterable[str] = (), expected: int = 0) -> None:
        bits = MIN_BITS
        while bits < BITS_PER_KEY * expected:
            bits <<= 1
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)
        for key in keys:
            self.add(key)

    def _positions(self, key: str) -> tuple[int, int, int]:
        h = hash(key) & _MASK64
        first, step = h & 0xFFFFFFFF, (h >> 32) | 1
        mask = self._mask
        return first & mask, (first + step) & mask, (first + 2 * step) & mask

    def add(self, key: str) -> None:
        bits = self._bits
        for position in self._positions(key):
            bits[position >> 3] |= 1 << (position & 7)

    def __contains__(self, key: str) -> bool:
        """False: the key was never added. True: it may have been."""
        bits = self._bits
        for position in self._positions(key):
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
        return True


class ColumnKeys:
    """The keys a table's column may hold: a `KeyFilter` read from the table on the first
    question (a run opened only to read never pays for it), then kept up to date by
    `added`, which every writer of the column in this process must call."""

    def __init__(self, db: sqlite3.Connection, table: str, column: str) -> None:
        self._db, self._table, self._column = db, table, column
        self._filter: KeyFilter | None = None

    def may_hold(self, key: str) -> bool:
        """False: certainly not in the table. True: ask the table."""
        if self._filter is None:
            (count,) = self._db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()
            values = self._db.execute(f"SELECT {self._column} FROM {self._table}")
            self._filter = KeyFilter((value for (value,) in values), expected=count)
        return key in self._filter

    def added(self, keys: Iterable[str]) -> None:
        if self._filter is not None:  # else the filter, when built, reads them
            for key in keys:
                self._filter.add(key)
