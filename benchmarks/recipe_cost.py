"""What the flagship recipe costs at the paper's budget, at a few price points.

Renders the prompts a recipe run sends per seed, over the 165 msmarco gold pairs (real
MS MARCO passages, used as Promptriever seeds: the query, instruction a as the seed's
instruction, doc_a as D+, doc_b as the instruction negative D-, 3 other negatives):
one reverse-mode generator call, then the validation calls of issue 8 (4 pointwise
judgments, one instruction check of the generated instruction, one judgment per other
negative under view b). Prompt tokens are counted and priced with `dvsynth.llm.cost`
(litellm's offline tokenizers and price table, as `dvsynth run --dry-run` does), then
scaled from the gold pairs to the recipe's `generate.limit` seeds.

Completion tokens cannot be counted before the calls: the generator is priced at two
sizes per call, its `max_tokens` cap (an upper bound: what a dry run of a new run
assumes) and `--typical-completion` (an assumption, stated as one); judge answers are
one word, priced at `--judge-completion` tokens. Every seed is assumed to reach the
judge (an upper bound: rows rejected by generation or the rules are not judged).

    python benchmarks/recipe_cost.py [--recipe recipes/dual-view-msmarco.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dvsynth.evaluate.gold import read_gold  # noqa: E402
from dvsynth.llm.cost import BASIS_MAX_TOKENS, estimate  # noqa: E402
from dvsynth.prompts import DEFAULT_PROMPTS, load_template  # noqa: E402
from dvsynth.recipe.io import load_recipe  # noqa: E402
from dvsynth.validators.rules import generated_instructions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: (generator, judge) pairs priced besides the recipe's own.
PRICE_POINTS = [
    ("openai/gpt-4o-mini", "openai/gpt-4o-mini"),
    ("openai/gpt-4.1-mini", "anthropic/claude-sonnet-4-5"),
]


def calls(gold: Path):
    """(generator messages, judge messages) for every gold pair, as a run renders them."""
    reverse = load_template(DEFAULT_PROMPTS["reverse"])
    judge = load_template("judge.v1")
    check = load_template("instruction_check.v1")
    generator, judged = [], []
    for pair in read_gold(gold):
        row = pair.as_dual_view()
        row.mode = "reverse"
        generator.append(
            reverse.render(
                query=row.query,
                instruction=row.instruction_a or "",
                positive=row.doc_a,
                negative=row.doc_b,
                other_negatives=row.other_negatives,
            )
        )
        for ins in (row.instruction_a, row.instruction_b):
            for doc in (row.doc_a, row.doc_b):
                judged.append(judge.render(query=row.query, instruction=ins or "", document=doc))
        for _, text in generated_instructions(row):
            judged.append(check.render(query=row.query, instruction=text or ""))
        for doc in row.other_negatives:
            judged.append(
                judge.render(query=row.query, instruction=row.instruction_b or "", document=doc)
            )
    return generator, judged


def usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes/dual-view-msmarco.yaml")
    parser.add_argument("--gold", type=Path, default=ROOT / "benchmarks/gold/msmarco-gold.jsonl")
    parser.add_argument("--typical-completion", type=float, default=400.0)
    parser.add_argument("--judge-completion", type=float, default=1.0)
    args = parser.parse_args()

    recipe, _ = load_recipe(args.recipe)
    seeds = recipe.generate.limit or 480_000
    generator, judged = calls(args.gold)
    pairs = len(generator)
    scale = seeds / pairs
    print(
        f"{pairs} gold pairs -> {seeds:,} seeds (x{scale:,.1f}); per seed: 1 generator call, "
        f"{len(judged) / pairs:g} judge calls"
    )
    points = [(recipe.generate.model, recipe.validation.judge_model), *PRICE_POINTS]
    cap = recipe.generate.max_tokens
    print(
        f"\n| generator | judge | generator prompt tok/seed | judge prompt tok/seed | "
        f"online, {args.typical_completion:g} completion tok | batch, "
        f"{args.typical_completion:g} | batch, {cap} (cap) |"
    )
    print("|---|---|---|---|---|---|---|")
    for gen_model, judge_model in points:
        row = []
        for completion in (args.typical_completion, float(cap)):
            g = estimate(gen_model, iter(generator), completion, BASIS_MAX_TOKENS)
            j = estimate(judge_model, iter(judged), args.judge_completion, BASIS_MAX_TOKENS)
            row.append((g, j))
        (g, j), (g_cap, j_cap) = row

        def total(a, b, kind):
            x, y = getattr(a, kind), getattr(b, kind)
            return None if x is None or y is None else (x + y) * scale

        print(
            f"| {gen_model} | {judge_model} | {g.prompt_tokens / pairs:,.0f} | "
            f"{j.prompt_tokens / pairs:,.0f} | {usd(total(g, j, 'online_usd'))} | "
            f"{usd(total(g, j, 'batch_usd'))} | {usd(total(g_cap, j_cap, 'batch_usd'))} |"
        )
    median = statistics.median(len(m[0]["content"]) for m in generator)
    print(
        f"\nmedian generator prompt: {median:,.0f} characters; recipe cap: "
        f"limits.max_cost ${recipe.limits.max_cost or 0:g}"
    )


if __name__ == "__main__":
    main()
