"""The run store: `manifest.json` plus one SQLite database (WAL) holding every row and the
stage it reached (its outcome), bad seed rows, and the response cache (`runs.cache`).

Each finished row is committed with the answers it used in one transaction (rows that
finish within a few milliseconds share it, `put_rows` via `runs.commit_window`), and
counts as done only then, so a kill at any instant loses at most the calls in flight.
SQLite in WAL mode with synchronous=NORMAL survives a killed process (not a power cut),
costs one fsync per checkpoint rather than per row (checkpoints run off the event loop,
`runs.checkpoints`), and lets `stats` read while `generate` writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dvsynth.errors import UserError
from dvsynth.llm.batch.ledger import _SCHEMA as LEDGER_SCHEMA
from dvsynth.llm.batch.ledger import BatchLedger
from dvsynth.records import DualView, SeedError
from dvsynth.runs import lock
from dvsynth.runs.cache import ResponseCache
from dvsynth.runs.checkpoints import checkpoints_in_background
from dvsynth.runs.key_filter import ColumnKeys
from dvsynth.runs.spend import Spend, run_spend

MANIFEST = "manifest.json"
DATABASE = "dvsynth.sqlite"
SETTINGS_KEY = "validation_settings"  # meta: hash of the run's current validation settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    seed_id TEXT PRIMARY KEY,
    ordinal INTEGER NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL,
    validation TEXT,
    checked TEXT,
    checked_status TEXT,
    dedup TEXT,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS duplicates (
    location TEXT PRIMARY KEY,
    seed_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seed_errors (
    location TEXT PRIMARY KEY,
    reason TEXT NOT NULL
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


#: Columns that make a row's life explicit (added to databases of older versions):
#: `validation` the hash of the validation settings its checks ran under, `checked` the
#: row after rules / check / judge under them and `checked_status` its verdict, `dedup`
#: NULL (not run), '' (survivor) or the reason, and `outcome`, the one answer every
#: reader uses: pending (kept by generate, not yet through every validation stage under
#: the current settings), verified, rejected, or failed (a transient fault: retried).
_ROW_STATE = {
    "validation": "TEXT",
    "checked": "TEXT",
    "checked_status": "TEXT",
    "dedup": "TEXT",
    "outcome": "TEXT",
}
OUTCOMES = ("pending", "verified", "rejected", "failed")


def final_row(
    generated: str,
    validation: str | None,
    checked: str | None,
    dedup: str | None,
    outcome: str,
    current: str | None,
) -> DualView:
    """One row as it stands, from its columns and the run's current validation settings
    (`RunStore.iter_final_rows`; the viewer reads rows by chunks with it)."""
    fresh = checked is not None and validation == current
    row = DualView.model_validate_json(checked if fresh else generated)
    if fresh:
        row.validation = validation
        if dedup is not None:
            row.stages.append("dedup")
            if dedup:
                row.reasons.append(dedup)
    row.verified = outcome == "verified"
    row.status = "kept" if outcome in ("pending", "verified") else outcome
    return row


def generated_outcome(status: str) -> str:
    """A freshly generated row: kept rows wait for validation; the others are final."""
    return {"kept": "pending", "rejected": "rejected"}.get(status, "failed")


class RunStore:
    """Rows and their stage, cached responses and bad-seed reports of one run directory.

    A writer (`open`, `open_existing(writer=True)`) holds the run's lock (`runs.lock`) from
    before the database is touched until `close`; a reader takes no lock and never
    creates, migrates or changes the database.
    """

    def __init__(self, run_dir: Path, *, writer: bool, create: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.writer = writer
        path = self.run_dir / DATABASE
        if not create:
            _check_present(path)
        if writer:
            lock.acquire(self.run_dir)
        try:
            self._db = _connect(path, create=create, writer=writer)
            self._prepare(path, create)
        except BaseException:
            if writer:
                lock.release(self.run_dir)
            raise
        _OPEN[id(self)] = path
        _OPENED.pop(path, None)
        _OPENED[path] = None
        self.cache = ResponseCache(self._db)  # LLM answers, committed with their rows
        self._dedup_after: bool | None = None  # set by begin_validation
        self._ledger: BatchLedger | None = None
        self._row_ids = ColumnKeys(self._db, "rows", "seed_id")  # seed ids `rows` may hold

    def _prepare(self, path: Path, create: bool) -> None:
        """WAL mode and the full schema (writers), or a check that the schema is current
        (readers; an older database is migrated under the lock, if no writer holds it)."""
        try:
            if self.writer and not create:
                self._missing_columns()  # a database that is not a run's is never taken over
            if self.writer:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA + LEDGER_SCHEMA)  # every table up front
                self._migrate()
            elif self._missing_columns():
                self._migrate_as_reader()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserError(corrupt_database(path, exc)) from None
        except UserError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, run_dir: Path, manifest: dict[str, Any]) -> RunStore:
        """Create the run, or resume it if its manifest has the same identity; else refuse.

        The lock is taken before anything is read, and a new run's manifest is written
        last: a folder with a manifest always has its database."""
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--out {run_dir}: exists and is not a folder")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(
                f"--out {run_dir}: a part of the path is a file, not a folder"
            ) from None
        lock.acquire(run_dir)
        try:
            path = run_dir / MANIFEST
            if path.exists():
                existing = read_manifest(run_dir)
                if existing.get("identity_sha256") != manifest["identity_sha256"]:
                    changed = _changed_keys(existing.get("identity", {}), manifest["identity"])
                    raise UserError(
                        f"{run_dir}: this run was made with different settings ({changed}); "
                        "rerun with the original settings to resume, or choose another --out"
                    )
                return cls(run_dir, writer=True)
            _refuse_foreign_content(run_dir)
            store = cls(run_dir, writer=True, create=True)
            write_json_atomic(path, manifest)
            return store
        finally:
            lock.release(run_dir)  # the store holds its own count

    def _missing_columns(self) -> list[str]:
        have = {r[1] for r in self._db.execute("PRAGMA table_info(rows)")}
        if not have:
            raise UserError(f"{self.run_dir / DATABASE}: holds no dvsynth tables")
        return [c for c in _ROW_STATE if c not in have]

    def _migrate_as_reader(self) -> None:
        """An older database read before any writer opened it: migrate it under the lock."""
        lock.acquire(self.run_dir)
        try:
            self._migrate()
        finally:
            lock.release(self.run_dir)

    def _migrate(self) -> None:
        """Add the row-state columns to a database made by an older dvsynth, in one
        transaction under the run's lock.

        Its validation results (table `validated`) are not carried over: the next
        validate redoes them, with every judge call still answered from the cache.
        """
        missing = self._missing_columns()
        if missing:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for column in missing:
                    self._db.execute(f"ALTER TABLE rows ADD COLUMN {column} {_ROW_STATE[column]}")
                self._db.execute(
                    "UPDATE rows SET outcome = CASE status WHEN 'kept' THEN 'pending' "
                    "WHEN 'rejected' THEN 'rejected' ELSE 'failed' END WHERE outcome IS NULL"
                )
                self._db.execute("DELETE FROM meta WHERE key = 'validation_settings'")
        self._db.execute("CREATE INDEX IF NOT EXISTS rows_outcome ON rows (outcome)")

    @classmethod
    def open_existing(cls, run_dir: Path, *, writer: bool = False) -> RunStore:
        """An existing run; `writer=True` for commands that change it (they hold its lock)."""
        read_manifest(run_dir)
        return cls(run_dir, writer=writer)

    @classmethod
    def open_many(cls, run_dirs: list[Path], *, writer: bool = False) -> list[RunStore]:
        """Several existing runs, every manifest checked first; all opened or none (a run
        that cannot be opened closes the ones before it, releasing their locks)."""
        for run_dir in run_dirs:
            read_manifest(run_dir)
        stores: list[RunStore] = []
        try:
            for run_dir in run_dirs:
                stores.append(cls(Path(run_dir), writer=writer))
        except BaseException:
            for store in stores:
                store.close()
            raise
        return stores

    def close(self) -> None:
        _OPEN.pop(id(self), None)
        try:
            if self.writer:
                self._commit()
            self._db.close()
        finally:
            if self.writer:
                self.writer = False  # a second close releases nothing
                lock.release(self.run_dir)

    def background_checkpoints(self) -> AbstractContextManager[None]:
        """While a stage commits rows: WAL checkpoints off the event loop (`runs.checkpoints`)."""
        return checkpoints_in_background(self._db, self.run_dir / DATABASE)

    def commit_answers(self) -> None:
        """Commit the answers waiting for a row now: for calls no row will carry (the
        gold set `--escalate-margin auto` is picked on), so a kill loses none."""
        self._commit()

    def _commit(self) -> None:
        """Commit the cached answers that wait for a row (none do at a stage's end)."""
        if not self.cache.has_pending:
            return
        with self._db:
            self._db.execute("BEGIN")
            self.cache.flush_into(self._db)

    # ------------------------------------------------------------------ rows

    def generated_status(self, seed_id: str) -> str | None:
        """The generate status of a seed's row, or None: what resuming needs (a row is its
        seed id; its ordinal only orders listings)."""
        if not self._row_ids.may_hold(seed_id):
            return None  # certainly no row: no SQLite read
        row = self._db.execute("SELECT status FROM rows WHERE seed_id = ?", (seed_id,)).fetchone()
        return None if row is None else row[0]

    _PUT_ROW = (
        "INSERT OR REPLACE INTO rows (seed_id, ordinal, status, record, updated_at, "
        "validation, checked, checked_status, dedup, outcome) "
        "VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?)"
    )

    @staticmethod
    def _row_values(row: DualView, ordinal: int, now: float) -> tuple:
        return (
            row.seed_id,
            ordinal,
            row.status,
            row.model_dump_json(),
            now,
            generated_outcome(row.status),
        )

    def put_rows(self, rows: list[tuple[DualView, int]]) -> None:
        """Generated rows (new, or retries of failed ones: their validation starts over)
        as (row, ordinal) pairs, with the waiting answers, in one transaction: all are
        committed, or none (a kill before the commit)."""
        now = time.time()
        values = [self._row_values(row, ordinal, now) for row, ordinal in rows]
        with self._db:
            self._db.execute("BEGIN")
            self.cache.flush_into(self._db)
            self._db.executemany(self._PUT_ROW, values)
        self._row_ids.added(row.seed_id for row, _ in rows)  # `generated_state` finds them

    def put_duplicate(self, location: str, seed_id: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO duplicates (location, seed_id) VALUES (?, ?)",
            (location, seed_id),
        )

    def reported_locations(self) -> set[str]:
        """Source locations with a bad-row or duplicate-id report from an earlier pass."""
        return {
            location
            for (location,) in self._db.execute(
                "SELECT location FROM seed_errors UNION SELECT location FROM duplicates"
            )
        }

    def drop_reports(self, location: str) -> None:
        """Forget what was reported at `location` (the pass reads it again: fixed, or
        reported anew)."""
        with self._db:
            self._db.execute("BEGIN")
            for table in ("seed_errors", "duplicates"):
                self._db.execute(f"DELETE FROM {table} WHERE location = ?", (location,))

    def iter_rows(self) -> Iterator[DualView]:
        """The rows as generate wrote them."""
        cursor = self._db.execute("SELECT record FROM rows ORDER BY ordinal, seed_id")
        for (record,) in cursor:
            yield DualView.model_validate_json(record)

    def iter_final_rows(self) -> Iterator[DualView]:
        """Each row as it stands: the checked record where its validation ran under the
        run's current settings, else the generated one; `status`, `verified` and
        `validation` come from the row's explicit outcome."""
        current = self.get_meta(SETTINGS_KEY)
        cursor = self._db.execute(
            "SELECT record, validation, checked, dedup, outcome FROM rows ORDER BY ordinal, seed_id"
        )
        for found in cursor:
            yield final_row(*found, current)

    def progress(self) -> dict[str, int]:
        """Rows by outcome, with failed split by where they failed (generate or validate)."""
        counts = dict.fromkeys((*OUTCOMES, "failed_generate", "failed_validate"), 0)
        for outcome, validated, n in self._db.execute(
            "SELECT outcome, validation IS NOT NULL, COUNT(*) FROM rows GROUP BY 1, 2"
        ):
            counts[outcome] += n
            if outcome == "failed":
                counts["failed_validate" if validated else "failed_generate"] += n
        return counts

    # ------------------------------------------------------------------ validation

    _PENDING = (
        "FROM rows r WHERE r.status = 'kept' AND "
        "(r.validation IS NOT ? OR r.checked_status = 'failed')"
    )

    def begin_validation(self, settings: str, description: str, dedup: bool) -> None:
        """Make `settings` the run's validation: every generated row not checked under
        them becomes pending, in the same transaction, so no reader ever sees a row as
        verified under settings it was not checked with."""
        self._dedup_after = dedup  # kept rows then wait for dedup (`put_validated`)
        with self._db:
            self._db.execute("BEGIN")
            for key, value in ((SETTINGS_KEY, settings), ("validation", description)):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )
            self._db.execute(
                "UPDATE rows SET outcome = 'pending', dedup = NULL "
                "WHERE status = 'kept' AND validation IS NOT ?",
                (settings,),
            )

    def count_pending_validation(self, settings: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) {self._PENDING}", (settings,)).fetchone()[0]

    def iter_pending_validation(self, settings: str, batch: int = 1000) -> Iterator[DualView]:
        """Generate-kept rows not yet checked under `settings` (or whose check failed
        transiently), streamed in batches (keyset pagination, so rows checked meanwhile
        never shift the window)."""
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

    def put_validated(self, rows: list[DualView], settings: str) -> None:
        """Rows checked by rules / check / judge, with the waiting answers, in one
        transaction; kept rows still wait for dedup when the run's validation has it."""
        if self._dedup_after is None:
            raise RuntimeError("put_validated before begin_validation")
        now = time.time()
        values = []
        for row in rows:
            if row.status == "kept":
                outcome = "pending" if self._dedup_after else "verified"
            else:
                outcome = row.status
            values.append((settings, row.model_dump_json(), row.status, outcome, now, row.seed_id))
        with self._db:
            self._db.execute("BEGIN")
            self.cache.flush_into(self._db)
            self._db.executemany(
                "UPDATE rows SET validation = ?, checked = ?, checked_status = ?, "
                "dedup = NULL, outcome = ?, updated_at = ? WHERE seed_id = ?",
                values,
            )

    def reset_dedup(self, settings: str) -> None:
        """Rows waiting to be deduplicated again (rows joined the comparison)."""
        self._db.execute(
            "UPDATE rows SET dedup = NULL, outcome = 'pending' "
            "WHERE validation = ? AND checked_status = 'kept'",
            (settings,),
        )

    def iter_kept_texts(self, settings: str) -> Iterator[tuple[str, str, str, str, str]]:
        """(seed_id, pair_id, query, instruction_a, instruction_b) of rows kept by rules
        and judge: what dedup compares, read without parsing whole records."""
        yield from self._db.execute(
            "SELECT seed_id, json_extract(checked, '$.pair_id'), "
            "json_extract(checked, '$.query'), json_extract(checked, '$.instruction_a'), "
            "json_extract(checked, '$.instruction_b') FROM rows "
            "WHERE validation = ? AND checked_status = 'kept' ORDER BY seed_id",
            (settings,),
        )

    def set_dedup(self, settings: str, reasons: dict[str, str]) -> None:
        """Dedup's outcome for every checked, kept row: a reason, or '' for a survivor."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE rows SET dedup = '', outcome = 'verified' "
                "WHERE validation = ? AND checked_status = 'kept'",
                (settings,),
            )
            self._db.executemany(
                "UPDATE rows SET dedup = ?, outcome = 'rejected' "
                "WHERE seed_id = ? AND validation = ?",
                [(reason, seed_id, settings) for seed_id, reason in reasons.items()],
            )

    def validation(self) -> dict[str, Any] | None:
        """The run's current validation as `begin_validation` recorded it (its steps and
        dedup, `validators.run.build_validator`), or None when it was never validated."""
        raw = self.get_meta("validation")
        return json.loads(raw) if raw else None

    def database(self) -> sqlite3.Connection:
        """The run's connection, for a part that keeps its own tables in the run's
        database (`view.audit`); it writes through it only in a writer's store."""
        return self._db

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def spend(self) -> Spend:
        """What this run has spent, every stage and engine (`runs.spend`)."""
        return run_spend(self._db, self.ledger())

    def total_cost(self) -> float:
        """USD this run has spent so far, open batches at their estimate (`spend`)."""
        return self.spend().total_usd

    def mean_completion_tokens(self) -> float | None:
        """The generator's mean completion tokens per answered online call."""
        value = self._db.execute(
            "SELECT AVG(json_extract(record, '$.provenance.usage.completion_tokens')) FROM rows "
            "WHERE json_extract(record, '$.provenance.cached') = 0 "
            "AND json_extract(record, '$.provenance.usage.completion_tokens') > 0"
        ).fetchone()[0]
        return None if value is None else float(value)

    def ledger(self) -> BatchLedger:
        """The run's batch requests and batches (`llm.batch.ledger`), same database."""
        if self._ledger is None:
            self._commit()  # answers waiting for a row go first: the ledger commits on its own
            self._ledger = BatchLedger(self._db, on_responses=self.cache.stored)
        return self._ledger

    def status_counts(self) -> dict[str, int]:
        """Rows by generate status (kept, rejected, failed)."""
        return dict(
            self._db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status").fetchall()
        )

    # ------------------------------------------------------------------ cache

    def get_response(self, key: str) -> dict[str, Any] | None:
        return self.cache.get_response(key)

    def put_response(self, key: str, value: dict[str, Any]) -> None:
        self.cache.put_response(key, value)

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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise UserError(f"{path}: corrupt manifest ({reason})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: corrupt manifest (not a dvsynth manifest object)")
    for key in ("identity", "config", "seed_source", "versions"):
        if not isinstance(data.get(key, {}), dict):
            raise UserError(f"{path}: corrupt manifest ('{key}' is not an object)")
    if not isinstance(data.get("identity", {}).get("prompts", {}), dict):
        raise UserError(f"{path}: corrupt manifest ('identity.prompts' is not an object)")
    return data


