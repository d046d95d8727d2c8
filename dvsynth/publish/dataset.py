"""Runs -> a complete dataset folder: parquet files per config and split, plus the card."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from dvsynth.config import CardOptions
from dvsynth.publish.audit_config import CONFIG as AUDIT_CONFIG
from dvsynth.publish.audit_config import FILE as AUDIT_FILE
from dvsynth.publish.audit_config import write_audit_config
from dvsynth.publish.card import EXAMPLES, build_card, check_license
from dvsynth.publish.export import ExportReport, write_data
from dvsynth.publish.folder import staged_folder
from dvsynth.records import DualView
from dvsynth.runs.stats import StatsCollector, recorded_stages
from dvsynth.secrets import redact

CARD_FILE = "README.md"
RECIPE_FILE = "recipe.yaml"  # `dvsynth run` makes this version again from it


def export_dataset(
    run_dirs: Sequence[Path],
    out: Path,
    options: CardOptions,
    val_share: float = 0.05,
    allow_unvalidated: bool = False,
    recipe: bytes | None = None,
) -> ExportReport:
    """Write the data, then the card that maps it; `datasets.load_dataset(out, config)`.

    `recipe`: the bytes of the recipe file the runs were made from (`dvsynth run`); it
    is written as `recipe.yaml`, and its sha256 goes into the card and every pair row.

    Built in a folder beside `out` that replaces it when complete, so a failed export
    never leaves a half-written dataset where the previous one was; `out` must hold
    nothing but an earlier export (`publish.folder`).
    """
    check_license(options.license)  # before anything is written
    # The card's counts and examples, of the rows exported, in the export's own pass.
    counts = StatsCollector(recorded_stages(run_dirs))
    examples: list[DualView] = []

    def observe(row: DualView) -> None:
        counts.add(row)
        if row.status == "kept" and row.verified and len(examples) < EXAMPLES:
            examples.append(row)

    recipe_sha = hashlib.sha256(recipe).hexdigest() if recipe is not None else None
    with staged_folder(out, run_dirs) as staging:
        report = write_data(
            run_dirs,
            staging,
            val_share,
            observe=observe,
            allow_unvalidated=allow_unvalidated,
            recipe_sha256=recipe_sha,
        )
        labels = write_audit_config(run_dirs, staging)
        if labels:
            report.rows[AUDIT_CONFIG] = {"train": labels}
            report.files.append(AUDIT_FILE)
        stats = counts.result(run_dirs)
        card = build_card(run_dirs, report, options, stats, examples, recipe_sha256=recipe_sha)
        # Through the one secret detector: the card quotes runs' settings and rows.
        (staging / CARD_FILE).write_text(redact(str(card)), encoding="utf-8")
        if recipe is not None:
            (staging / RECIPE_FILE).write_bytes(recipe)
    report.out = out
    report.files.append(CARD_FILE)
    if recipe is not None:
        report.files.append(RECIPE_FILE)
    return report
