"""A source's rows in chunks of consecutive rowids, each with a mark that changes whenever
one of its rows does: what lets the viewer re-read only the rows a running `generate`
or `validate` changed, instead of every row, after each commit.

The viewer cannot add an index or a change log to a run (it opens it read-only), and
not every write moves `updated_at` (dedup and its reset only set `dedup` and `outcome`),
so a chunk's mark hashes what decides how a row reads: its seed id, `updated_at`,
whether its validation is the run's current one, `dedup` and `outcome`. Reading those
columns of every row is one scan without any JSON parsed (about 0.1 s per 100,000 rows);
a row replaced by `put_rows` gets a new rowid, which changes both chunks it touches.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator

from dvsynth.runs.store import SETTINGS_KEY

BITS = 10  # 1,024 rowids a chunk: a changed row costs re-reading about 1,000 rows

#: The settings key a row's validation must carry to count as validated now.
CURRENT = f"(SELECT value FROM {{schema}}.meta WHERE key = '{SETTINGS_KEY}')"


def marks(db: sqlite3.Connection, schema: str) -> dict[int, bytes]:
    """chunk -> a hash of its rows' state, for every chunk of `schema`.rows that has rows."""
    sep = "char(31)"
    (current,) = db.execute(f"SELECT {CURRENT.format(schema=schema)}").fetchone()
    found = db.execute(
        f"SELECT rowid >> {BITS}, group_concat(seed_id || {sep} || "
        f"CAST(updated_at * 1000000 AS INTEGER) || {sep} || (validation IS :current) || "
        f"{sep} || coalesce(dedup, char(30)) || {sep} || coalesce(outcome, ''), char(29)) "
        f"FROM {schema}.rows GROUP BY 1",
        {"current": current},
    )
    return {chunk: hashlib.blake2b(text.encode(), digest_size=16).digest() for chunk, text in found}


def bounds(chunk: int) -> tuple[int, int]:
    """The first and last rowid of `chunk`."""
    return chunk << BITS, ((chunk + 1) << BITS) - 1


def changes(old: dict[int, bytes], new: dict[int, bytes]) -> Iterator[int]:
    """Chunks added, changed or emptied since `old`."""
    for chunk in old.keys() | new.keys():
        if old.get(chunk) != new.get(chunk):
            yield chunk
