"""Several run directories (shards, or runs with different generators) read as one.

Later stages (validate, stats, export) take `RUN...`; they see one stream of rows, in a
stable order, with a pair seen twice (the same run given twice) kept once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.records import DualView
from dvsynth.runs.store import RunStore


def iter_runs(run_dirs: Sequence[Path]) -> Iterator[DualView]:
    """Every row of every run at its latest stage, run by run; a folder that is not a run
    is a UserError."""
    if not run_dirs:
        raise UserError("give at least one run directory")
    stores = RunStore.open_many([Path(d) for d in run_dirs])  # all checked before reading
    seen: set[str] = set()
    try:
        for store in stores:
            for row in store.iter_final_rows():
                if row.pair_id not in seen:
                    seen.add(row.pair_id)
                    yield row
    finally:
        for store in stores:
            store.close()


def recorded_validations(run_dirs: Sequence[Path]) -> list[dict[str, Any] | None]:
    """Each run's recorded validation (`RunStore.validation`), in order; None for a run
    never validated."""
    found = []
    for run in run_dirs:
        store = RunStore.open_existing(Path(run))
        try:
            found.append(store.validation())
        finally:
            store.close()
    return found
