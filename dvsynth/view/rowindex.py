"""The viewer's own index of the rows it lists: one small table of the fields the Rows
page filters, sorts and shows (outcome, mode, stage, reasons, query, instructions),
B-tree indexes on them and a trigram FTS5 index for text search, in a database in the
viewer's temporary folder, never in the run (a run is opened read-only).

Without it every mode, stage or reason filter, text search, deep page and a pair's place
in its filter parses every row's JSON: about a second per 100,000 rows. With it those
are index lookups. It is refreshed by chunks (`view.chunks`): after a commit to the run
only the chunks whose rows changed are read again, in one transaction, so a page never
sees half a refresh.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from dvsynth.view import chunks

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=OFF;
CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, src INTEGER NOT NULL,
    seed_id TEXT NOT NULL, ordinal INTEGER NOT NULL, chunk INTEGER NOT NULL, outcome TEXT,
    mode TEXT, stage TEXT, dedup TEXT, reasons TEXT, query TEXT, ia TEXT, ib TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS r_key ON r (src, seed_id);
CREATE INDEX IF NOT EXISTS r_order ON r (src, ordinal, seed_id);
CREATE INDEX IF NOT EXISTS r_chunk ON r (src, chunk);
CREATE INDEX IF NOT EXISTS r_outcome ON r (outcome, src, ordinal, seed_id);
CREATE INDEX IF NOT EXISTS r_mode ON r (mode, src, ordinal, seed_id);
CREATE INDEX IF NOT EXISTS r_stage ON r (stage, src, ordinal, seed_id);
CREATE TABLE IF NOT EXISTS rr (id INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rr_reason ON rr (reason, id);
CREATE INDEX IF NOT EXISTS rr_id ON rr (id);
CREATE VIRTUAL TABLE IF NOT EXISTS t USING fts5 (text, tokenize = 'trigram');
"""


def source_select(i: int) -> str:
    """Source `i`'s rows as they stand (`RunStore.iter_final_rows`'s rule): the checked
    record where its validation ran under the run's current settings, else the
    generated one; `dedup` only with the checked record."""
    current = chunks.CURRENT.format(schema=f"s{i}")
    fresh = f"r.checked IS NOT NULL AND r.validation IS {current}"
    return (
        f"SELECT {i} AS src, r.rowid AS rid, r.seed_id, r.ordinal, r.outcome, "
        f"CASE WHEN {fresh} THEN r.checked ELSE r.record END AS rec, "
        f"CASE WHEN {fresh} THEN r.dedup END AS dedup FROM s{i}.rows r"
    )


_FIELDS = "'$.mode', '$.query', '$.instruction_a', '$.instruction_b', '$.reasons', '$.stages[#-1]'"
_FILL = f"""
INSERT INTO r (src, seed_id, ordinal, chunk, outcome, mode, stage, dedup, reasons, query, ia, ib)
WITH x AS MATERIALIZED (
    SELECT src, seed_id, ordinal, outcome, dedup, json_extract(rec, {_FIELDS}) AS j
    FROM ({{select}}) WHERE rid BETWEEN :low AND :high)
SELECT src, seed_id, ordinal, :chunk, outcome, json_extract(j, '$[0]'),
    CASE WHEN outcome = 'verified' THEN 'verified' WHEN dedup IS NOT NULL THEN 'dedup'
    ELSE coalesce(json_extract(j, '$[5]'), '') END,
    dedup, json_extract(j, '$[4]'), json_extract(j, '$[1]'), json_extract(j, '$[2]'),
    json_extract(j, '$[3]')
FROM x
"""
_OF_CHUNK = "SELECT id FROM r WHERE src = :src AND chunk = :chunk"
_CLEAR = [
    f"DELETE FROM t WHERE rowid IN ({_OF_CHUNK})",
    f"DELETE FROM rr WHERE id IN ({_OF_CHUNK})",
    "DELETE FROM r WHERE src = :src AND chunk = :chunk",
]
_DERIVE = [
    "INSERT INTO rr SELECT r.id, e.value FROM r, json_each(r.reasons) e "
    "WHERE r.src = :src AND r.chunk = :chunk",
    "INSERT INTO rr SELECT id, dedup FROM r WHERE src = :src AND chunk = :chunk AND dedup != ''",
    "INSERT INTO t (rowid, text) SELECT id, coalesce(query, '') || ' ' || coalesce(ia, '') || "
    "' ' || coalesce(ib, '') FROM r WHERE src = :src AND chunk = :chunk",
]


class RowIndex:
    """The index over `databases` (each ATTACHed as s0, s1, ... read-only) in `path`."""

    def __init__(self, databases: list[Path], path: Path, uri_of) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript(_SCHEMA)
        for i, database in enumerate(databases):
            self._db.execute(f"ATTACH DATABASE ? AS s{i}", (uri_of(database),))
        self._marks: list[dict[int, bytes]] = [{} for _ in databases]
        self._lock = threading.Lock()
        self.version: tuple | None = None  # the sources' version the index holds

    def refresh(self, version: tuple) -> None:
        """Bring the index to the sources as they are now; `version`, read before, is
        what it then holds (a change after that makes it stale again, never wrong)."""
        with self._lock:
            if self.version == version:
                return
            self.version = None
            db = self._db
            db.execute("BEGIN")  # the runs: one read snapshot; the index: written
            try:
                found = [chunks.marks(db, f"s{i}") for i in range(len(self._marks))]
                for src, (old, new) in enumerate(zip(self._marks, found, strict=True)):
                    for chunk in chunks.changes(old, new):
                        self._rebuild(src, chunk)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._marks = found
            self.version = version

    def _rebuild(self, src: int, chunk: int) -> None:
        low, high = chunks.bounds(chunk)
        args = {"src": src, "chunk": chunk}
        for sql in _CLEAR:
            self._db.execute(sql, args)
        self._db.execute(
            _FILL.format(select=source_select(src)), {**args, "low": low, "high": high}
        )
        for sql in _DERIVE:
            self._db.execute(sql, args)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def where(f: Any) -> tuple[str, dict[str, Any]]:
    """A `queries.Filter` as a condition over the index's `r` (attached as `x`), with the
    same meaning as `Filter.where` over the rows themselves."""
    parts, args = ["1"], {}
    for name in ("outcome", "mode", "stage"):
        if getattr(f, name):
            parts.append(f"r.{name} = :{name}")
            args[name] = getattr(f, name)
    if f.run is not None:
        parts.append("r.src = :run")
        args["run"] = f.run
    if f.reason:
        parts.append(
            "r.id IN (SELECT id FROM x.rr WHERE reason = :reason OR "
            "(reason >= :reason || ':' AND reason < :reason || ';'))"
        )
        args["reason"] = f.reason
    if f.q:
        if len(f.q) >= 3:  # a trigram index finds each substring of 3 characters or more
            parts.append("r.id IN (SELECT rowid FROM x.t WHERE t MATCH :phrase)")
            args["phrase"] = '"' + f.q.replace('"', '""') + '"'
        parts.append(  # the exact rule (FTS5 folds more than SQLite's lower)
            "instr(lower(coalesce(r.query, '') || ' ' || coalesce(r.ia, '') || ' ' || "
            "coalesce(r.ib, '')), lower(:q)) > 0"
        )
        args["q"] = f.q
    return " AND ".join(parts), args
