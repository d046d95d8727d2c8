"""The run directory: `manifest.json` plus one SQLite database (WAL) with rows and cache.

Each finished row and each LLM response is committed by its own statement, so a kill
at any instant loses at most the calls in flight. SQLite in WAL mode with
synchronous=NORMAL survives a killed process (not a power cut), costs one fsync per
checkpoint rather than per row, and lets `stats` read while `generate` writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.schema import DualView, SeedError

MANIFEST = "manifest.json"
DATABASE = "dvsynth.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    seed_id TEXT PRIMARY KEY,
    ordinal INTEGER NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seed_errors (
    location TEXT PRIMARY KEY,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS validated (
    seed_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    record TEXT NOT NULL,
    dedup TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunStore:
    """Rows, cached responses and bad-seed reports of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._db = sqlite3.connect(self.run_dir / DATABASE, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # LLM responses wait here until the row that used them is committed, then both
        # go in one transaction: one commit per row instead of two. A kill in between
        # loses only calls whose rows were not committed either.
        self._pending_responses: dict[str, str] = {}

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, run_dir: Path, manifest: dict[str, Any]) -> RunStore:
        """Create the run, or resume it if its manifest has the same identity; else refuse."""
        run_dir = Path(run_dir)
        path = run_dir / MANIFEST
        if path.exists():
            existing = read_manifest(run_dir)
            if existing.get("identity_sha256") != manifest["identity_sha256"]:
                changed = _changed_keys(existing.get("identity", {}), manifest["identity"])
                raise UserError(
                    f"{run_dir}: this run was made with different settings ({changed}); "
                    "rerun with the original settings to resume, or choose another --out"
                )
        else:
            if run_dir.exists() and not run_dir.is_dir():
                raise UserError(f"--out {run_dir}: exists and is not a folder")
            if run_dir.is_dir() and any(run_dir.iterdir()):
                raise UserError(f"--out {run_dir}: folder is not empty and holds no dvsynth run")
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, manifest)
        return cls(run_dir)

    @classmethod
    def open_existing(cls, run_dir: Path) -> RunStore:
        read_manifest(run_dir)
        return cls(run_dir)

    def close(self) -> None:
        self._commit()
        self._db.close()

    def _commit(self, statement: str | None = None, params: tuple = ()) -> None:
        """Pending responses plus one statement, in one transaction."""
        if not self._pending_responses:
            if statement:
                self._db.execute(statement, params)
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                list(self._pending_responses.items()),
            )
            if statement:
                self._db.execute(statement, params)
        self._pending_responses.clear()

    # ------------------------------------------------------------------ rows

    def has_row(self, seed_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM rows WHERE seed_id = ?", (seed_id,)).fetchone()
            is not None
        )

    def put_row(self, row: DualView, ordinal: int) -> None:
        self._commit(
            "INSERT OR REPLACE INTO rows (seed_id, ordinal, status, record, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (row.seed_id, ordinal, row.status, row.model_dump_json(), time.time()),
        )

    def iter_rows(self) -> Iterator[DualView]:
        """The rows as generate wrote them."""
        cursor = self._db.execute("SELECT record FROM rows ORDER BY ordinal, seed_id")
        for (record,) in cursor:
            yield DualView.model_validate_json(record)

    def iter_final_rows(self) -> Iterator[DualView]:
        """Each row at its latest stage: validated (with dedup applied) where it was
        validated under the run's current validation settings, else as generated."""
        settings = self.get_meta("validation_settings")
        cursor = self._db.execute(
            "SELECT r.record, v.record, v.dedup FROM rows r LEFT JOIN validated v "
            "ON v.seed_id = r.seed_id AND v.settings = ? ORDER BY r.ordinal, r.seed_id",
            (settings or "",),
        )
        for generated, validated, dedup in cursor:
            if validated is None:
                yield DualView.model_validate_json(generated)
                continue
            row = DualView.model_validate_json(validated)
            if dedup is not None:
                row.stages.append("dedup")
                if dedup:
                    row.status = "rejected"
                    row.reasons.append(dedup)
            yield row

    # ------------------------------------------------------------------ validation

    _PENDING = (
        "FROM rows r WHERE r.status = 'kept' AND NOT EXISTS "
        "(SELECT 1 FROM validated v WHERE v.seed_id = r.seed_id AND v.settings = ?)"
    )

    def count_pending_validation(self, settings: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) {self._PENDING}", (settings,)).fetchone()[0]

    def iter_pending_validation(self, settings: str, batch: int = 1000) -> Iterator[DualView]:
        """Generate-kept rows not yet validated under `settings`, streamed in batches
        (keyset pagination, so rows validated meanwhile never shift the window)."""
        last: tuple[int, str] = (-1, "")
        while True:
            rows = self._db.execute(
                f"SELECT r.ordinal, r.seed_id, r.record {self._PENDING} "
                "AND (r.ordinal, r.seed_id) > (?, ?) ORDER BY r.ordinal, r.seed_id LIMIT ?",
                (settings, *last, batch),
            ).fetchall()
            if not rows:
                return
            for ordinal, seed_id, record in rows:
                last = (ordinal, seed_id)
                yield DualView.model_validate_json(record)

    def put_validated(self, row: DualView, settings: str) -> None:
        self._commit(
            "INSERT OR REPLACE INTO validated (seed_id, settings, record, dedup) "
            "VALUES (?, ?, ?, NULL)",
            (row.seed_id, settings, row.model_dump_json()),
        )

    def iter_kept_texts(self, settings: str) -> Iterator[tuple[str, str, str, str, str]]:
        """(seed_id, pair_id, query, instruction_a, instruction_b) of rows kept by rules
        and judge: what dedup compares, read without parsing whole records."""
        yield from self._db.execute(
            "SELECT seed_id, json_extract(record, '$.pair_id'), json_extract(record, '$.query'), "
            "json_extract(record, '$.instruction_a'), json_extract(record, '$.instruction_b') "
            "FROM validated WHERE settings = ? AND json_extract(record, '$.status') = 'kept' "
            "ORDER BY seed_id",
            (settings,),
        )

    def set_dedup(self, settings: str, reasons: dict[str, str]) -> None:
        """Dedup's outcome for every validated row: a reason, or '' for a survivor."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE validated SET dedup = CASE WHEN json_extract(record, '$.status') = "
                "'kept' THEN '' ELSE NULL END WHERE settings = ?",
                (settings,),
            )
            self._db.executemany(
                "UPDATE validated SET dedup = ? WHERE seed_id = ? AND settings = ?",
                [(reason, seed_id, settings) for seed_id, reason in reasons.items()],
            )

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def total_cost(self) -> float:
        """USD paid for this run's rows so far (cached answers were paid once, earlier)."""
        value = self._db.execute(
            "SELECT SUM(json_extract(record, '$.provenance.cost_usd')) FROM rows "
            "WHERE json_extract(record, '$.provenance.cached') = 0"
        ).fetchone()[0]
        return float(value or 0.0)

    def status_counts(self) -> dict[str, int]:
        return dict(
            self._db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status").fetchall()
        )

    # ------------------------------------------------------------------ cache

    def get_response(self, key: str) -> dict[str, Any] | None:
        pending = self._pending_responses.get(key)
        if pending is not None:
            return json.loads(pending)
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_response(self, key: str, value: dict[str, Any]) -> None:
        """Cache a response; it is committed with the next row (see `_commit`)."""
        self._pending_responses[key] = json.dumps(value)

    # ------------------------------------------------------------------ bad seeds

    def put_seed_error(self, error: SeedError) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO seed_errors (location, reason) VALUES (?, ?)",
            (error.location, error.reason),
        )

    def seed_errors(self) -> list[SeedError]:
        rows = self._db.execute("SELECT location, reason FROM seed_errors ORDER BY rowid")
        return [SeedError(location=loc, reason=reason) for loc, reason in rows]


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir}: not a dvsynth run directory (no {MANIFEST})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: corrupt manifest ({exc.msg})") from None


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if k != "prompts"]
    if "prompts" in keys:
        parts.append("prompt template changed")
    return "; ".join(parts) or "manifest differs"