#: The database of every store open in this process: what the CLI's error boundary names
#: when SQLite finds a database corrupt in the middle of a read.
_OPEN: dict[int, Path] = {}
#: Every database this process opened, newest last: a store closed on the way out of a
#: failure (its `with` block) is still the one to name.
_OPENED: dict[Path, None] = {}


def open_databases() -> list[Path]:
    """The databases open now, else those this process opened (for the error line)."""
    return sorted(set(_OPEN.values())) or list(_OPENED)[-4:]


def corrupt_database(path: Path, exc: BaseException) -> str:
    """The one line for a database SQLite cannot read."""
    return (
        f"{path}: not a readable dvsynth database ({exc}); restore it from a copy, "
        "or start a new run with another --out"
    )


def _connect(path: Path, create: bool, writer: bool = True) -> sqlite3.Connection:
    """Open the database; never creates one unless `create` (a lost database is an error,
    not a fresh start). A reader of a run whose folder it cannot write (a read-only copy,
    an archive) opens it immutable: no writer can be changing it there either."""
    mode = "rwc" if create else "rw"
    if not writer and not os.access(path.parent, os.W_OK):
        mode = "ro&immutable=1"
    try:
        return sqlite3.connect(
            f"file:{quote(str(path))}?mode={mode}", uri=True, isolation_level=None
        )
    except sqlite3.DatabaseError as exc:
        raise UserError(corrupt_database(path, exc)) from None


