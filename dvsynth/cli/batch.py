"""`dvsynth batch status | cancel | import`: the batches of runs, seen and steered from
the command line. The library calls live in `runs.batches`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dvsynth.errors import UserError

batch_app = typer.Typer(
    help="Batches of runs made with --batch or --batch-out: status, cancel, import.",
    no_args_is_help=True,
)

Runs = Annotated[list[Path], typer.Argument(help="Run directories.")]


@batch_app.command("status")
def status_command(
    runs: Runs,
    refresh: Annotated[
        bool,
        typer.Option(help="Ask the provider for each open batch's state (else: as last seen)."),
    ] = True,
) -> None:
    """Each batch of the runs: state, done / failed / expired counts, age."""
    from dvsynth.cli.report import print_batches
    from dvsynth.runs.batches import batch_status

    print_batches(batch_status(runs, refresh=refresh), Console())


@batch_app.command("cancel")
def cancel_command(runs: Runs) -> None:
    """Cancel the runs' open provider batches; what they finished is still collected by
    the next run of the command, and what they did not is sent again then."""
    from dvsynth.cli.report import print_batches
    from dvsynth.runs.batches import cancel_batches

    print_batches(cancel_batches(runs), Console())


@batch_app.command("import")
def import_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Run directories, then the OpenAI batch output file (JSONL)."),
    ],
) -> None:
    """Finish rows from an OpenAI batch output file (vllm run-batch, or any engine that
    writes the format), exactly as a collected batch would; importing twice changes nothing.
    Then rerun the `generate` / `validate` command to finish the rows."""
    from dvsynth.cli.report import print_import
    from dvsynth.runs.batches import import_results

    if len(paths) < 2:
        raise UserError("batch import: give the run directories, then the results file")
    *runs, results = paths
    print_import(import_results(runs, results), Console())
