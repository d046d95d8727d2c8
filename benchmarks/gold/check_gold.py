"""Check gold files: schema, the rule validators, and coverage counts.

Every gold pair must pass every rule (a rule that rejects gold is a false reject);
corrupt variants of kind leak / meta / rewording should be caught by the matching rule
(reported, not required: the judge is the other line of defence).

    python benchmarks/gold/check_gold.py FILE.jsonl [FILE.jsonl ...]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dvsynth.evaluate.gold import read_gold  # noqa: E402
from dvsynth.validators.rules import apply_rules, build_rules  # noqa: E402

RULE_FOR = {"leak": "rule:leakage", "meta": "rule:meta_language", "rewording": "rule:rewording"}


def main() -> int:
    rules = build_rules()
    levers, styles, kinds = Counter(), Counter(), Counter()
    caught, failures, ids, queries = Counter(), [], set(), Counter()
    total = 0
    for name in sys.argv[1:]:
        for pair in read_gold(Path(name)):
            total += 1
            if pair.gold_id in ids:
                failures.append(f"{name}: duplicate gold_id {pair.gold_id}")
            ids.add(pair.gold_id)
            queries[pair.query] += 1
            levers[pair.lever] += 1
            styles[pair.style] += 1
            reasons = apply_rules(rules, pair.as_dual_view())
            if reasons:
                failures.append(f"{name}: {pair.gold_id} gold fails rules: {reasons}")
            for variant in pair.corrupt:
                kinds[variant.kind] += 1
                found = apply_rules(rules, pair.as_dual_view(variant.instruction_b))
                expected = RULE_FOR.get(variant.kind)
                if expected and any(r.startswith(expected) for r in found):
                    caught[variant.kind] += 1
    print(f"pairs: {total}")
    print("levers:", dict(sorted(levers.items())))
    print("styles:", dict(sorted(styles.items())))
    print("corrupt kinds:", dict(sorted(kinds.items())))
    print("caught by their rule:", {k: f"{caught[k]}/{kinds[k]}" for k in RULE_FOR})
    repeated = [q for q, n in queries.items() if n > 1]
    if repeated:
        print(f"queries used more than once: {len(repeated)}")
    for line in failures:
        print("FAIL", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
