"""Runs -> a complete dataset folder: parquet files per config and split, plus the card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dvsynth.publish.card import CardOptions, build_card, check_license
from dvsynth.publish.export import ExportReport, write_data
from dvsynth.stats import StatsCollector

CARD_FILE = "README.md"


def export_dataset(
    run_dirs: Sequence[Path], out: Path, options: CardOptions, val_share: float = 0.05
) -> ExportReport:
    """Write the data, then the card that maps it; `datasets.load_dataset(out, config)`."""
    check_license(options.license)  # before anything is written
    counts = StatsCollector()  # the card's counts, gathered in the export's own pass
    report = write_data(run_dirs, out, val_share, observe=counts.add)
    card = build_card(run_dirs, report, options, counts.result(run_dirs))
    (out / CARD_FILE).write_text(str(card), encoding="utf-8")
    report.files.append(CARD_FILE)
    return report
