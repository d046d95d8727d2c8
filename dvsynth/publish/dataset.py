"""Runs -> a complete dataset folder: parquet files per config and split, plus the card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dvsynth.publish.card import CardOptions, build_card, check_license
from dvsynth.publish.export import ExportReport, write_data

CARD_FILE = "README.md"


def export_dataset(
    run_dirs: Sequence[Path], out: Path, options: CardOptions, val_share: float = 0.05
) -> ExportReport:
    """Write the data, then the card that maps it; `datasets.load_dataset(out, config)`."""
    check_license(options.license)  # before anything is written
    report = write_data(run_dirs, out, val_share)
    card = build_card(run_dirs, report, options)
    (out / CARD_FILE).write_text(str(card), encoding="utf-8")
    report.files.append(CARD_FILE)
    return report
