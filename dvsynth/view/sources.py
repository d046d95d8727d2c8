"""What `dvsynth view PATH...` opens: run directories, or export folders.

A run is read where it is (its database, read-only). An export folder (the `pairs` and
`rejected` configs of `dvsynth export`) is streamed once into a temporary database with
the run's `rows` table, so both are browsed by the same SQL (`view.queries`); rows the
export does not carry (a rejected row's document texts) show as absent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.runs.store import DATABASE, MANIFEST, RunStore, read_manifest


@dataclass
class Source:
    """One PATH given to `view`: a run (kind 'run') or an export folder ('export')."""

    index: int
    path: Path
    kind: str
    database: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def is_export(path: Path) -> bool:
    return (path / "pairs").is_dir() and not (path / MANIFEST).exists()


class Sources:
    """The sources of one `view`, with the temporary folder exports are read into."""

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise UserError("view: give at least one run directory or export folder")
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.items: list[Source] = []
        seen: set[str] = set()
        for path in paths:
            path = Path(path)
            if not path.is_dir():
                raise UserError(f"{path}: no such run directory or export folder")
            key = os.path.realpath(path)
            if key in seen:
                continue  # the same run given twice is shown once
            seen.add(key)
            self.items.append(self._open(len(self.items), path))

    def _open(self, index: int, path: Path) -> Source:
        if is_export(path):
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="dvsynth-view-")
            database = Path(self._tmp.name) / f"export-{index}.sqlite"
            load_export(path, database)
            return Source(index, path, "export", database)
        manifest = read_manifest(path)  # one line for a folder that is no run
        store = RunStore.open_existing(path)  # presence, schema (an old one is migrated)
        try:
            validation = store.validation()
        finally:
            store.close()
        return Source(index, path, "run", path / DATABASE, manifest, validation)

    @property
    def runs(self) -> list[Path]:
        return [s.path for s in self.items if s.kind == "run"]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_ROWS = """CREATE TABLE rows (seed_id TEXT PRIMARY KEY, ordinal INTEGER NOT NULL,
status TEXT NOT NULL, record TEXT NOT NULL, updated_at REAL NOT NULL, validation TEXT,
checked TEXT, checked_status TEXT, dedup TEXT, outcome TEXT);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"""


def load_export(folder: Path, database: Path, batch: int = 2000) -> None:
    """The export's pairs and rejected rows, as DualView records, into `database`."""
    import pyarrow.parquet as pq

    db = sqlite3.connect(database)
    try:
        db.executescript(_ROWS)
        ordinal = 0
        for config in ("pairs", "rejected"):
            for file in sorted((folder / config).glob("*.parquet")):
                try:
                    batches = pq.ParquetFile(file).iter_batches(batch_size=batch)
                    for chunk in batches:
                        values = []  # keyed by pair id: runs of two models share seeds
                        for row in chunk.to_pylist():
                            record, outcome = _record(row, config)
                            values.append(
                                (
                                    record["pair_id"] or f"row{ordinal}",
                                    ordinal,
                                    record["status"],
                                    json.dumps(record, ensure_ascii=False),
                                    outcome,
                                )
                            )
                            ordinal += 1
                        db.executemany(
                            "INSERT OR REPLACE INTO rows (seed_id, ordinal, status, record, "
                            "updated_at, outcome) VALUES (?, ?, ?, ?, 0, ?)",
                            values,
                        )
                except (OSError, ValueError) as exc:  # pyarrow's errors are both
                    raise UserError(f"{file}: not a readable export file ({exc})") from None
        db.commit()
    finally:
        db.close()


def _doc(value: Any, doc_id: str | None = None) -> dict[str, str]:
    if isinstance(value, dict):
        return {
            "doc_id": value.get("doc_id") or "",
            "title": value.get("title") or "",
            "text": value.get("text") or "",
        }
    return {"doc_id": doc_id or "", "title": "", "text": ""}


def _record(row: dict[str, Any], config: str) -> tuple[dict[str, Any], str]:
    """An export row as a DualView-shaped record, and its outcome."""
    stage = row.get("stage") or ""
    kept = config == "pairs"
    record = {
        "pair_id": row.get("pair_id") or "",
        "seed_id": row.get("seed_id") or row.get("pair_id") or "",
        "query": row.get("query") or "",
        "instruction_a": row.get("instruction_a"),
        "doc_a": _doc(row.get("doc_a"), row.get("doc_a_id")),
        "instruction_b": row.get("instruction_b"),
        "doc_b": _doc(row.get("doc_b"), row.get("doc_b_id")),
        "other_negatives": [_doc(d) for d in row.get("other_negatives") or []],
        "mode": row.get("mode") or "reverse",
        "status": "kept" if kept else "rejected",
        "reasons": list(row.get("reasons") or []),
        "stages": [stage] if stage and stage != "verified" else [],
        "verdicts": list(row.get("verdicts") or []),
        "negatives_b": row.get("negatives_b"),
        "raw_response": row.get("raw_response"),
        "error": row.get("error"),
        "provenance": {
            "generator_model": row.get("generator_model") or "",
            "judge_model": row.get("judge_model"),
            "prompt_name": row.get("prompt_name") or "",
            "prompt_sha256": row.get("prompt_sha256") or "",
            "judge_prompt_sha256": row.get("judge_prompt_sha256"),
            "dvsynth_version": row.get("dvsynth_version") or "",
            "created_at": row.get("created_at") or "",
            "sampling": {"temperature": row.get("temperature")},
        },
    }
    if kept:
        outcome = "verified" if stage in ("verified", "") else "pending"
    else:
        outcome = "rejected"
    return record, outcome
