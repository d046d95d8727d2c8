"""The seed ids one pass over a seed source has met, and where each was met first.

A row's identity is its seed id, never its position in the file (positions shift when a
bad line is fixed or rows are inserted), so a duplicate id (a second row with an id the
source already used) can only be told by the pass itself: the first row with an id owns
it. Memory stays flat at any seed count: a Bloom filter (`runs.key_filter`) answers
"never met" for almost every id, and the exact record (id -> first location) lives in a
private temporary SQLite database, written in batches and read only on a "maybe".
"""

from __future__ import annotations

import sqlite3

from dvsynth.runs.key_filter import KeyFilter

_BATCH = 1024


class SeenIds:
    """`first_location(id, here)`: None the first time an id is met, else where it was."""

    def __init__(self) -> None:
        self._filter = KeyFilter()
        self._db: sqlite3.Connection | None = None  # made on the first write
        self._pending: list[tuple[str, str]] = []

    def first_location(self, seed_id: str, location: str) -> str | None:
        """Where `seed_id` was met before in this pass, or None (and it is met here now)."""
        if seed_id in self._filter:
            self._flush()
            found = (
                self._table()
                .execute("SELECT location FROM seen WHERE seed_id = ?", (seed_id,))
                .fetchone()
            )
            if found is not None:
                return found[0]
        else:
            self._filter.add(seed_id)
        self._pending.append((seed_id, location))
        if len(self._pending) >= _BATCH:
            self._flush()
        return None

    def _table(self) -> sqlite3.Connection:
        if self._db is None:
            # "" is a private on-disk temporary database, deleted when it is closed.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("CREATE TABLE seen (seed_id TEXT PRIMARY KEY, location TEXT)")
        return self._db

    def _flush(self) -> None:
        if self._pending:
            db = self._table()
            with db:
                db.execute("BEGIN")
                db.executemany("INSERT INTO seen VALUES (?, ?)", self._pending)
            self._pending.clear()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._pending.clear()
