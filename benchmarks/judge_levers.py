"""The judge's bill and precision for each combination of issue 27's three levers.

Levers: `--judge-views all|generated`, `--judge-protocol pointwise|joint`, and the judge:
the strong one alone (today), the cheap one alone, or the cheap one escalating to the
strong one (`--escalate-to`, the margin picked with `--escalate-margin auto`).

Cost, per judged seed and per verified pair, for the flagship recipe's models
(`openai/gpt-4o-mini` cheap, `openai/gpt-4.1` strong) at list and batch prices: the
prompts a reverse-mode run sends (the judgments of the views judged, one instruction
check of the generated instruction, one pointwise judgment per other negative under
view b) are rendered over the msmarco gold pairs, counted and priced with
`dvsynth.llm.cost` as `recipe_cost.py` does; a cascade's strong calls are its cheap
calls times the share escalated, measured below. Per verified pair = per judged seed /
keep recall (a judge that drops good pairs pays more per pair it keeps).

Precision and recall, on the gold sets (bundled sample + msmarco) with the bundled fakes
`dvsynth.fakes.gold_judges` (an accurate strong judge and a noisy cheap one that is
unsure where it is wrong; their noise is fixed in that module, not fitted here). The
pairs are split by a hash of gold_id: the cascade's margin is picked on the `tune` half
(target precision 0.95) and every number reported is measured on the `held-out` half.
The gold rows are scored as reverse-mode rows (instruction_a the seed's, as in the
recipe); other negatives are not judged there (calibrate scores keep / reject).

    python benchmarks/judge_levers.py [--target-precision 0.95] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dvsynth.config import ValidateConfig  # noqa: E402
from dvsynth.evaluate.calibrate import MemoryCache, score  # noqa: E402
from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold  # noqa: E402
from dvsynth.fakes.gold_judges import CHEAP, STRONG, GoldJudges  # noqa: E402
from dvsynth.llm.cost import BASIS_MAX_TOKENS, estimate  # noqa: E402
from dvsynth.prompts import load_template  # noqa: E402
from dvsynth.testing import FakeLLMServer  # noqa: E402
from dvsynth.validators.judge import joint_swapped  # noqa: E402
from dvsynth.validators.margin import resolve_margin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MSMARCO = ROOT / "benchmarks/gold/msmarco-gold.jsonl"
PRICED = {"cheap": "openai/gpt-4o-mini", "strong": "openai/gpt-4.1"}
#: Completion tokens per call: one word; a joint answer "1: yes\n2: no" is about 7.
COMPLETION = {"pointwise": 1.0, "joint": 7.0}
JUDGES = ("strong", "cheap", "cascade")


def held_out(gold_id: str) -> bool:
    return int(hashlib.sha256(f"split:{gold_id}".encode()).hexdigest()[:8], 16) % 2 == 1


def prompts(pairs, views: str, protocol: str) -> dict[str, list]:
    """The messages one reverse-mode seed sends per call kind, over `pairs`."""
    pointwise = load_template("judge.v1")
    joint = load_template("judge_joint.v1")
    check = load_template("instruction_check.v1")
    found: dict[str, list] = {"judgments": [], "check": [], "negatives": []}
    for pair in pairs:
        row = pair.as_dual_view()
        judged = ("b",) if views == "generated" else ("a", "b")
        for view in judged:
            instruction = row.instruction_a if view == "a" else row.instruction_b
            if protocol == "joint":
                first, second = (
                    (row.doc_b, row.doc_a) if joint_swapped(row.pair_id) else (row.doc_a, row.doc_b)
                )
                found["judgments"].append(
                    joint.render(
                        query=row.query, instruction=instruction, first=first, second=second
                    )
                )
            else:
                for doc in (row.doc_a, row.doc_b):
                    found["judgments"].append(
                        pointwise.render(query=row.query, instruction=instruction, document=doc)
                    )
        found["check"].append(check.render(query=row.query, instruction=row.instruction_b))
        for other in row.other_negatives:
            found["negatives"].append(
                pointwise.render(query=row.query, instruction=row.instruction_b, document=other)
            )
    return found


def priced(messages: dict[str, list], protocol: str, model: str, pairs: int) -> dict[str, float]:
    """USD per seed, list and batch, of these calls sent to `model`."""
    total = {"online": 0.0, "batch": 0.0, "calls": 0.0}
    for kind, calls in messages.items():
        completion = COMPLETION[protocol] if kind == "judgments" else 1.0
        found = estimate(model, iter(calls), completion, BASIS_MAX_TOKENS)
        total["online"] += (found.online_usd or 0.0) / pairs
        total["batch"] += (found.batch_usd or 0.0) / pairs
        total["calls"] += found.calls / pairs
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    gold = [*read_gold(BUNDLED_GOLD), *read_gold(MSMARCO)]
    tune = [p for p in gold if not held_out(p.gold_id)]
    test = [p for p in gold if held_out(p.gold_id)]
    msmarco = list(read_gold(MSMARCO))
    results = []
    with FakeLLMServer() as server:
        GoldJudges(gold).install(server)
        cache = MemoryCache()
        for views in ("all", "generated"):
            for protocol in ("pointwise", "joint"):
                base = ValidateConfig(
                    runs=[],
                    judge_model=f"openai/{STRONG}",
                    judge_api_base=server.api_base,
                    judge_negatives=False,
                    judge_views=views,
                    judge_protocol=protocol,
                    max_retries=0,
                    concurrency=32,
                )
                messages = prompts(msmarco, views, protocol)
                cost = {
                    role: priced(messages, protocol, model, len(msmarco))
                    for role, model in PRICED.items()
                }
                for judge in JUDGES:
                    config, margin = base, None
                    if judge == "cheap":
                        config = base.model_copy(update={"judge_model": f"openai/{CHEAP}"})
                    if judge == "cascade":
                        config = base.model_copy(
                            update={
                                "judge_model": f"openai/{CHEAP}",
                                "escalate_to": f"openai/{STRONG}",
                                "escalate_api_base": server.api_base,
                                "escalate_margin": "auto",
                                "escalate_gold": "tune-half",
                                "target_precision": args.target_precision,
                            }
                        )
                        config, picked = resolve_margin(config, cache, tune, mode="reverse")
                        margin = picked.margin
                    found = score(test, config, cache, mode="reverse")
                    share = found.get("escalated_share") or 0.0
                    if judge == "cascade":
                        seed = {
                            k: cost["cheap"][k] + share * cost["strong"][k]
                            for k in ("online", "batch", "calls")
                        }
                    else:
                        seed = dict(cost[judge])
                    results.append(
                        {
                            "views": views,
                            "protocol": protocol,
                            "judge": judge,
                            "margin": margin,
                            "escalated_share": found.get("escalated_share"),
                            "keep_precision": found["keep_precision"],
                            "keep_recall": found["keep_recall"],
                            "calls_per_seed": round(seed["calls"], 2),
                            "online_usd_per_seed": seed["online"],
                            "batch_usd_per_seed": seed["batch"],
                        }
                    )
    baseline = next(
        r
        for r in results
        if (r["views"], r["protocol"], r["judge"]) == ("all", "pointwise", "strong")
    )
    for r in results:
        recall = r["keep_recall"] or float("nan")
        base_recall = baseline["keep_recall"] or float("nan")
        for kind in ("online", "batch"):
            r[f"{kind}_usd_per_verified"] = r[f"{kind}_usd_per_seed"] / recall
        r["cost_ratio"] = (r["batch_usd_per_seed"] / recall) / (
            baseline["batch_usd_per_seed"] / base_recall
        )
        r["meets_goal"] = bool(
            r["cost_ratio"] <= 0.3
            and (r["keep_precision"] or 0) >= args.target_precision
            and (r["keep_recall"] or 0) >= 0.9
        )
    print(
        f"gold: {len(gold)} pairs ({len(tune)} tune, {len(test)} held-out); cost over "
        f"{len(msmarco)} msmarco pairs as reverse-mode seeds; cheap {PRICED['cheap']}, "
        f"strong {PRICED['strong']}\n"
    )
    print(
        "| views | protocol | judge | margin | escalated | judge calls/seed | "
        "$/1k verified pairs, list | $/1k, batch | cost vs today | precision | recall | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        esc = "" if r["escalated_share"] is None else f"{100 * r['escalated_share']:.1f}%"
        print(
            f"| {r['views']} | {r['protocol']} | {r['judge']} | "
            f"{'' if r['margin'] is None else r['margin']} | {esc} | {r['calls_per_seed']:g} | "
            f"${1000 * r['online_usd_per_verified']:.2f} | "
            f"${1000 * r['batch_usd_per_verified']:.2f} | {r['cost_ratio']:.2f} | "
            f"{r['keep_precision']} | {r['keep_recall']} | {'yes' if r['meets_goal'] else ''} |"
        )
    meeting = [r for r in results if r["meets_goal"]]
    if meeting:
        best = min(meeting, key=lambda r: r["cost_ratio"])
        print(
            f"\ncheapest meeting the goal: --judge-views {best['views']} --judge-protocol "
            f"{best['protocol']} ({best['judge']}"
            + (f", margin {best['margin']}" if best["margin"] is not None else "")
            + f"): {best['cost_ratio']:.2f} of today's judge per verified pair"
        )
    else:
        print("\nno combination meets the goal")
    median = statistics.median(r["cost_ratio"] for r in results)
    print(f"median cost ratio over the {len(results)} combinations: {median:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
