"""`dvsynth calibrate`: how far to trust a judge, measured on gold and corrupt pairs.

Every gold pair should be kept; every corrupt variant (a rewording, an instruction
that admits both documents or neither, a leak, meta-language) should be rejected. The
rules and the judge run exactly as in `dvsynth validate`, and the report gives the
precision and recall of "keep", the false-reject rate on gold, the recall per failure
type (and which stage caught it), and what the judge cost.
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
from dvsynth.validators.run import build_validator
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


def cases_of(pairs: Sequence[GoldPair]) -> list[tuple[Case, Any]]:
    out = []
    for pair in pairs:
        out.append((Case(pair.gold_id, "gold"), pair.as_dual_view()))
        for i, variant in enumerate(pair.corrupt):
            row = pair.as_dual_view(variant.instruction_b, suffix=f"~{variant.kind}{i}")
            out.append((Case(row.pair_id, variant.kind), row))
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

    try:
        await bounded_map(items, lambda item: validator(item[1]), concurrency, finished)
    finally:
        for client in validator.clients():
            await client.aclose()


def calibrate(
    pairs: Sequence[GoldPair], config: ValidateConfig, cache: ResponseCache | None = None
) -> dict[str, Any]:
    validator, _ = build_validator(config)
    shared = cache if cache is not None else MemoryCache()
    for client in validator.clients():
        client.cache = shared
    items = cases_of(pairs)
    totals: Counter[str] = Counter()
    asyncio.run(_run(items, validator, config.concurrency, totals))
    return report([case for case, _ in items], totals, config)


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
    }


def default_gold() -> Path:
    from dvsynth.evaluate.gold import BUNDLED_GOLD

    return BUNDLED_GOLD
