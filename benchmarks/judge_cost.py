"""What the instruction check and `--judge-negatives` add to the judge's bill, per pair.

Renders every prompt `dvsynth validate` sends for a pair (4 pointwise judgments, one
instruction check per generated instruction, one judgment per other negative under view
b) over the 165 msmarco gold pairs (real MS MARCO passages, 3 other negatives each), and
counts their prompt tokens with litellm's tokenizer for `--model` (offline). Answers are
one word, so completion tokens are about one per call (the judge's budget is 16).

    python benchmarks/judge_cost.py [--model gpt-4o-mini] [--gold FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dvsynth.evaluate.gold import read_gold  # noqa: E402
from dvsynth.prompts import DEFAULT_JUDGE_PROMPT, load_template  # noqa: E402
from dvsynth.validators.instruction_check import DEFAULT_INSTRUCTION_CHECK_PROMPT  # noqa: E402
from dvsynth.validators.rules import generated_instructions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-4o-mini", help="tokenizer (litellm model name)")
    parser.add_argument("--gold", type=Path, default=ROOT / "benchmarks/gold/msmarco-gold.jsonl")
    args = parser.parse_args()

    import litellm

    judge = load_template(DEFAULT_JUDGE_PROMPT)
    check = load_template(DEFAULT_INSTRUCTION_CHECK_PROMPT)

    def tokens(messages) -> int:
        return litellm.token_counter(model=args.model, messages=messages)

    rows = []
    for pair in read_gold(args.gold):
        row = pair.as_dual_view()
        for mode in ("reverse", "bootstrap"):
            row.mode = mode
            pairwise = [
                tokens(judge.render(query=row.query, instruction=ins or "", document=doc))
                for ins in (row.instruction_a, row.instruction_b)
                for doc in (row.doc_a, row.doc_b)
            ]
            checks = [
                tokens(check.render(query=row.query, instruction=text or ""))
                for _, text in generated_instructions(row)
            ]
            negatives = [
                tokens(judge.render(query=row.query, instruction=row.instruction_b, document=d))
                for d in row.other_negatives
            ]
            rows.append((mode, pairwise, checks, negatives))

    print(f"{len(rows) // 2} gold pairs, prompt tokens by {args.model}'s tokenizer (medians)\n")
    print("| mode | part | calls/pair | prompt tokens/pair | share of the 4 judgments |")
    print("|---|---|---|---|---|")
    for mode in ("reverse", "bootstrap"):
        of_mode = [r for r in rows if r[0] == mode]
        base = statistics.median(sum(r[1]) for r in of_mode)
        for name, index in (("4 judgments", 1), ("instruction check", 2), ("other negatives", 3)):
            calls = statistics.median(len(r[index]) for r in of_mode)
            spent = statistics.median(sum(r[index]) for r in of_mode)
            print(f"| {mode} | {name} | {calls:g} | {spent:,.0f} | {spent / base:.2f} |")
        total = statistics.median(sum(map(sum, r[1:])) for r in of_mode)
        print(f"| {mode} | all | | {total:,.0f} | {total / base:.2f} |")
    per_negative = statistics.median(t for r in rows for t in r[3])
    per_check = statistics.median(t for r in rows for t in r[2])
    print(
        f"\nmedian prompt tokens per call: other negative {per_negative:,.0f}, "
        f"instruction check {per_check:,.0f}"
    )


if __name__ == "__main__":
    main()
