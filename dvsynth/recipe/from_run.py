"""`dvsynth recipe from-run RUN`: the recipe that makes an existing run again.

A run directory records what defines its rows (`manifest.json`: the resolved generate
config and its identity) and the validation it was last checked with (every step's
settings). Read back into the recipe's sections, they give a recipe whose run has the
same identity (the same folder resumes, nothing is redone) and whose validation has
the same settings hash. What a run does not record (the judge's server and key
variable, the export and push options) is left out, with a note saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dvsynth.recipe.model import (
    ENGINE_FIELDS,
    GENERATE_FIELDS,
    LIMIT_FIELDS,
    Recipe,
)


def recipe_from_run(run_dir: Path) -> tuple[Recipe, list[str]]:
    """The recipe of `run_dir`, and notes on what it could not recover."""
    from dvsynth.runs.store import RunStore, read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    config: dict[str, Any] = manifest.get("config", {})
    identity: dict[str, Any] = manifest.get("identity", {})
    notes: list[str] = []
    generate = {k: config[k] for k in GENERATE_FIELDS if k in config}
    # The identity holds the source as it was resolved (an absolute path, or a Hub id),
    # so the recipe finds the same seeds from any working directory.
    if identity.get("seeds"):
        generate["seeds"] = identity["seeds"]
    if generate.get("prompt") and Path(generate["prompt"]).is_file():
        generate["prompt"] = str(Path(generate["prompt"]).resolve())
    if "***" in str(config.get("api_base")) or "***" in str(config.get("extra_api_bases")):
        notes.append("generate.api_base: the run recorded it with a secret removed; restore it")
    engine = {k: config[k] for k in ENGINE_FIELDS if k in config}
    limits = {k: config[k] for k in (*LIMIT_FIELDS, "max_cost") if k in config}
    store = RunStore.open_existing(run_dir)
    try:
        recorded = store.validation()
    finally:
        store.close()
    if recorded is None:
        validation: dict[str, Any] = {}
        notes.append("the run was never validated: `validation` holds the defaults")
    else:
        validation = validation_from_settings(recorded, notes)
        if validation.get("judge"):
            notes.append(
                "validation.judge_api_base / judge_api_key_env: a run does not record them; "
                "set them if the judge needs its own server or key variable"
            )
    notes.append("no export or push section: a run does not record them; add them to publish")
    recipe = Recipe.model_validate(
        {
            "out": str(run_dir),
            "generate": generate,
            "validation": validation,
            "engine": engine,
            "limits": limits,
        }
    )
    return recipe, notes


def validation_from_settings(recorded: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The validation section whose steps (`validators.run.build_validator`) record
    exactly `recorded`: the inverse of how each step describes its settings."""
    from dvsynth.prompts import load_template
    from dvsynth.validators.rules import BUILTIN_RULES

    steps = {step["name"]: step.get("settings", {}) for step in recorded.get("steps", [])}
    rules = steps.get("rules", {})
    section: dict[str, Any] = {
        "rule_options": {
            name: rule["options"]
            for name, rule in rules.items()
            if name in BUILTIN_RULES and rule.get("options")
        },
        "disabled_rules": [name for name in BUILTIN_RULES if name not in rules],
        "custom_validators": [
            rule["function"] for name, rule in rules.items() if name not in BUILTIN_RULES
        ],
        "judge": "judge" in steps,
        "instruction_check": "check" in steps,
    }
    if "check" in steps:
        section["check_prompt"] = steps["check"]["prompt"]
    judge = steps.get("judge")
    if judge is not None:
        section.update(
            judge_model=judge["model"],
            judge_threshold=judge["threshold"],
            judge_logprobs=judge["logprobs"],
            judge_max_tokens=judge["max_tokens"],
            judge_negatives=judge["negatives"],
            judge_prompt=judge["prompt"],
        )
        _levers_from_settings(judge, section, notes)
    for key in ("judge_prompt", "check_prompt"):
        name = section.get(key)
        if name is None:
            continue
        try:
            load_template(name)
        except Exception:
            notes.append(
                f"validation.{key}: the run used a template file named {name!r}; give its path"
            )
    dedup = recorded.get("dedup")
    section["dedup"] = dedup is not None
    if dedup is not None:
        section["near_threshold"] = dedup["settings"]["near_threshold"]
    return section


def _levers_from_settings(judge: dict[str, Any], section: dict[str, Any], notes: list[str]) -> None:
    """Issue 27's levers as the judge's settings record them (absent: the defaults)."""
    if "views" in judge:
        section["judge_views"] = judge["views"]
    if "protocol" in judge:
        section["judge_protocol"] = judge["protocol"]
    escalation = judge.get("escalation")
    if not escalation:
        return
    section["escalate_to"] = escalation["escalate_to"]
    picked = escalation.get("margin_picked_on")
    if picked:  # auto again: the same settings, the margin picked again on the same gold
        section.update(
            escalate_margin="auto",
            escalate_gold=picked["gold"],
            target_precision=picked["target_precision"],
        )
        notes.append(
            f"validation.escalate_margin: auto, as the run had it (it picked "
            f"{escalation['margin']:g} on {picked['gold']}); a run of this recipe picks it again"
        )
    else:
        section["escalate_margin"] = escalation["margin"]
    notes.append(
        "validation.escalate_api_base / escalate_api_key_env: a run does not record them; "
        "set them if the strong judge needs its own server or key variable"
    )
