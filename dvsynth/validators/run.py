"""`dvsynth validate` as a library call: the run's steps over every pending row, then dedup.

The steps are listed once, in `default_steps` (rules, the instruction check, the judge);
`validators.step.Validator` applies them in order to each row. Each finished row is
committed to its own run directory with the hash of the steps' settings, and LLM answers
are cached there too, so a killed validate reruns only what is pending and pays no call
twice. Changing any step's settings re-validates every row; unchanged calls still come
from the cache. Dedup runs last, over the kept rows of all the runs given, and is redone
on every invocation, so adding a shard later dedups against the earlier ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvsynth.config import ValidateConfig
from dvsynth.errors import UserError
from dvsynth.llm.batch.providers import provider_for
from dvsynth.llm.batch.rounds import (
    Lane,
    dry_run,
    make_lane,
    ray_settings,
    refuse_above_cap,
    run_rounds,
)
from dvsynth.llm.client import LLMClient
from dvsynth.prompts import DEFAULT_JOINT_JUDGE_PROMPT, DEFAULT_JUDGE_PROMPT, load_template
from dvsynth.records import DualView
from dvsynth.runs.commit_window import CommitWindow
from dvsynth.runs.loop import run_stage_loop
from dvsynth.runs.pipeline import bounded_map, unless_waiting
from dvsynth.runs.spend import spend_of
from dvsynth.runs.store import RunStore, read_manifest
from dvsynth.validators.decide import Escalating, Single, no_logprobs_provider
from dvsynth.validators.dedup import Dedup, pair_text
from dvsynth.validators.instruction_check import InstructionCheck
from dvsynth.validators.judge import Judge
from dvsynth.validators.rules import RulesStep, build_rules
from dvsynth.validators.step import Step, StepOutcome, Validator, describe_steps

__all__ = ["ValidateConfig", "ValidateStats", "Validator", "build_validator", "validate_runs"]


@dataclass
class ValidateStats:
    validated: int = 0
    kept_before_dedup: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by the step that rejected
    failed: int = 0  # transient faults: these rows are retried by the next validate
    dedup_exact: int = 0
    dedup_near: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    judge_cost_usd: float = 0.0
    judge_cost_unknown: int = 0
    cached_calls: int = 0
    waiting: int = 0  # rows waiting on a batch's answers (batch mode): still pending
    questions: int = 0  # a cascade's judgments and checks
    escalated: int = 0  # of those, decided by the strong judge
    reasons: Counter[str] = field(default_factory=Counter)
    batch: Any = None  # llm.batch.rounds.BatchRound, in batch mode
    estimate: Any = None  # llm.cost.CostEstimate, in a dry run

    @property
    def rejected_by_rules(self) -> int:
        return self.rejected["rules"]

    @property
    def rejected_by_check(self) -> int:
        return self.rejected["check"]

    @property
    def rejected_by_judge(self) -> int:
        return self.rejected["judge"]

    @property
    def kept(self) -> int:
        return self.kept_before_dedup - self.dedup_exact - self.dedup_near


def _open_stores(runs: list[Path]) -> list[RunStore]:
    unique: list[Path] = []
    for run in runs:
        if Path(run).resolve() not in {u.resolve() for u in unique}:
            unique.append(Path(run))
    if not unique:
        raise UserError("give at least one run directory")
    return RunStore.open_many(unique, writer=True)  # every folder checked before any work


def _generator_models(runs: list[Path]) -> list[str]:
    return sorted({read_manifest(r).get("identity", {}).get("model", "") for r in runs} - {""})


def _judge_client(
    config: ValidateConfig,
    model: str,
    api_base: str | None = None,
    extra_api_bases: list[str] | None = None,
    api_key_env: str | None = None,
    role: str = "judge",
) -> LLMClient:
    local = model.startswith("local/")
    return LLMClient(
        model,
        api_base=api_base,
        extra_api_bases=extra_api_bases or [],
        temperature=0.0,
        max_tokens=config.judge_max_tokens,
        **config.client_options(),
        extra_params={"logprobs": True, "top_logprobs": 5}
        if config.judge_logprobs and not local
        else None,
        api_key_env=api_key_env,
        options=config.option_names(role),
    )


def judge_clients(config: ValidateConfig) -> tuple[LLMClient, LLMClient | None]:
    """The judge's client and, with `escalate_to`, the strong judge's (its own server
    and key: none inherited from the cheap judge)."""
    assert config.judge_model is not None
    cheap = _judge_client(
        config,
        config.judge_model,
        config.judge_api_base,
        config.judge_extra_api_bases,
        config.judge_api_key_env,
    )
    if config.escalate_to is None:
        return cheap, None
    strong = _judge_client(
        config,
        config.escalate_to,
        config.escalate_api_base,
        None,
        config.escalate_api_key_env,
        role="escalate",
    )
    return cheap, strong


def default_steps(config: ValidateConfig) -> list[Step]:
    """The per-row steps, in order: the one place they are listed. Unless --no-judge:
    the instruction check (unless --no-instruction-check), then the judge."""
    rules = build_rules(
        config.rule_options.as_dict(), tuple(config.disabled_rules), tuple(config.custom_validators)
    )
    steps: list[Step] = [RulesStep(rules)]
    if not config.judge:
        return steps
    if config.judge_model is None:
        raise UserError("--judge-model: required (or --no-judge)")
    if config.escalate_margin == "auto":
        raise UserError(
            "--escalate-margin auto: resolve it first (validators.margin.resolve_margin)"
        )
    prompt = config.judge_prompt
    if config.judge_protocol == "joint" and prompt == DEFAULT_JUDGE_PROMPT:
        prompt = DEFAULT_JOINT_JUDGE_PROMPT
    template = load_template(prompt)
    _check_judge_template(template, config.judge_protocol)
    client, strong = judge_clients(config)
    client.check(require_key=not config.dry_run)
    decider: Single | Escalating = Single(client)
    if strong is not None:
        strong.check(require_key=not config.dry_run)
        decider = Escalating(
            client, strong, float(config.escalate_margin), picked=config._margin_picked
        )
    if config.instruction_check:
        steps.append(
            InstructionCheck(
                client,
                load_template(config.check_prompt),
                decider=decider,
                threshold=config.judge_threshold,
            )
        )
    steps.append(
        Judge(
            client,
            template,
            config.judge_threshold,
            negatives=config.judge_negatives,
            max_tokens=config.judge_max_tokens,
            logprobs=config.judge_logprobs,
            views=config.judge_views,
            protocol=config.judge_protocol,
            decider=decider,
            pointwise_template=load_template(DEFAULT_JUDGE_PROMPT)
            if config.judge_protocol == "joint"
            else None,
        )
    )
    return steps


def _check_judge_template(template: Any, protocol: str) -> None:
    """A joint judge renders `first` and `second`, a pointwise one `document`: the other
    protocol's template would fail on every row, so it is refused before the first."""
    needs = ("first", "second") if protocol == "joint" else ("document",)
    if not all(re.search(r"\{\{[^}]*\b" + name + r"\b", template.source) for name in needs):
        shown = " and ".join("{{ " + n + " }}" for n in needs)
        bundled = DEFAULT_JOINT_JUDGE_PROMPT if protocol == "joint" else DEFAULT_JUDGE_PROMPT
        raise UserError(
            f"--judge-prompt {template.name}: --judge-protocol {protocol} needs a template "
            f"that uses {shown} (bundled: {bundled})"
        )


