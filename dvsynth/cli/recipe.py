"""`dvsynth run RECIPE` and `dvsynth recipe from-run RUN`: a release as one file.

The stages call the same library functions as `generate`, `validate`, `export` and
`push`, with the same reporters; the library side (plan, cost gate, publish checks) is
`dvsynth.recipe.run`. Every mistake is a `UserError`: one line, exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dvsynth.errors import UserError

recipe_app = typer.Typer(
    help="Recipes: write the recipe that reproduces a run.", no_args_is_help=True
)


def run_command(
    recipe: Annotated[Path, typer.Argument(help="The recipe file (YAML).")],
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after this stage: generate, validate, export or push (default: the "
            "last stage the recipe has)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan, the cost estimate and what would be pushed; send, write "
            "and push nothing.",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Run directory, instead of the recipe's `out`.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Make, check and publish a dataset from one recipe file; rerun to resume."""
    from dvsynth.recipe.run import open_recipe

    rr = open_recipe(recipe, out, until)
    if dry_run:
        _dry_run(rr)
        return
    if rr.until != "generate":  # the judge's key and options, before generate is paid
        from dvsynth.validators.run import preflight

        preflight(rr.recipe.validate_config(rr.run_dir), rr.recipe.generate.model)
    if not _generate(rr, quiet) or rr.until == "generate":
        return
    if not _validate(rr, quiet) or rr.until == "validate":
        return
    _publish(rr)


def _notice(text: str) -> None:
    typer.echo(text, err=True)


def _generate(rr: Any, quiet: bool) -> bool:
    """The generate stage behind the cost gate; False when the run must stop here."""
    from dvsynth.cli.stages import generate_reported
    from dvsynth.recipe.run import check_cap, estimate_generate

    config = rr.recipe.generate_config(rr.run_dir)
    if rr.recipe.limits.max_cost is not None:
        note = check_cap(rr, "generate", estimate_generate(rr))
        if note:
            _notice(note)
    _, stats, _ = generate_reported(config, quiet)
    if stats.stopped_by_cost:
        raise UserError(
            f"{rr.source}: limits.max_cost {rr.recipe.limits.max_cost:g} reached during "
            "generate; finished rows are kept (raise the cap and rerun to go on)"
        )
    if stats.waiting:
        typer.echo(
            f"generate: {stats.waiting} rows wait on a batch; rerun `dvsynth run {rr.source}` "
            "to collect them (engine.wait: true waits instead)"
        )
        return False
    return True


def _validate(rr: Any, quiet: bool) -> bool:
    from dvsynth.cli.stages import validate_reported
    from dvsynth.recipe.run import check_cap, estimate_validate

    if rr.recipe.limits.max_cost is not None:
        note = check_cap(rr, "validate", estimate_validate(rr))
        if note:
            _notice(note)
    config = rr.recipe.validate_config(rr.run_dir)
    stats = validate_reported(config, quiet)
    if stats.waiting:
        typer.echo(
            f"validate: {stats.waiting} rows wait on a batch; rerun `dvsynth run {rr.source}` "
            "to collect them"
        )
        return False
    return True


def _publish(rr: Any) -> None:
    """Export (and push) only a run whose every generated row is verified."""
    from dvsynth.recipe.run import export, not_publishable, push

    reason = not_publishable(rr)
    if reason:
        raise UserError(
            f"{rr.run_dir}: {reason}; nothing was exported: rerun `dvsynth run {rr.source}` "
            "to finish them"
        )
    if "push" not in rr.stages:
        report = export(rr)
        typer.echo(
            f"exported {len(report.files)} files to {report.out} (recipe sha256 {rr.sha256})"
        )
        return

    def show(plan: Any) -> None:
        for line in plan.describe():
            typer.echo(line)

    plan = push(rr, on_plan=show)
    typer.echo(
        f"pushed {plan.repo} {plan.tag} with recipe.yaml (sha256 {rr.sha256}): "
        f"load_dataset('{plan.repo}', 'triplets', revision='{plan.tag}')"
    )


def _dry_run(rr: Any) -> None:
    """The plan and the estimate; nothing is sent, and no file or folder is made."""
    from dvsynth.llm.cost import format_estimate
    from dvsynth.recipe.run import estimate_generate, estimate_validate, plan_lines, stage_cost
    from dvsynth.seeds.readers import HUB_ID

    for line in plan_lines(rr):
        typer.echo(line)
    seeds = rr.recipe.generate.seeds
    try:
        estimate = estimate_generate(rr)
    except UserError as exc:
        if Path(seeds).exists() or not HUB_ID.match(seeds):
            raise
        typer.echo(
            f"estimate, generate: not available here: the seeds {seeds} come from the "
            f"Hugging Face Hub, which could not be read ({exc}); README's 'Publish the "
            "flagship dataset' gives the estimate for the paper's 480k seeds"
        )
        typer.echo("dry run: nothing was sent, written or pushed")
        return
    typer.echo(f"estimate, generate: {format_estimate(estimate)}")
    _cap_line(rr, "generate", stage_cost(rr.recipe, estimate))
    if "validate" in rr.stages:
        if (rr.run_dir / "manifest.json").is_file():
            found = estimate_validate(rr)
            typer.echo(f"estimate, validate (rows generated so far): {format_estimate(found)}")
        else:
            typer.echo(
                "estimate, validate: once rows exist (each judge prompt holds a generated "
                "instruction); `dvsynth run --dry-run` prices it then"
            )
    typer.echo("dry run: nothing was sent, written or pushed")


def _cap_line(rr: Any, stage: str, cost: float | None) -> None:
    from dvsynth.recipe.run import spent

    cap = rr.recipe.limits.max_cost
    if cap is None:
        return
    if cost is None:
        typer.echo(f"cost cap ${cap:g}: the {stage} price is unknown and cannot be checked")
        return
    total = spent(rr.run_dir) + cost
    verdict = "within" if total <= cap else "ABOVE: `dvsynth run` would stop before " + stage
    typer.echo(f"cost cap ${cap:g}: spent so far + {stage} estimate ${total:.4f}: {verdict}")


@recipe_app.command("from-run")
def from_run_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the recipe here (default: print it)."),
    ] = None,
) -> None:
    """Write the recipe that reproduces RUN: same run identity, same validation."""
    from dvsynth.recipe.from_run import recipe_from_run
    from dvsynth.recipe.io import dump_recipe

    recipe, notes = recipe_from_run(run)
    header = f"dvsynth recipe of run {run}: `dvsynth run FILE` resumes or remakes it."
    data = dump_recipe(recipe, header)
    for note in notes:
        _notice(f"note: {note}")
    if output is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    typer.echo(f"wrote {output}")
