"""SQL over what the viewer shows: every source's `rows` table behind one read-only
connection, so a page of rows is a LIMIT/OFFSET query and never all rows in memory.

Each run's database is ATTACHed read-only (immutable where its folder cannot be
written, as `runs.store` readers do), and one TEMP VIEW `v` unions them with each row as
it stands: the checked record where its validation ran under the run's current settings,
else the generated one (the rule `RunStore.iter_final_rows` follows). A reload reads
what a running `generate` or `validate` committed since.

Pages read the viewer's own index of the rows (`view.rowindex`) where it holds the
sources as they are now, and `v` itself while it is first built or catching up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from dvsynth.errors import UserError
from dvsynth.runs.store import DATABASE, OUTCOMES
from dvsynth.view import rowindex
from dvsynth.view.rowindex import RowIndex, source_select

PAGE_SIZE = 50
MODES = ("reverse", "bootstrap")


@dataclass(frozen=True)
class Filter:
    """The rows a page lists; every field optional ('' or None: any)."""

    outcome: str = ""
    stage: str = ""
    reason: str = ""
    mode: str = ""
    run: int | None = None
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str], runs: int) -> Filter:
        """From a page's query string; a ValueError names a bad value."""
        outcome = query.get("outcome", "")
        if outcome and outcome not in OUTCOMES:
            raise ValueError(f"outcome '{outcome}' is not one of {', '.join(OUTCOMES)}")
        mode = query.get("mode", "")
        if mode and mode not in MODES:
            raise ValueError(f"mode '{mode}' is not one of {', '.join(MODES)}")
        run = query.get("run", "")
        if run and (not run.isdigit() or int(run) >= runs):
            raise ValueError(f"run '{run}' is not one of 0..{runs - 1}")
        return cls(
            outcome=outcome,
            stage=query.get("stage", "")[:200],
            reason=query.get("reason", "")[:500],
            mode=mode,
            run=int(run) if run else None,
            q=query.get("q", "")[:500],
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this filter (with `changes`), empty fields left out."""
        values = replace(self, **changes) if changes else self
        out = {}
        for f in fields(self):
            value = getattr(values, f.name)
            if value not in ("", None):
                out[f.name] = str(value)
        return out

    def query_string(self, **extra: Any) -> str:
        params = self.params()
        params.update({k: str(v) for k, v in extra.items() if v not in ("", None)})
        return urlencode(params)

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition over `v` and its parameters."""
        parts, args = ["1"], {}
        if self.outcome:
            parts.append("outcome = :outcome")
            args["outcome"] = self.outcome
        if self.mode:
            parts.append("json_extract(rec, '$.mode') = :mode")
            args["mode"] = self.mode
        if self.run is not None:
            parts.append("src = :run")
            args["run"] = self.run
        if self.stage:
            parts.append(f"{STAGE_SQL} = :stage")
            args["stage"] = self.stage
        if self.reason:
            parts.append(
                "(EXISTS (SELECT 1 FROM json_each(rec, '$.reasons') "
                "WHERE value = :reason OR substr(value, 1, length(:reason) + 1) = :reason || ':') "
                "OR dedup = :reason OR substr(dedup, 1, length(:reason) + 1) = :reason || ':')"
            )
            args["reason"] = self.reason
        if self.q:
            if self.q.isprintable() and not set(self.q) & {'"', "\\"}:  # JSON writes as is
                parts.append("rec LIKE :like ESCAPE '!'")  # cheap: no JSON parsed
                pattern = self.q.replace("!", "!!").replace("%", "!%").replace("_", "!_")
                args["like"] = f"%{pattern}%"
            parts.append(
                "instr(lower(coalesce(json_extract(rec, '$.query'), '') || ' ' || "
                "coalesce(json_extract(rec, '$.instruction_a'), '') || ' ' || "
                "coalesce(json_extract(rec, '$.instruction_b'), '')), lower(:q)) > 0"
            )
            args["q"] = self.q
        return " AND ".join(parts), args


#: The stage a row reached, as `DualView.stage` says it: verified, else its last stage.
STAGE_SQL = (
    "(CASE WHEN outcome = 'verified' THEN 'verified' WHEN dedup IS NOT NULL THEN 'dedup' "
    "ELSE coalesce(json_extract(rec, '$.stages[#-1]'), '') END)"
)
ORDER = "ORDER BY src, ordinal, seed_id"
_LISTED = (
    "src, seed_id, ordinal, outcome, json_extract(rec, '$.mode'), json_extract(rec, '$.query'), "
    f"json_extract(rec, '$.instruction_a'), json_extract(rec, '$.instruction_b'), {STAGE_SQL}, "
    "json_extract(rec, '$.reasons'), dedup"
)


_INDEXED = (
    "SELECT src, seed_id, ordinal, outcome, mode, query, ia, ib, stage, reasons, dedup FROM x.r"
)


@dataclass
class Listed:
    """One row of a Rows page."""

    src: int
    seed_id: str
    ordinal: int
    outcome: str
    mode: str
    query: str
    instruction_a: str
    instruction_b: str
    stage: str
    reasons: list[str]

    @classmethod
    def of(cls, row: tuple) -> Listed:
        src, seed_id, ordinal, outcome, mode, query, ia, ib, stage, reasons, dedup = row
        found = json.loads(reasons) if reasons else []
        if dedup:
            found.append(dedup)
        return cls(
            src,
            seed_id,
            ordinal,
            outcome,
            mode or "",
            query or "",
            ia or "",
            ib or "",
            stage,
            found,
        )


def attach_uri(path: Path) -> str:
    """A read-only URI for `path`: immutable where its folder cannot be written."""
    mode = "ro" if os.access(path.parent, os.W_OK) else "ro&immutable=1"
    return f"file:{quote(str(path))}?mode={mode}"


class Catalog:
    """Several sources' rows behind one read-only connection (`v`)."""

    def __init__(self, databases: list[Path], index: bool = False) -> None:
        """`index`: keep the viewer's own index of the rows (`view.rowindex`) in a
        temporary folder, for pages that stay fast on a large run."""
        if len(databases) > 9:
            raise UserError("view: give at most 9 run directories or export folders at once")
        self.databases = databases
        self._stages: tuple[tuple, list[str]] | None = None
        self._db = sqlite3.connect(
            ":memory:", uri=True, isolation_level=None, check_same_thread=False
        )
        for i, path in enumerate(databases):
            try:
                self._db.execute(f"ATTACH DATABASE ? AS s{i}", (attach_uri(path),))
                self._db.execute(f"SELECT 1 FROM s{i}.rows LIMIT 1").fetchall()
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{path}: not a readable dvsynth database ({exc})") from None
        selects = [
            f"SELECT src, seed_id, ordinal, outcome, rec, dedup FROM ({source_select(i)})"
            for i in range(len(databases))
        ]
        self._db.execute("CREATE TEMP VIEW v AS " + " UNION ALL ".join(selects))
        self.index: RowIndex | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        if index:
            self._tmp = tempfile.TemporaryDirectory(prefix="dvsynth-view-index-")
            path = Path(self._tmp.name) / "rows-index.sqlite"
            self.index = RowIndex(databases, path, attach_uri)
            self._db.execute("ATTACH DATABASE ? AS x", (str(self.index.path),))

    def refresh_index(self) -> None:
        """Bring the index up to the sources (in a worker thread: it reads the rows that
        changed since its last refresh)."""
        if self.index is not None:
            self.index.refresh(self.version())

    def indexed(self) -> bool:
        """Whether pages can read the index: it holds the sources as they are now."""
        return self.index is not None and self.index.version == self.version()

    def close(self) -> None:
        self._db.close()
        if self.index is not None:
            self.index.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def connection(self, src: int) -> tuple[sqlite3.Connection, str]:
        """The shared connection and the schema name of source `src`."""
        return self._db, f"s{src}"

    def _over(self, where: Filter) -> tuple[str, str, dict[str, Any]]:
        """(the table, the condition, its parameters): the index where it is current,
        else the rows themselves (while the index is first built, or just after a
        commit it has not caught up with)."""
        if self.indexed():
            sql, args = rowindex.where(where)
            return "x.r r", sql, args
        sql, args = where.where()
        return "v", sql, args

    def count(self, where: Filter) -> int:
        table, sql, args = self._over(where)
        return self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {sql}", args).fetchone()[0]

    def page(self, where: Filter, page: int, size: int = PAGE_SIZE) -> list[Listed]:
        table, sql, args = self._over(where)
        keys = self._db.execute(  # the sort carries the keys only, not the texts
            f"SELECT src, seed_id FROM {table} WHERE {sql} {ORDER} LIMIT :limit OFFSET :offset",
            {**args, "limit": size, "offset": max(0, page) * size},
        ).fetchall()
        listed = _INDEXED if table != "v" else f"SELECT {_LISTED} FROM v"
        found = (
            self._db.execute(listed + " WHERE src = ? AND seed_id = ?", k).fetchone() for k in keys
        )
        return [Listed.of(row) for row in found if row is not None]

    def record(self, src: int, seed_id: str) -> tuple[dict[str, Any], str, str | None] | None:
        """(the row as it stands, its outcome, its dedup reason) or None."""
        found = self._db.execute(
            "SELECT rec, outcome, dedup FROM v WHERE src = ? AND seed_id = ?", (src, seed_id)
        ).fetchone()
        if found is None:
            return None
        return json.loads(found[0]), found[1], found[2]

    def neighbours(self, where: Filter, src: int, seed_id: str) -> dict[str, Any]:
        """The previous and next rows within `where`, and this row's place in it (keyset
        queries: on the index each is a walk of one B-tree from this row's key)."""
        table, sql, args = self._over(where)
        key = self._db.execute(
            f"SELECT ordinal FROM {table} WHERE src = ? AND seed_id = ?", (src, seed_id)
        ).fetchone()
        if key is None:
            return {"prev": None, "next": None, "position": None}
        args = {**args, "s": src, "o": key[0], "i": seed_id}
        prev = self._db.execute(
            f"SELECT src, seed_id FROM {table} WHERE {sql} "
            "AND (src, ordinal, seed_id) < (:s, :o, :i) "
            "ORDER BY src DESC, ordinal DESC, seed_id DESC LIMIT 1",
            args,
        ).fetchone()
        nxt = self._db.execute(
            f"SELECT src, seed_id FROM {table} WHERE {sql} "
            f"AND (src, ordinal, seed_id) > (:s, :o, :i) {ORDER} LIMIT 1",
            args,
        ).fetchone()
        before = self._db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE {sql} AND (src, ordinal, seed_id) < (:s, :o, :i)",
            args,
        ).fetchone()[0]
        return {"prev": prev, "next": nxt, "position": before + 1}

    def stages(self) -> list[str]:
        """The stages rows reached, for the filter's choices (from the index, or read
        again from the rows only when a database changed: that reads every row)."""
        if self.indexed():
            found = self._db.execute("SELECT DISTINCT stage FROM x.r ORDER BY 1")
            return [s for (s,) in found if s]
        version = self.version()
        if self._stages is None or self._stages[0] != version:
            found = self._db.execute(f"SELECT DISTINCT {STAGE_SQL} FROM v ORDER BY 1")
            self._stages = (version, [s for (s,) in found if s])
        return self._stages[1]

    def version(self) -> tuple:
        """Changes whenever a source's database does: what cached summaries are keyed on."""
        marks = []
        for path in self.databases:
            for name in (path, path.with_name(path.name + "-wal")):
                try:
                    st = name.stat()
                    marks.append((st.st_mtime_ns, st.st_size))
                except OSError:
                    marks.append(None)
        return tuple(marks)


def database_of(run_dir: Path) -> Path:
    return Path(run_dir) / DATABASE
