"""What a person sees while a run goes: a rich progress bar, warnings, a final summary.

Kept out of the pipeline so that library users get callbacks and no terminal output.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dvsynth.pipeline import RunStats
from dvsynth.schema import DualView, SeedError
from dvsynth.store import RunStore

MAX_WARNINGS = 10


def format_cost(usd: float, unknown: int) -> str:
    """Cost with the share we could not price said out loud, never silently as $0."""
    if unknown and usd == 0:
        return "unknown"
    text = f"${usd:.4f}"
    return f"{text} + {unknown} rows unpriced" if unknown else text


class GenerateReporter:
    def __init__(self, quiet: bool = False, total: int | None = None) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.out = Console()
        self.total = total
        self.started = time.perf_counter()
        self.warnings = 0
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> GenerateReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_start(self, prepared: Any, total: int | None) -> None:
        self.started = time.perf_counter()
        if self.quiet:
            return
        self.console.print(f"run: {prepared.run_dir}  model: {prepared.config.model}")
        self.progress = Progress(
            TextColumn("generate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]} rejected {task.fields[rejected]}"),
            TextColumn("tok {task.fields[tokens]}"),
            TextColumn("{task.fields[cost]}"),
            TextColumn("{task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "generate", total=total, kept=0, rejected=0, tokens=0, cost="$0", rate="0.0"
        )

    def on_row(self, row: DualView, stats: RunStats) -> None:
        if self.progress is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(
            self.task,
            completed=stats.done_now + stats.already_done,
            kept=stats.kept,
            rejected=stats.rejected,
            tokens=stats.prompt_tokens + stats.completion_tokens,
            cost=format_cost(stats.cost_usd, stats.cost_unknown),
            rate=f"{stats.done_now / elapsed:.1f}",
        )

    def on_notice(self, message: str) -> None:
        """A warning the user should see even with --quiet: it changes what the run means."""
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def on_bad_seed(self, error: SeedError) -> None:
        self.warnings += 1
        if not self.quiet and self.warnings <= MAX_WARNINGS:
            self.console.print(
                f"[yellow]skipped[/] {error.location}: {error.reason}",
                highlight=False,
                soft_wrap=True,
            )

    def summary(self, prepared: Any, stats: RunStats) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        elapsed = time.perf_counter() - self.started
        store = RunStore.open_existing(prepared.run_dir)
        try:
            totals = store.status_counts()
        finally:
            store.close()
        kept, rejected = totals.get("kept", 0), totals.get("rejected", 0)
        failed = totals.get("failed", 0)
        if stats.duplicates:  # a data problem the user must see, even with --quiet
            self.on_notice(
                f"{stats.duplicates} seed rows reuse an id an earlier row has; they were "
                f"set apart, not generated: {'; '.join(stats.duplicate_locations)}"
                + (" ..." if stats.duplicates > len(stats.duplicate_locations) else "")
            )
        if self.quiet:
            if stats.stopped_by_cost:
                self.out.print("stopped: --max-cost reached", highlight=False)
            self.out.print(
                f"{prepared.run_dir}: {kept} kept, {rejected} rejected, {failed} failed "
                f"({stats.done_now} new in {elapsed:.1f}s)",
                highlight=False,
                soft_wrap=True,
            )
            return
        if self.warnings > MAX_WARNINGS:
            self.console.print(
                f"[yellow]... {self.warnings - MAX_WARNINGS} more bad seed rows "
                "(all listed in the run's seed_errors table)[/]"
            )
        table = Table(title=f"dvsynth generate: {prepared.run_dir}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("model", prepared.config.model)
        table.add_row(
            "rows in run",
            f"{kept + rejected + failed} ({kept} kept, {rejected} rejected, {failed} failed)",
        )
        table.add_row(
            "this invocation",
            f"{stats.done_now} new ({stats.retried} retried), {stats.already_done} resumed, "
            f"{stats.cached_calls} from cache",
        )
        if failed:
            table.add_row("failed, will retry on rerun", f"{failed} (rate limit, timeout, 5xx)")
        if stats.bad_seeds or stats.filtered or stats.duplicates:
            table.add_row(
                "seeds skipped",
                f"{stats.bad_seeds} bad rows, {stats.filtered} without "
                f"instruction negatives, {stats.duplicates} duplicate ids",
            )
        for reason, count in stats.reasons.most_common():
            table.add_row(f"  rejected: {reason}", str(count))
        table.add_row(
            "tokens", f"{stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion"
        )
        table.add_row("cost", format_cost(stats.cost_usd, stats.cost_unknown))
        if stats.stopped_by_cost:
            table.add_row("stopped", "--max-cost reached; rerun with a higher cap to go on")
        rate = stats.done_now / elapsed if elapsed > 0 else 0.0
        table.add_row("time", f"{elapsed:.1f}s ({rate:.2f} rows/s)")
        self.out.print(table)
