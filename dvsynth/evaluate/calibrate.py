"""`dvsynth calibrate`: how far to trust a judge, measured on gold and corrupt pairs.

Every gold pair should be kept; every corrupt variant (a rewording, an instruction
that admits both documents or neither, a leak, meta-language) should be rejected. The
rules and the judge run exactly as in `dvsynth validate`, and the report gives the
precision and recall of "keep", the false-reject rate on gold, the recall per failure
type (and which stage caught it), and what the judge cost.

A cascade (`escalate_to`) is scored three ways on the same cached calls: the cheap judge
alone, the strong judge alone and the cascade, each with its calls per model and, for
the cascade, the share of questions escalated; `escalate_margin auto` first picks the
margin (`validators.margin`). A joint judge (`judge_protocol joint`) is also asked each
gold pair in both document orders: `position_bias` is the share of (pair, view)
judgments whose verdict changes with the order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvsynth.config import ValidateConfig
from dvsynth.evaluate.gold import CORRUPT_KINDS, GoldPair
from dvsynth.llm.client import ResponseCache
from dvsynth.runs.pipeline import bounded_map
from dvsynth.validators.judge import Judge
from dvsynth.validators.run import build_validator, escalation_notice
from dvsynth.validators.step import StepOutcome, Validator


@dataclass
class Case:
    pair_id: str
    kind: str  # "gold" or a corrupt kind
    kept: bool = False
    stage: str | None = None  # "rules", "check" or "judge" when rejected
    reasons: tuple[str, ...] = ()


class MemoryCache(dict):
    """A response cache for one calibrate process (gold and its variants share calls)."""

    def get_response(self, key: str):
        return self.get(key)

    def put_response(self, key: str, value) -> None:
        self[key] = value


def cases_of(pairs: Sequence[GoldPair], mode: str = "bootstrap") -> list[tuple[Case, Any]]:
    """Each gold pair and its corrupt variants as rows; `mode` "reverse" makes
    instruction_a the seed's own (what `judge_views generated` trusts)."""
    out = []
    for pair in pairs:
        out.append((Case(pair.gold_id, "gold"), pair.as_dual_view()))
        for i, variant in enumerate(pair.corrupt):
            row = pair.as_dual_view(variant.instruction_b, suffix=f"~{variant.kind}{i}")
            out.append((Case(row.pair_id, variant.kind), row))
    for _, row in out:
        row.mode = mode  # type: ignore[assignment]
    return out


async def _run(
    items: list[tuple[Case, Any]], validator: Validator, concurrency: int, totals: Counter
) -> None:
    def finished(item: tuple[Case, Any], result: tuple[Any, StepOutcome]) -> None:
        case, _ = item
        checked, outcome = result
        case.kept = checked.status == "kept"
        case.reasons = tuple(checked.reasons)
        if not case.kept:
            case.stage = checked.stages[-1]  # the step that rejected it ran last
        if outcome.prompt_tokens or outcome.completion_tokens or outcome.cached_calls:
            totals["prompt_tokens"] += outcome.prompt_tokens
            totals["completion_tokens"] += outcome.completion_tokens
            if outcome.cost_usd is None:
                totals["unpriced_pairs"] += 1
            else:
                totals["cost_usd_micro"] += round(outcome.cost_usd * 1e6)
        for model, spend in outcome.worth.items():  # cached calls too: what a run would pay
            totals[f"calls:{model}"] += spend.calls
            totals[f"tokens:{model}"] += spend.prompt_tokens + spend.completion_tokens
            if spend.cost_usd is None:
                totals[f"unpriced:{model}"] += 1
            else:
                totals[f"micro:{model}"] += round(spend.cost_usd * 1e6)
        for verdict in [*checked.verdicts, *checked.checks]:
            if verdict.escalation is not None:
                totals["questions"] += 1
                totals["escalated"] += verdict.escalation.escalated

    try:
        await bounded_map(items, lambda item: validator(item[1]), concurrency, finished)
    finally:
        for client in validator.clients():
            await client.aclose()


def calibrate(
    pairs: Sequence[GoldPair], config: ValidateConfig, cache: ResponseCache | None = None
) -> dict[str, Any]:
    """The report of `dvsynth calibrate` (see the module docstring)."""
    shared = cache if cache is not None else MemoryCache()
    picked = None
    if config.judge and config.escalate_margin == "auto":
        from dvsynth.validators.margin import resolve_margin

        config, picked = resolve_margin(config, shared)
    result = score(pairs, config, shared)
    if config.judge and config.escalate_to is not None:
        result["judges"] = {
            "cheap": score(pairs, alone(config, "cheap"), shared),
            "strong": score(pairs, alone(config, "strong"), shared),
            "cascade": {k: v for k, v in result.items()},
        }
    if picked is not None:
        result["margin_picked"] = picked.as_dict()
    if config.judge and (notice := escalation_notice(config)):
        result["note"] = notice
    if config.judge and config.judge_protocol == "joint":
        result["position_bias"] = position_bias(pairs, config, shared)
    return result


def score(
    pairs: Sequence[GoldPair],
    config: ValidateConfig,
    cache: ResponseCache,
    mode: str | None = None,
) -> dict[str, Any]:
    """Precision, recall and cost of one judge setting on the gold pairs and variants;
    `mode` "reverse" scores them as reverse-mode rows (instruction_a the seed's)."""
    validator, _ = build_validator(config)
    for client in validator.clients():
        client.cache = cache
    # Gold view a is right by construction: with `generated` views it plays the seed's.
    if mode is None:
        mode = "reverse" if config.judge_views == "generated" else "bootstrap"
    items = cases_of(pairs, mode)
    totals: Counter[str] = Counter()
    asyncio.run(_run(items, validator, config.concurrency, totals))
    return report([case for case, _ in items], totals, config)