def escalation_notice(config: ValidateConfig) -> str | None:
    """What a user must know before a cascade runs: a cheap judge that gives no
    log-probabilities sends every question on to the strong one."""
    if config.escalate_to is None or not config.judge_model:
        return None
    cheap, _ = judge_clients(config)
    if cheap.is_local or no_logprobs_provider(cheap):
        return (
            f"--escalate-to {config.escalate_to}: {config.judge_model} returns no "
            "log-probabilities, so every judgment and check escalates to the strong judge "
            "(the cascade then costs more than the strong judge alone)"
        )
    return None


def preflight(config: ValidateConfig, generator_model: str) -> None:
    """What validate would refuse (its engine options, rules, custom validators, the
    judge's key), checked before a command that generates first (`generate --validate`,
    `run RECIPE`) pays for the generation."""
    check_options(config)
    if config.judge and config.judge_model is None:
        config = config.model_copy(update={"judge_model": generator_model})
    if config.judge and config.escalate_margin == "auto":
        from dvsynth.evaluate.gold import load_gold

        load_gold(config.escalate_gold, "--gold")  # a bad gold set fails before generation
        config = config.model_copy(update={"escalate_margin": 0.2})  # picked when validate starts
    default_steps(config)


def check_options(config: ValidateConfig) -> None:
    """Settings that contradict each other, refused the same way by validate and
    `preflight`."""
    config.check_engine()
    if config.max_cost is not None and not config.batched:
        raise UserError("--max-cost: on validate it caps batch submissions; use it with --batch")
    if config.escalate_to is not None and config.engine == "ray":
        raise UserError(
            "--escalate-to: not with --engine ray yet (its pipeline runs one model); use "
            "the online engine or --batch"
        )


