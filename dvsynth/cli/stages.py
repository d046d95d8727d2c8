"""A stage run with its reporter: the progress, notices and summary that `generate`,
`validate` and `run RECIPE` all show, wired in one place so the three cannot drift."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvsynth.config import GenerateConfig, ValidateConfig


def generate_reported(config: GenerateConfig, quiet: bool) -> tuple[Any, Any, Any]:
    """`generate_run` with the generate reporter: (prepared run, stats, reporter), the
    reporter kept for the caller's own notices after the summary."""
    from dvsynth.cli.report import GenerateReporter
    from dvsynth.generate.run import generate_run

    reporter = GenerateReporter(quiet=quiet, total=config.limit)
    with reporter:
        prepared, stats = generate_run(
            config,
            on_row=reporter.on_row,
            on_bad_seed=reporter.on_bad_seed,
            on_start=reporter.on_start,
            on_notice=reporter.on_notice,
            on_batch_status=reporter.on_batch_status,
        )
    reporter.summary(prepared, stats)
    return prepared, stats, reporter


def validate_reported(config: ValidateConfig, quiet: bool) -> Any:
    """`validate_runs` with the validate reporter; its stats."""
    from dvsynth.cli.report import ValidateReporter
    from dvsynth.validators.run import validate_runs

    with ValidateReporter(quiet=quiet) as reporter:
        stats = validate_runs(
            config,
            on_row=reporter.on_row,
            on_notice=reporter.on_notice,
            on_start=reporter.on_start,
            on_batch_status=reporter.on_batch_status,
        )
    reporter.summary(stats, " ".join(str(r) for r in config.runs))
    return stats