def alone(config: ValidateConfig, which: str) -> ValidateConfig:
    """A cascade's cheap or strong judge as the only judge."""
    plain = {
        "escalate_to": None,
        "escalate_api_base": None,
        "escalate_api_key_env": None,
        "escalate_margin": 0.2,
        "escalate_gold": None,
    }
    if which == "strong":
        plain.update(
            judge_model=config.escalate_to,
            judge_api_base=config.escalate_api_base,
            judge_extra_api_bases=[],
            judge_api_key_env=config.escalate_api_key_env,
        )
    return config.model_copy(update=plain)


def position_bias(
    pairs: Sequence[GoldPair], config: ValidateConfig, cache: ResponseCache
) -> dict[str, Any]:
    """Each gold pair's joint judgment of each view in both orders: how often the
    verdict (either document's) changes with the order."""
    validator, _ = build_validator(config)
    judge = next(s for s in validator.steps if isinstance(s, Judge))
    for client in validator.clients():
        client.cache = cache
    rows = [pair.as_dual_view() for pair in pairs]
    jobs = [(row, view) for row in rows for view in ("a", "b")]

    async def both_orders(job: tuple[Any, str]) -> bool | None:
        row, view = job
        forward, _ = await judge.ask_joint(row, view, ("a", "b"))
        backward, _ = await judge.ask_joint(row, view, ("b", "a"))
        first = {v.doc: v.relevant for v in forward}
        second = {v.doc: v.relevant for v in backward}
        if None in first.values() or None in second.values():
            return None  # unparsable in one order: no verdict to compare
        return first != second

    changed: list[bool | None] = []

    async def run() -> None:
        try:
            await bounded_map(jobs, both_orders, config.concurrency, lambda _, r: changed.append(r))
        finally:
            for client in validator.clients():
                await client.aclose()

    asyncio.run(run())
    compared = [c for c in changed if c is not None]
    return {
        "judgments": len(jobs),
        "compared": len(compared),
        "changed_with_order": sum(compared),
        "share_changed": round(sum(compared) / len(compared), 4) if compared else None,
    }


def report(cases: Sequence[Case], totals: Counter, config: ValidateConfig) -> dict[str, Any]:
    gold = [c for c in cases if c.kind == "gold"]
    corrupt = [c for c in cases if c.kind != "gold"]
    true_keep = sum(c.kept for c in gold)
    false_keep = sum(c.kept for c in corrupt)
    kept = true_keep + false_keep
    per_kind = {}
    for kind in CORRUPT_KINDS:
        of_kind = [c for c in corrupt if c.kind == kind]
        if of_kind:
            rejected = [c for c in of_kind if not c.kept]
            per_kind[kind] = {
                "variants": len(of_kind),
                "recall": round(len(rejected) / len(of_kind), 4),
                "by_rules": sum(c.stage == "rules" for c in rejected),
                "by_check": sum(c.stage == "check" for c in rejected),
                "by_judge": sum(c.stage == "judge" for c in rejected),
            }
    false_rejects = Counter(r for c in gold if not c.kept for r in c.reasons)
    return {
        "judge_model": config.judge_model if config.judge else None,
        "gold_pairs": len(gold),
        "corrupt_variants": len(corrupt),
        "keep_precision": round(true_keep / kept, 4) if kept else None,
        "keep_recall": round(true_keep / len(gold), 4) if gold else None,
        "false_reject_rate": round(1 - true_keep / len(gold), 4) if gold else None,
        "false_reject_reasons": dict(false_rejects.most_common()),
        "corrupt_recall": round(1 - false_keep / len(corrupt), 4) if corrupt else None,
        "recall_by_kind": per_kind,
        "judge_tokens": totals["prompt_tokens"] + totals["completion_tokens"],
        "judge_cost_usd": None if totals["unpriced_pairs"] else totals["cost_usd_micro"] / 1e6,
        "judge_calls": {
            key.split(":", 1)[1]: n for key, n in sorted(totals.items()) if key.startswith("calls:")
        },
        # Per model, every call priced, answers shared with other settings included: what
        # this setting costs on the gold set (judge_cost_usd is what was paid just now).
        "cost_by_model": {
            model: {
                "calls": n,
                "tokens": totals[f"tokens:{model}"],
                "cost_usd": None if totals[f"unpriced:{model}"] else totals[f"micro:{model}"] / 1e6,
            }
            for key, n in sorted(totals.items())
            if key.startswith("calls:") and (model := key.split(":", 1)[1])
        },
        **(
            {
                "escalate_to": config.escalate_to,
                "escalate_margin": config.escalate_margin,
                "escalated_share": round(totals["escalated"] / totals["questions"], 4)
                if totals["questions"]
                else None,
            }
            if config.judge and config.escalate_to is not None
            else {}
        ),
        **({"judge_views": config.judge_views} if config.judge_views != "all" else {}),
        **(
            {"judge_protocol": config.judge_protocol}
            if config.judge_protocol != "pointwise"
            else {}
        ),
    }


def default_gold() -> Path:
    from dvsynth.evaluate.gold import BUNDLED_GOLD

    return BUNDLED_GOLD
