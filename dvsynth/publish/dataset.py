"""Runs -> a complete dataset folder: parquet files per config and split, plus the card."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from dvsynth.config import CardOptions
from dvsynth.publish.card import build_card, check_license
from dvsynth.publish.export import ExportReport, staged_folder, write_data
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
    never leaves a half-written dataset where the previous one was.
    """
    check_license(options.license)  # before anything is written
    # The card's counts, gathered in the export's own pass, by the stages the runs recorded.
    counts = StatsCollector(recorded_stages(run_dirs))
    recipe_sha = hashlib.sha256(recipe).hexdigest() if recipe is not None else None
    with staged_folder(out) as staging:
        report = write_data(
            run_dirs,
            staging,
            val_share,
            observe=counts.add,
            allow_unvalidated=allow_unvalidated,
            recipe_sha256=recipe_sha,
        )
        stats = counts.result(run_dirs)
        card = build_card(run_dirs, report, options, stats, recipe_sha256=recipe_sha)
        # Through the one secret detector: the card quotes runs' settings and rows.
        (staging / CARD_FILE).write_text(redact(str(card)), encoding="utf-8")
        if recipe is not None:
            (staging / RECIPE_FILE).write_bytes(recipe)
    report.out = out
    report.files.append(CARD_FILE)
    if recipe is not None:
        report.files.append(RECIPE_FILE)
    return report
