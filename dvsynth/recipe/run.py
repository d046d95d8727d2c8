"""`dvsynth run RECIPE` as library calls: the plan, the cost gate, and the publish steps.

The stages are the commands' own library functions (`generate_run`, `validate_runs`,
`export_dataset`, `push_dataset`) over one run directory, so a recipe run resumes as
each command does: finished rows are skipped, cached calls are not paid twice. Before
each LLM stage the pending calls are priced with the dry-run estimate (`llm.cost`); a
run whose spend so far plus that estimate passes `limits.max_cost` stops before sending
anything. Export and push happen only once every generated row is verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvsynth.errors import UserError
from dvsynth.recipe.io import load_recipe, sha256_bytes
from dvsynth.recipe.model import Recipe

STAGES = ("generate", "validate", "export", "push")


@dataclass
class RecipeRun:
    """A loaded recipe, where its run lives, and how far this invocation goes."""

    recipe: Recipe
    source: Path
    data: bytes  # the file's bytes: what is published as recipe.yaml
    run_dir: Path
    until: str

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)

    @property
    def stages(self) -> list[str]:
        chosen = self.recipe.stages()
        return chosen[: chosen.index(self.until) + 1]

    @property
    def export_dir(self) -> Path:
        export, push = self.recipe.export, self.recipe.push
        if export is not None and export.out is not None:
            return export.out
        if push is not None:  # as `dvsynth push` names it
            return Path("dvsynth-export") / f"{push.repo.replace('/', '--')}-v{push.version}"
        return Path("dvsynth-export") / self.run_dir.name


def open_recipe(path: Path, out: Path | None = None, until: str | None = None) -> RecipeRun:
    """Load and check the recipe, resolve its run directory (as `generate` would), and
    check `--until` against the stages the recipe has."""
    from dvsynth.generate.run import prepare_run

    recipe, data = load_recipe(path)
    have = recipe.stages()
    if until is not None and until not in STAGES:
        raise UserError(f"--until: '{until}' is not one of {', '.join(STAGES)}")
    if until is not None and until not in have:
        section = "export" if until == "export" else "export and push"
        raise UserError(f"--until {until}: {path} has no {section} section")
    if recipe.push is not None:
        from dvsynth.publish.hub import check_target

        check_target(recipe.push.repo, recipe.push.version)  # a bad tag fails before any call
    if recipe.export is not None:
        from dvsynth.publish.card import check_license

        check_license(recipe.export.license)
    until = until or have[-1]
    if until != "generate":
        check_rules(recipe, Path(path))  # a bad rule fails before generate pays for rows
    prepared = prepare_run(recipe.generate_config(out))
    return RecipeRun(recipe, Path(path), data, prepared.run_dir, until)


def check_rules(recipe: Recipe, path: Path) -> None:
    """The validation's rules as validate will build them, each custom validator
    imported: one that cannot be imported is one line here (a dry run too), not a
    failure after the generate stage was paid."""
    from dvsynth.validators.rules import build_rules, load_custom_rule

    val = recipe.validation
    for spec in val.custom_validators:
        try:
            load_custom_rule(spec)
        except UserError as exc:
            detail = str(exc).removeprefix("--validator ")
            raise UserError(f"{path}: validation.custom_validators: {detail}") from None
    try:
        build_rules(val.rule_options.as_dict(), tuple(val.disabled_rules))
    except UserError as exc:
        raise UserError(f"{path}: validation: {exc}") from None


def _batched(recipe: Recipe) -> bool:
    return recipe.engine.batch or recipe.engine.batch_out is not None


def stage_cost(recipe: Recipe, estimate: Any) -> float | None:
    """The estimate's USD at the rate this recipe's engine pays (batch or online)."""
    return estimate.batch_usd if _batched(recipe) else estimate.online_usd


def spent(run_dir: Path) -> float:
    """USD the run has spent so far, every stage and engine, open batches at their
    estimate (`runs.spend`; 0 for a run not started)."""
    from dvsynth.runs.store import MANIFEST, RunStore

    if not (Path(run_dir) / MANIFEST).is_file():
        return 0.0
    store = RunStore.open_existing(run_dir)
    try:
        return store.total_cost()
    finally:
        store.close()


def estimate_generate(rr: RecipeRun) -> Any:
    """The generate stage's pending calls, priced (`generate --dry-run`); nothing sent,
    and nothing written for a run not started."""
    from dvsynth.generate.run import generate_run

    _, stats = generate_run(rr.recipe.generate_config(rr.run_dir, dry_run=True))
    return stats.estimate


def estimate_validate(rr: RecipeRun) -> Any:
    """The validate stage's pending calls, priced (`validate --dry-run`)."""
    from dvsynth.validators.run import validate_runs

    return validate_runs(rr.recipe.validate_config(rr.run_dir, dry_run=True)).estimate


