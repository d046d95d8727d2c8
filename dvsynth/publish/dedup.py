"""Dedup at export, over exactly the runs exported, however each was validated.

`validate` dedups the kept rows of the runs it is given, and a run keeps only its last
validation's verdicts: a shard validated again alone forgets the duplicates it shares
with the other shards, and two runs validated apart never met. So the export runs the
same step (`validators.dedup.Dedup`, at the threshold the runs were validated with) over
every row it exports that passed its run's per-row checks. The survivor of each cluster
is its smallest pair_id, so the result depends neither on the order of the runs nor on
how they were validated; a pair removed here goes to `rejected` with its reason
(`dedup:exact:<survivor>` or `dedup:near:<survivor>`). Runs validated with different
dedup settings are refused: no one setting would be true of the whole export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dvsynth.errors import UserError
from dvsynth.records import DualView
from dvsynth.runs.dirs import iter_runs, recorded_validations
from dvsynth.validators.dedup import Dedup, Duplicate, pair_text

DEDUP = "dedup"


def passed_checks(row: DualView) -> bool:
    """Whether the row passed every per-row check of its run's current validation:
    what dedup compares (kept, or rejected only by dedup)."""
    if row.validation is None:
        return False
    return row.status == "kept" or (row.status == "rejected" and row.stages[-1:] == [DEDUP])


def _settings(run_dirs: Sequence[Path]) -> Dedup | None:
    """The dedup the runs' validations recorded (None: none had one); one line if the
    validated runs disagree."""
    found: dict[str, float | None] = {}
    for run, recorded in zip(run_dirs, recorded_validations(run_dirs), strict=True):
        if recorded is None:  # never validated: nothing checked to compare
            continue
        dedup = recorded.get("dedup")
        found[str(run)] = dedup["settings"]["near_threshold"] if dedup else None
    if len(set(found.values())) > 1:
        runs = " ".join(map(str, run_dirs))
        each = ", ".join(
            f"{run} {'no dedup' if t is None else f'near >= {t:g}'}" for run, t in found.items()
        )
        raise UserError(
            f"{runs}: validated with different dedup settings ({each}); validate them "
            f"together with one setting (`dvsynth validate {runs} --near-threshold N`, "
            "or --no-dedup), then export"
        )
    threshold = next(iter(found.values()), None)
    return None if threshold is None else Dedup(threshold)


@dataclass
class ExportDedup:
    """The duplicates among the rows an export will hold, found before it writes any."""

    step: Dedup
    duplicates: dict[str, Duplicate]

    @classmethod
    def of_runs(cls, run_dirs: Sequence[Path]) -> ExportDedup | None:
        """One pass over the runs' rows (the export's own order and pair set); None when
        the runs were validated without dedup."""
        step = _settings(run_dirs)
        if step is None:
            return None
        ids, texts = [], []
        for row in iter_runs(run_dirs):
            if passed_checks(row):
                ids.append(row.pair_id)
                texts.append(pair_text(row.query, row.instruction_a, row.instruction_b))
        return cls(step, step(ids, texts))

    def describe(self) -> str:
        return f"{self.step.describe()}, over every run in this export"

    def settle(self, row: DualView) -> DualView:
        """The row with this dedup's verdict in place of its run's: a pair its run's
        dedup removed (a survivor not exported) comes back; one a duplicate of an
        exported pair is rejected with the reason."""
        if not passed_checks(row):
            return row
        if row.status == "rejected":  # its run's dedup: the verdict is this one's now
            row.reasons.pop()  # `RunStore.iter_final_rows` appends dedup's reason last
            row.status, row.verified = "kept", True
        duplicate = self.duplicates.get(row.pair_id)
        if duplicate is not None:
            if row.stages[-1:] != [DEDUP]:
                row.stages.append(DEDUP)
            row.status, row.verified = "rejected", False
            row.reasons.append(duplicate.reason)
        return row