def build_validator(
    config: ValidateConfig, steps: list[Step] | None = None
) -> tuple[Validator, dict[str, Any]]:
    """The steps (`default_steps`, or the caller's own), checked; and the settings they
    imply: every step's name, reason prefix, settings and description, plus dedup's."""
    steps = default_steps(config) if steps is None else steps
    dedup = Dedup(config.near_threshold) if config.dedup else None
    settings = {
        "steps": describe_steps(steps),
        "dedup": None if dedup is None else describe_steps([dedup])[0],  # type: ignore[list-item]
    }
    return Validator(steps), settings


def settings_hash(settings: dict[str, Any]) -> str:
    """What changes verdicts, hashed: every step's settings (descriptions left out)."""
    core = {
        "steps": [{k: v for k, v in s.items() if k != "describe"} for s in settings["steps"]],
        "dedup": settings["dedup"] and settings["dedup"]["settings"],
    }
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def validate_runs(
    config: ValidateConfig,
    *,
    steps: list[Step] | None = None,
    on_row: Callable[[DualView, ValidateStats], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch_status: Callable[[list[Any]], None] | None = None,
) -> ValidateStats:
    """Validate (or resume validating) the rows of every run; dedup across them all.

    `steps`: the per-row steps to run instead of `default_steps(config)` (a library user
    adds their own check as `default_steps(config) + [MyCheck()]`)."""
    check_options(config)
    generators = _generator_models(config.runs)
    if config.judge and config.judge_model is None:
        config = config.model_copy(update={"judge_model": generators[0]})
    if config.judge and config.escalate_margin == "auto" and steps is None:
        if config.dry_run:  # sends nothing, so picks nothing: cheap calls are what it prices
            config = config.model_copy(update={"escalate_margin": 0.2})
            if on_notice:
                on_notice(
                    "--escalate-margin auto: picked on the gold set when validate runs; "
                    "this estimate holds the cheap judge's calls (escalations come after)"
                )
        else:
            config = _pick_margin(config, on_notice)
    validator, settings = build_validator(config, steps)  # bad options fail before warnings
    if config.judge and config.judge_model in generators and on_notice:
        on_notice(
            f"--judge-model {config.judge_model} is also the generator: a model tends to "
            "approve its own output; a different judge is a stronger check"
        )
    notice = escalation_notice(config) if config.judge else None
    if notice and on_notice:
        on_notice(notice)
    if config.dry_run and config.judge and config.escalate_to and on_notice:
        on_notice(
            f"--dry-run: the estimate holds {config.judge_model}'s calls; those it escalates "
            f"(at most one each) go to {config.escalate_to} on top"
        )
    digest = settings_hash(settings)
    stores = _open_stores(config.runs)
    stats = ValidateStats()
    try:
        if config.calls_online:
            from dvsynth.runs.batches import settle_before_online

            settle_before_online(stores, VALIDATE, on_notice)  # never online what a batch holds
        for store in stores:
            if config.dry_run:  # a dry run changes nothing: not even the current settings
                continue
            store.begin_validation(digest, json.dumps(settings, sort_keys=True), dedup=config.dedup)
        pending = sum(s.count_pending_validation(digest) for s in stores)
        if on_start:
            on_start(pending)
        if config.dedup and not config.dry_run:
            # Dedup compares the rows of exactly the runs given, so it is redone on every
            # invocation; until it ends, kept rows are pending (a kill leaves them so).
            for store in stores:
                store.reset_dedup(digest)
        if pending:
            # One event loop for every run directory: the client's pooled connections and
            # limits belong to the loop that made them.
            run_stage_loop(
                _validate_stores(stores, validator, digest, config, stats, on_row, on_batch_status)
            )
        if config.dry_run and stats.estimate is None:  # nothing pending: nothing to send
            from dvsynth.llm.cost import BASIS_RUN_MEAN, estimate

            stats.estimate = estimate(config.judge_model or "", iter([]), 0, BASIS_RUN_MEAN)
        if config.dedup and not config.dry_run:
            _dedup(stores, digest, Dedup(config.near_threshold), stats)
        stats.kept_before_dedup = sum(1 for s in stores for _ in s.iter_kept_texts(digest))
    finally:
        for store in stores:
            store.close()
    return stats


def _pick_margin(config: ValidateConfig, on_notice: Callable[[str], None] | None) -> ValidateConfig:
    """`--escalate-margin auto` resolved on the gold set, its calls cached in the first
    run's database: a rerun of the same validate picks the same margin without paying
    for the gold set's calls again."""
    from dvsynth.validators.margin import resolve_margin

    stores = _open_stores(config.runs)
    try:
        config, picked = resolve_margin(config, _AnswersCommitted(stores[0]))
    finally:
        for store in stores:
            store.close()
    if on_notice:
        on_notice(picked.describe())
    return config


class _AnswersCommitted:
    """A run's response cache whose every new answer is committed at once: the gold-set
    calls belong to no row, so nothing else would commit them before a kill."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def get_response(self, key: str) -> dict[str, Any] | None:
        return self.store.cache.get_response(key)

    def put_response(self, key: str, value: dict[str, Any]) -> None:
        self.store.cache.put_response(key, value)
        self.store.commit_answers()


async def _validate_stores(
    stores: list[RunStore],
    validator: Validator,
    settings_hash: str,
    config: ValidateConfig,
    stats: ValidateStats,
    on_row: Callable[[DualView, ValidateStats], None] | None,
    on_batch_status: Callable[[list[Any]], None] | None = None,
) -> None:
    """Every store's pending rows, run after run, in the caller's one event loop; in
    batch mode (or a dry run) as rounds of `llm.batch.rounds`, one lane per run."""
    clients = validator.clients()
    # Per run, one lane per judge model: a cascade's escalated calls queue in the strong
    # judge's lane, after the cheap answers came back (a second round).
    lanes: list[dict[int, Lane]] = [{} for _ in stores]

    async def one_pass() -> None:
        stats.waiting = 0
        for store, by_client in zip(stores, lanes, strict=True):
            for client in clients:
                client.cache = store.cache  # each run caches its own calls
                lane = by_client.get(id(client))
                client.batch = lane.session if lane is not None else None
            rows = store.iter_pending_validation(settings_hash)
            await _validate_store(
                store,
                rows,
                validator,
                settings_hash,
                config.concurrency,
                stats,
                None if config.dry_run else on_row,
                commit=not config.dry_run,
            )

    try:
        if clients and (config.batched or config.dry_run or config.engine == "ray"):
            judge = clients[0]
            providers: dict[int, Any] = {}
            for client in clients:
                providers[id(client)] = None
                if config.batch:
                    providers[id(client)] = provider_for(
                        client.model, client.provider()[0], client.api_base, client.api_key
                    )
            for store, by_client in zip(stores, lanes, strict=True):
                for client in clients:
                    by_client[id(client)] = make_lane(
                        store.ledger(), VALIDATE, client, providers[id(client)], _run_tag(store)
                    )
            chosen = [lane for by_client in lanes for lane in by_client.values()]
            mean = _mean_tokens(chosen, config)
            if config.dry_run:
                stats.estimate = await dry_run(chosen, one_pass, mean)
                return
            cap = config.max_cost
            stats.batch = await run_rounds(
                chosen,
                one_pass,
                out=config.batch_out,
                wait=config.wait,
                check_cost=None
                if cap is None
                else lambda ls: refuse_above_cap(
                    ls, cap, lambda: spend_of(stores), mean, "--max-cost"
                ),
                on_status=on_batch_status,
                poll_first_s=config.poll_s,
                ray=ray_settings(config, judge) if config.engine == "ray" else None,
            )
        else:
            await one_pass()
    finally:
        for client in clients:
            client.batch = None
            await client.aclose()


VALIDATE = "validate"


def _run_tag(store: RunStore) -> str:
    return str(read_manifest(store.run_dir).get("identity_sha256", "run"))[:8]


def _mean_tokens(lanes: list[Lane], config: ValidateConfig) -> tuple[float, str]:
    """Completion tokens per judge call for estimates: batch answers so far, else the cap."""
    means = [m for lane in lanes if (m := lane.engine.ledger.mean_completion_tokens(VALIDATE))]
    if means:
        return sum(means) / len(means), "run mean"
    return float(config.judge_max_tokens), "--judge-max-tokens"


async def _validate_store(
    store: RunStore,
    rows: Iterable[DualView],
    validator: Validator,
    settings_hash: str,
    concurrency: int,
    stats: ValidateStats,
    on_row: Callable[[DualView, ValidateStats], None] | None,
    commit: bool = True,
) -> None:
    """Validate `rows` with at most `concurrency` in flight, committing each as it ends
    (`commit` False: a dry run, which only learns what calls it would send)."""
    window: CommitWindow[DualView] = CommitWindow(
        lambda checked: store.put_validated(checked, settings_hash), concurrency
    )

    async def check(row: DualView) -> tuple[DualView, StepOutcome] | None:
        """The checked row, committed before it counts as done (`runs.commit_window`)."""
        started = time.perf_counter()
        result = await unless_waiting(validator, row, row.seed_id)
        if result is not None and commit:
            await window.commit(result[0], time.perf_counter() - started)
        return result

    def finished(_: DualView, result: tuple[DualView, StepOutcome] | None) -> None:
        if result is None:  # waits on a batch: the next pass finishes it
            stats.waiting += 1
            return
        row, outcome = result
        if not commit:
            return
        _count(stats, row, outcome)
        if on_row:
            on_row(row, stats)

    try:
        with store.background_checkpoints():
            await bounded_map(rows, check, concurrency, finished)
    finally:
        window.flush()


def _count(stats: ValidateStats, row: DualView, outcome: StepOutcome) -> None:
    stats.validated += 1
    stats.reasons.update(row.reasons)  # generate kept the row: every reason is a step's
    if row.status == "failed":
        stats.failed += 1
    elif row.status == "rejected":
        stats.rejected[row.stages[-1]] += 1  # the step that rejected it ran last
    for verdict in [*row.verdicts, *row.checks]:
        if verdict.escalation is not None:
            stats.questions += 1
            stats.escalated += verdict.escalation.escalated
    if outcome.prompt_tokens or outcome.completion_tokens or outcome.cached_calls:
        stats.cached_calls += outcome.cached_calls
        stats.judge_prompt_tokens += outcome.prompt_tokens
        stats.judge_completion_tokens += outcome.completion_tokens
        if outcome.cost_usd is None:
            stats.judge_cost_unknown += 1
        else:
            stats.judge_cost_usd += outcome.cost_usd


def _dedup(stores: list[RunStore], settings_hash: str, dedup: Dedup, stats: ValidateStats) -> None:
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
    duplicates = dedup(ids, texts)
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