def _check_present(path: Path) -> None:
    """A run's database must be there and hold something: one deleted or emptied would
    otherwise read as a run with no rows, and generate would silently start over."""
    if not path.is_file():
        raise UserError(
            f"{path}: missing; the run's rows and paid answers are not there "
            "(restore the file, or start a new run with another --out)"
        )
    wal = path.with_name(path.name + "-wal")
    if path.stat().st_size == 0 and not (wal.is_file() and wal.stat().st_size):
        raise UserError(
            f"{path}: empty; the run's rows and paid answers are not there "
            "(restore the file, or start a new run with another --out)"
        )


#: What an interrupted creation leaves before the manifest (written last) exists.
_CREATION_LEFTOVERS = {
    lock.LOCK_FILE,
    DATABASE,
    DATABASE + "-wal",
    DATABASE + "-shm",
    DATABASE + "-journal",
    MANIFEST + ".tmp",
}


def _refuse_foreign_content(run_dir: Path) -> None:
    """A new run goes only into an empty folder, or one a killed creation left behind
    (a lock and a database with no rows)."""
    names = {p.name for p in run_dir.iterdir()}
    if not names:
        return
    if names <= _CREATION_LEFTOVERS and _holds_no_rows(run_dir / DATABASE):
        for name in names - {lock.LOCK_FILE}:
            (run_dir / name).unlink()
        return
    raise UserError(f"--out {run_dir}: folder is not empty and holds no dvsynth run")


def _holds_no_rows(path: Path) -> bool:
    if not path.exists():
        return True
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            if not tables:
                return True  # killed before the schema
            ours = "rows" in tables and "meta" in tables
            return ours and not db.execute("SELECT 1 FROM rows").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return False  # not ours to delete


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if k != "prompts"]
    if "prompts" in keys:
        parts.append("prompt template changed")
    return "; ".join(parts) or "manifest differs"
