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
from dvsynth.validators.instruction_check import (
    DEFAULT_INSTRUCTION_CHECK_PROMPT,
    InstructionCheck,
)
from dvsynth.validators.judge import Judge, JudgeOutcome
from dvsynth.validators.rules import Rule, apply_rules, build_rules


class ValidateConfig(CallSettings):
    runs: list[Path]
    judge: bool = True
    judge_model: str | None = None  # None: the generator's model (with a warning)
    judge_api_base: str | None = None  # never the generator's, unless the caller says so
    judge_api_key_env: str | None = None  # the NAME of the variable with the judge's key
    judge_prompt: str = DEFAULT_JUDGE_PROMPT
    judge_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    judge_max_tokens: int = Field(16, ge=1)
    judge_logprobs: bool = True
    rule_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disabled_rules: list[str] = Field(default_factory=list)
    custom_validators: list[str] = Field(default_factory=list)
    judge_negatives: bool = True  # judge each other negative under view b
    instruction_check: bool = True  # one call per generated instruction, with the judge
    check_prompt: str = DEFAULT_INSTRUCTION_CHECK_PROMPT
    dedup: bool = True
    near_threshold: float = Field(90.0, gt=0.0, le=100.0)


@dataclass
class ValidateStats:
    validated: int = 0
    kept_before_dedup: int = 0
    rejected_by_rules: int = 0
    rejected_by_check: int = 0
    rejected_by_judge: int = 0
    failed: int = 0  # transient faults: these rows are retried by the next validate
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
    """Rules, then the instruction check, then the judge, for one row; knows nothing of
    stores or terminals. A stage that rejects ends the row's checks."""

    rules: list[Rule]
    judge: Judge | None
    check: InstructionCheck | None = None

    async def __call__(self, row: DualView) -> tuple[DualView, JudgeOutcome | None]:
        row = row.model_copy(deep=True)
        row.stages.append("rules")
        reasons = apply_rules(self.rules, row)
        if reasons or self.judge is None:
            return _with(row, reasons), None
        spent = JudgeOutcome(verdicts=[], reasons=[])
        if self.check is not None:
            checked = await self.check(row)
            row.stages.append("check")
            row.checks = checked.verdicts
            _spend(spent, checked)
            if checked.reasons or checked.transient:
                _record_judge(row, self.judge, spent)
                return _with(row, checked.reasons, checked.transient, checked.errors), spent
        outcome = await self.judge(row)
        row.stages.append("judge")
        row.verdicts = outcome.verdicts
        row.negatives_b = outcome.negatives_b
        _spend(spent, outcome)
        _record_judge(row, self.judge, spent)
        return _with(row, outcome.reasons, outcome.transient, outcome.errors), spent


def _spend(total: JudgeOutcome, part: Any) -> None:
    """Add one LLM stage's tokens, cost and cached calls to the row's judge spend."""
    total.prompt_tokens += part.prompt_tokens
    total.completion_tokens += part.completion_tokens
    total.cached_calls += part.cached_calls
    if part.cost_usd is None or total.cost_usd is None:
        total.cost_usd = None
    else:
        total.cost_usd += part.cost_usd


def _record_judge(row: DualView, judge: Judge, spent: JudgeOutcome) -> None:
    prov = row.provenance
    prov.judge_model = judge.client.model
    prov.judge_prompt_name = judge.template.name
    prov.judge_prompt_sha256 = judge.template.sha256
    prov.judge_threshold = judge.threshold
    prov.judge_usage = Usage(
        prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens
    )
    prov.judge_cost_usd = spent.cost_usd


def _with(
    row: DualView,
    reasons: list[str],
    transient: list[str] = (),  # type: ignore[assignment]
    errors: list[str] = (),  # type: ignore[assignment]
) -> DualView:
    """A verdict (rejected) outranks a fault (failed: retried on the next run)."""
    if reasons:
        row.status = "rejected"
    elif transient:
        row.status = "failed"
    row.reasons = [*row.reasons, *reasons, *transient]
    if errors:
        row.error = errors[0]
    return row


