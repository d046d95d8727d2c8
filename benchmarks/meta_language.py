"""The meta_language rule on hand-written meta and legitimate instructions, old rule vs new.

    python benchmarks/meta_language.py [--show-misses tuning]

Recall: share of meta instructions (pointing at the shown passages, or talking about the
task, labels or negatives) that the rule rejects. False-reject rate: share of legitimate
needs (many of which say "document", "passage", "first-hand", "HIV-negative") that it
rejects. `tuning.jsonl` is what the rule was developed on; `heldout.jsonl` was written
first and kept apart, so its numbers are the honest ones. Misses are printed only when
asked for, and only for the set named, so that nobody tunes on held-out failures by habit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvsynth.validators.rules import meta_match  # noqa: E402

SETS = ROOT / "benchmarks" / "meta_language"

# The rule before issue 12 (dvsynth/validators/rules.py at commit 5e49ea6), for comparison.
OLD_META = re.compile(
    r"""
    \b(?:passage|document|doc|candidate)s?\s*
        (?:(?-i:[A-Z])\b|\#?\d+\b|ids?\b)              # passage A, document 2, doc #1
    | \b(?:doc|document|passage)[_\s-]?ids?\b          # doc_id, passage ids
    | \b(?:the|a|each)\s+(?:positive|negative)\b       # the positive, a negative
    | \b(?:positive|negative)\s+(?:passage|document|doc|example|sample)s?\b
    | \bhard\s+negatives?\b
    | \b(?:instruction|view)\s+[AB]\b                  # instruction A, view B
    | \bthis\s+(?:task|exercise|instruction)\b
    | \b(?:the\s+)?(?:relevant|irrelevant)\s+(?:passage|document|doc)s?\b
    """,
    re.VERBOSE | re.IGNORECASE,
)


def read_set(name: str) -> list[dict]:
    path = SETS / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def score(rows: list[dict], rejects) -> dict:
    """Recall on meta rows, false-reject rate on legitimate ones, and the rows it got wrong."""
    meta = [r for r in rows if r["meta"]]
    legit = [r for r in rows if not r["meta"]]
    missed = [r["text"] for r in meta if not rejects(r["text"])]
    false_rejects = [r["text"] for r in legit if rejects(r["text"])]
    return {
        "meta": len(meta),
        "legitimate": len(legit),
        "recall": round(1 - len(missed) / len(meta), 3),
        "false_reject_rate": round(len(false_rejects) / len(legit), 3),
        "missed": missed,
        "false_rejects": false_rejects,
    }


RULES = {
    "old": lambda text: OLD_META.search(text) is not None,
    "new": lambda text: meta_match(text) is not None,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-misses", choices=("tuning", "heldout"), default=None)
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    args = parser.parse_args()
    results = {
        name: {rule: score(read_set(name), rejects) for rule, rejects in RULES.items()}
        for name in ("tuning", "heldout")
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| set | meta / legit | old recall | old false-reject | new recall | new false-reject |")
    print("|---|---|---|---|---|---|")
    for name, by_rule in results.items():
        old, new = by_rule["old"], by_rule["new"]
        print(
            f"| {name} | {new['meta']} / {new['legitimate']} | {old['recall']:.3f} "
            f"| {old['false_reject_rate']:.3f} | {new['recall']:.3f} "
            f"| {new['false_reject_rate']:.3f} |"
        )
    if args.show_misses:
        new = results[args.show_misses]["new"]
        for text in new["missed"]:
            print(f"missed: {text}  [{args.show_misses}]")
        for text in new["false_rejects"]:
            print(f"false reject: {text} -> {meta_match(text)}  [{args.show_misses}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