def check_cap(rr: RecipeRun, stage: str, estimate: Any) -> str | None:
    """Refuse (one line) when spend so far plus this stage's estimate passes the cap;
    else a note when the price is unknown (the cap cannot hold), or None."""
    cap = rr.recipe.limits.max_cost
    if cap is None or not estimate.calls:  # nothing to send: nothing to check
        return None
    cost = stage_cost(rr.recipe, estimate)
    if cost is None:
        return (
            f"limits.max_cost: no price known for {estimate.model}; the {stage} stage's cost "
            "cannot be checked against the cap"
        )
    paid = spent(rr.run_dir)
    if paid + cost > cap:
        rate = "batch" if _batched(rr.recipe) else "online"
        raise UserError(
            f"{rr.source}: limits.max_cost {cap:g}: {stage} would cost about ${cost:.4f} "
            f"({estimate.calls:,} calls at the {rate} rate) on top of ${paid:.4f} spent; "
            "nothing was sent (raise limits.max_cost and rerun)"
        )
    return None


def not_publishable(rr: RecipeRun) -> str | None:
    """Why the run cannot be exported yet (rows a rerun would still finish), or None."""
    from dvsynth.runs.store import RunStore

    store = RunStore.open_existing(rr.run_dir)
    try:
        counts = store.progress()
        waiting = store.ledger().count("generate") + store.ledger().count("validate")
    finally:
        store.close()
    if waiting:
        return f"{waiting} calls wait on a batch"
    if counts["failed_generate"]:
        return f"{counts['failed_generate']} seeds failed with a transient fault in generate"
    unverified = counts["pending"] + counts["failed_validate"]
    if unverified:
        return f"{unverified} generated pairs are not verified"
    return None


def plan_lines(rr: RecipeRun) -> list[str]:
    """What `dvsynth run` would do, one line per stage (no network, nothing written)."""
    recipe = rr.recipe
    gen, val, engine = recipe.generate, recipe.validation, recipe.engine
    how = "ray" if engine.engine == "ray" else ("batch" if _batched(recipe) else "online")
    state = "resumes" if (rr.run_dir / "manifest.json").is_file() else "new"
    lines = [
        f"recipe {rr.source} sha256 {rr.sha256}",
        f"run directory {rr.run_dir} ({state})",
        f"generate: {gen.seeds} ({gen.seed_format}, mode {gen.mode}"
        + (f", first {gen.limit:,}" if gen.limit else "")
        + (f", shard {gen.shard}" if gen.shard else "")
        + f") with {gen.model}, {how} engine",
    ]
    if "validate" in rr.stages:
        checks = ["rules"]
        if val.judge:
            if val.instruction_check:
                checks.append("instruction check")
            checks.append(f"judge {val.judge_model or gen.model + ' (the generator)'}")
            if val.judge_negatives:
                checks.append("other negatives judged under view b")
        if val.dedup:
            checks.append(f"dedup (near >= {val.near_threshold:g})")
        lines.append("validate: " + ", ".join(checks))
    if "export" in rr.stages and recipe.export is not None:
        lines.append(
            f"export: {rr.export_dir} (license {recipe.export.license}, "
            f"val share {recipe.export.val_share:g}), only when every row is verified"
        )
    if "push" in rr.stages and recipe.push is not None:
        lines.append(
            f"push: {recipe.push.repo} tag v{recipe.push.version} "
            f"(private={recipe.push.private}): recipe.yaml, README.md (card with the recipe's "
            "sha256), pairs/, triplets/, rejected/ parquet files; one commit, then the tag"
        )
    if recipe.limits.max_cost is not None:
        lines.append(f"cost cap: limits.max_cost ${recipe.limits.max_cost:g} for the whole run")
    return lines


def export(rr: RecipeRun) -> Any:
    from dvsynth.publish.dataset import export_dataset

    assert rr.recipe.export is not None
    return export_dataset(
        [rr.run_dir],
        rr.export_dir,
        rr.recipe.card_options(),
        rr.recipe.export.val_share,
        recipe=rr.data,
    )


def push(rr: RecipeRun, on_plan=None) -> Any:
    from dvsynth.publish.hub import push_dataset

    assert rr.recipe.export is not None and rr.recipe.push is not None
    return push_dataset(
        [rr.run_dir],
        rr.export_dir,
        rr.recipe.card_options(),
        private=rr.recipe.push.private,
        val_share=rr.recipe.export.val_share,
        on_plan=on_plan,
        recipe=rr.data,
    )