def settings_of(
    config: ValidateConfig,
    rules: list[Rule],
    template: PromptTemplate | None,
    check: PromptTemplate | None = None,
) -> dict:
    """What changes verdicts, stage by stage; its hash tags each validated row, so a
    change to any stage (dedup included) re-validates the run."""
    return {
        "rules": {r.name: r.options for r in rules},
        "custom_validators": sorted(config.custom_validators),
        "check": None if check is None else {"prompt": check.name, "prompt_sha256": check.sha256},
        "judge": None
        if template is None
        else {
            "model": config.judge_model,
            "prompt": template.name,
            "prompt_sha256": template.sha256,
            "threshold": config.judge_threshold,
            "max_tokens": config.judge_max_tokens,
            "logprobs": config.judge_logprobs,
            "negatives": config.judge_negatives,
        },
        "dedup": {"near_threshold": config.near_threshold} if config.dedup else None,
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
        api_key_env=config.judge_api_key_env,
        key_option="--judge-api-key-env",
    )


def build_validator(config: ValidateConfig) -> tuple[Validator, dict[str, Any]]:
    """The rules and (unless --no-judge) the judge, checked; and the settings they imply."""
    rules = build_rules(
        config.rule_options, tuple(config.disabled_rules), tuple(config.custom_validators)
    )
    judge: Judge | None = None
    check: InstructionCheck | None = None
    template: PromptTemplate | None = None
    check_template: PromptTemplate | None = None
    if config.judge:
        if config.judge_model is None:
            raise UserError("--judge-model: required (or --no-judge)")
        template = load_template(config.judge_prompt)
        client = _judge_client(config, config.judge_model)
        client.check()
        judge = Judge(client, template, config.judge_threshold, config.judge_negatives)
        if config.instruction_check:
            check_template = load_template(config.check_prompt)
            check = InstructionCheck(client, check_template)
    validator = Validator(rules, judge, check)
    return validator, settings_of(config, rules, template, check_template)


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
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    stores = _open_stores(config.runs)
    stats = ValidateStats()
    try:
        for store in stores:
            store.begin_validation(
                settings_hash, json.dumps(settings, sort_keys=True), dedup=config.dedup
            )
        pending = sum(s.count_pending_validation(settings_hash) for s in stores)
        if on_start:
            on_start(pending)
        freeze_startup_objects()
        if config.dedup:
            # Dedup compares the rows of exactly the runs given, so it is redone on every
            # invocation; until it ends, kept rows are pending (a kill leaves them so).
            for store in stores:
                store.reset_dedup(settings_hash)
        if pending:
            # One event loop for every run directory: the client's pooled connections and
            # limits belong to the loop that made them.
            asyncio.run(_validate_stores(stores, validator, settings_hash, config, stats, on_row))
        if config.dedup:
            _dedup(stores, settings_hash, config.near_threshold, stats)
        stats.kept_before_dedup = sum(1 for s in stores for _ in s.iter_kept_texts(settings_hash))
    finally:
        for store in stores:
            store.close()
    return stats


async def _validate_stores(
    stores: list[RunStore],
    validator: Validator,
    settings_hash: str,
    config: ValidateConfig,
    stats: ValidateStats,
    on_row: Callable[[DualView, ValidateStats], None] | None,
) -> None:
    """Every store's pending rows, run after run, in the caller's one event loop."""
    try:
        for store in stores:
            if validator.judge is not None:
                validator.judge.client.cache = store  # each run caches its own judge calls
            rows = store.iter_pending_validation(settings_hash)
            await _validate_store(
                store, rows, validator, settings_hash, config.concurrency, stats, on_row
            )
    finally:
        if validator.judge is not None:
            await validator.judge.client.aclose()


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

    await bounded_map(rows, validator, concurrency, finished)


def _count(stats: ValidateStats, row: DualView, outcome: JudgeOutcome | None) -> None:
    stats.validated += 1
    new = [r for r in row.reasons if r.startswith(("rule:", "check:", "judge:"))]
    stats.reasons.update(new)
    if row.status == "failed":
        stats.failed += 1
    elif any(r.startswith("rule:") for r in new):
        stats.rejected_by_rules += 1
    elif any(r.startswith("check:") for r in new):
        stats.rejected_by_check += 1
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
