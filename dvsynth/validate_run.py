"""`dvsynth validate` as a library call: rules, then the judge, then dedup, over runs.

Rows that generate kept are validated; each finished row is committed to its own run
directory (table `validated`, tagged with a hash of the validation settings), and the
judge's answers are cached there too, so a killed validate reruns only what is pending
and pays no call twice. Changing a setting that changes verdicts (rules, thresholds,
judge model or prompt) re-validates every row; unchanged calls still come from the
cache. Dedup runs last, over the kept rows of all the runs given, and is recomputed on
every invocation, so adding a shard later dedups against the earlier ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from dvsynth.config import CallSettings
from dvsynth.errors import UserError
from dvsynth.llm.client import LLMClient
from dvsynth.pipeline import bounded_map, freeze_startup_objects
from dvsynth.prompts import DEFAULT_JUDGE_PROMPT, PromptTemplate, load_template
from dvsynth.schema import DualView, Usage
from dvsynth.store import RunStore, read_manifest
from dvsynth.validators.dedup import find_duplicates, pair_text
from dvsynth.validators.judge import Judge, JudgeOutcome
from dvsynth.validators.rules import Rule, apply_rules, build_rules

SETTINGS_KEY = "validation_settings"


class ValidateConfig(CallSettings):
    runs: list[Path]
    judge: bool = True
    judge_model: str | None = None  # None: the generator's model (with a warning)
    judge_api_base: str | None = None
    judge_prompt: str = DEFAULT_JUDGE_PROMPT
    judge_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    judge_max_tokens: int = Field(16, ge=1)
    judge_logprobs: bool = True
    rule_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disabled_rules: list[str] = Field(default_factory=list)
    custom_validators: list[str] = Field(default_factory=list)
    dedup: bool = True
    near_threshold: float = Field(90.0, gt=0.0, le=100.0)


@dataclass
class ValidateStats:
    validated: int = 0
    kept_before_dedup: int = 0
    rejected_by_rules: int = 0
    rejected_by_judge: int = 0
    dedup_exact: int = 0
    dedup_near: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    judge_cost_usd: float = 0.0
    judge_cost_unknown: int = 0
    cached_calls: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.kept_before_dedup - self.dedup_exact - self.dedup_near


@dataclass
class Validator:
    """Rules then judge for one row; knows nothing of stores or terminals."""

    rules: list[Rule]
    judge: Judge | None

    async def __call__(self, row: DualView) -> tuple[DualView, JudgeOutcome | None]:
        row = row.model_copy(deep=True)
        row.stages.append("rules")
        reasons = apply_rules(self.rules, row)
        if reasons or self.judge is None:
            return _with(row, reasons), None
        outcome = await self.judge(row)
        row.stages.append("judge")
        row.verdicts = outcome.verdicts
        prov = row.provenance
        prov.judge_model = self.judge.client.model
        prov.judge_prompt_name = self.judge.template.name
        prov.judge_prompt_sha256 = self.judge.template.sha256
        prov.judge_threshold = self.judge.threshold
        prov.judge_usage = Usage(
            prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens
        )
        prov.judge_cost_usd = outcome.cost_usd
        if outcome.errors:
            row.error = outcome.errors[0]
        return _with(row, outcome.reasons), outcome


def _with(row: DualView, reasons: list[str]) -> DualView:
    if reasons:
        row.status = "rejected"
        row.reasons = [*row.reasons, *reasons]
    return row


def settings_of(config: ValidateConfig, rules: list[Rule], template: PromptTemplate | None) -> dict:
    """What changes verdicts; its hash tags each validated row."""
    return {
        "rules": {r.name: r.options for r in rules},
        "custom_validators": sorted(config.custom_validators),
        "judge": None
        if template is None
        else {
            "model": config.judge_model,
            "prompt": template.name,
            "prompt_sha256": template.sha256,
            "threshold": config.judge_threshold,
            "max_tokens": config.judge_max_tokens,
            "logprobs": config.judge_logprobs,
        },
    }


def _open_stores(runs: list[Path]) -> list[RunStore]:
    unique: list[Path] = []
    for run in runs:
        if Path(run).resolve() not in {u.resolve() for u in unique}:
            unique.append(Path(run))
    if not unique:
        raise UserError("give at least one run directory")
    for run in unique:
        read_manifest(run)  # every folder checked before any work
    return [RunStore.open_existing(run) for run in unique]


def _generator_models(runs: list[Path]) -> list[str]:
    return sorted({read_manifest(r).get("identity", {}).get("model", "") for r in runs} - {""})


def _judge_client(config: ValidateConfig, model: str) -> LLMClient:
    local = model.startswith("local/")
    return LLMClient(
        model,
        api_base=config.judge_api_base,
        temperature=0.0,
        max_tokens=config.judge_max_tokens,
        **config.client_options(),
        extra_params={"logprobs": True, "top_logprobs": 5}
        if config.judge_logprobs and not local
        else None,
    )


def build_validator(config: ValidateConfig) -> tuple[Validator, dict[str, Any]]:
    """The rules and (unless --no-judge) the judge, checked; and the settings they imply."""
    rules = build_rules(
        config.rule_options, tuple(config.disabled_rules), tuple(config.custom_validators)
    )
    judge: Judge | None = None
    template: PromptTemplate | None = None
    if config.judge:
        if config.judge_model is None:
            raise UserError("--judge-model: required (or --no-judge)")
        template = load_template(config.judge_prompt)
        client = _judge_client(config, config.judge_model)
        client.check()
        judge = Judge(client, template, config.judge_threshold)
    return Validator(rules, judge), settings_of(config, rules, template)


def validate_runs(
    config: ValidateConfig,
    *,
    on_row: Callable[[DualView, ValidateStats], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ValidateStats:
    """Validate (or resume validating) the rows of every run; dedup across them all."""
    generators = _generator_models(config.runs)
    if config.judge and config.judge_model is None:
        config = config.model_copy(update={"judge_model": generators[0]})
    validator, settings = build_validator(config)  # bad options fail before any warning
    if config.judge and config.judge_model in generators and on_notice:
        on_notice(
            f"--judge-model {config.judge_model} is also the generator: a model tends to "
            "approve its own output; a different judge is a stronger check"
        )
    judge = validator.judge
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    stores = _open_stores(config.runs)
    stats = ValidateStats()
    try:
        for store in stores:
            store.set_meta(SETTINGS_KEY, settings_hash)
            store.set_meta("validation", json.dumps(settings, sort_keys=True))
        if on_start:
            on_start(sum(s.count_pending_validation(settings_hash) for s in stores))
        freeze_startup_objects()
        for store in stores:
            if judge is not None:
                judge.client.cache = store  # each run caches its own judge calls
            rows = store.iter_pending_validation(settings_hash)
            asyncio.run(
                _validate_store(
                    store, rows, validator, settings_hash, config.concurrency, stats, on_row
                )
            )
        if config.dedup:
            _dedup(stores, settings_hash, config.near_threshold, stats)
        stats.kept_before_dedup = sum(1 for s in stores for _ in s.iter_kept_texts(settings_hash))
    finally:
        for store in stores:
            store.close()
    return stats


async def _validate_store(
    store: RunStore,
    rows: Iterable[DualView],
    validator: Validator,
    settings_hash: str,
    concurrency: int,
    stats: ValidateStats,
    on_row: Callable[[DualView, ValidateStats], None] | None,
) -> None:
    """Validate `rows` with at most `concurrency` in flight, committing each as it ends."""

    def finished(_: DualView, result: tuple[DualView, JudgeOutcome | None]) -> None:
        row, outcome = result
        store.put_validated(row, settings_hash)
        _count(stats, row, outcome)
        if on_row:
            on_row(row, stats)

    try:
        await bounded_map(rows, validator, concurrency, finished)
    finally:
        if validator.judge is not None:
            await validator.judge.client.aclose()


def _count(stats: ValidateStats, row: DualView, outcome: JudgeOutcome | None) -> None:
    stats.validated += 1
    new = [r for r in row.reasons if r.startswith(("rule:", "judge:"))]
    stats.reasons.update(new)
    if any(r.startswith("rule:") for r in new):
        stats.rejected_by_rules += 1
    elif new:
        stats.rejected_by_judge += 1
    if outcome is not None:
        stats.cached_calls += outcome.cached_calls
        stats.judge_prompt_tokens += outcome.prompt_tokens
        stats.judge_completion_tokens += outcome.completion_tokens
        if outcome.cost_usd is None:
            stats.judge_cost_unknown += 1
        else:
            stats.judge_cost_usd += outcome.cost_usd


def _dedup(
    stores: list[RunStore], settings_hash: str, threshold: float, stats: ValidateStats
) -> None:
    """Near and exact duplicates among kept rows of every store; outcome written to each."""
    ids, texts, owner = [], [], []
    per_store: list[dict[str, str]] = [{} for _ in stores]
    seen: set[str] = set()
    for index, store in enumerate(stores):
        for seed_id, pair_id, query, instruction_a, instruction_b in store.iter_kept_texts(
            settings_hash
        ):
            if pair_id in seen:  # the same pair in two run directories
                per_store[index][seed_id] = f"dedup:exact:{pair_id}"
                stats.reasons["dedup:exact"] += 1
                stats.dedup_exact += 1
                continue
            seen.add(pair_id)
            ids.append(pair_id)
            texts.append(pair_text(query, instruction_a, instruction_b))
            owner.append((index, seed_id))
    duplicates = find_duplicates(ids, texts, threshold)
    for pair_id, (index, seed_id) in zip(ids, owner, strict=True):
        duplicate = duplicates.get(pair_id)
        if duplicate is not None:
            per_store[index][seed_id] = duplicate.reason
            stats.reasons[f"dedup:{duplicate.kind}"] += 1
            if duplicate.kind == "exact":
                stats.dedup_exact += 1
            else:
                stats.dedup_near += 1
    for store, reasons in zip(stores, per_store, strict=True):
        store.set_dedup(settings_hash, reasons)
