"""The LLM response cache of a run: every answer, keyed by a hash of (model, messages,
params), in the run's database, so a rerun never pays for a call twice.

An answer waits in memory until the row that used it is committed, then both go in one
transaction (`flush_into`): one commit per row instead of two. A kill in between loses
only calls whose rows were not committed either.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from dvsynth.runs.key_filter import ColumnKeys


class ResponseCache:
    """`get_response` / `put_response` (the client's `ResponseCache` protocol) over the
    run database's `responses` table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._pending: dict[str, str] = {}
        self._stored = ColumnKeys(db, "responses", "key")  # keys the table may hold

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def get_response(self, key: str) -> dict[str, Any] | None:
        pending = self._pending.get(key)
        if pending is not None:
            return json.loads(pending)
        if not self._stored.may_hold(key):
            return None  # certainly not in the table: no SQLite read
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_response(self, key: str, value: dict[str, Any]) -> None:
        """Cache an answer; it is written with the next committed row (`flush_into`)."""
        self._pending[key] = json.dumps(value)

    def flush_into(self, db: sqlite3.Connection) -> None:
        """Write the waiting answers inside the caller's open transaction."""
        db.executemany(
            "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
            list(self._pending.items()),
        )
        self.stored(self._pending)
        self._pending.clear()

    def stored(self, keys: Iterable[str]) -> None:
        """Keys just written to the table, here or by the batch ledger: every writer of
        `responses` in this process tells the filter, or a lookup would miss them."""
        self._stored.added(keys)
