"""The audit's figures: how often people found a verified pair to be a true flip (all
four labels as intended) with a Wilson 95% interval, per-view accuracy, the judge's
agreement with people per judgment (Cohen's kappa), the share of judge-rejected pairs
people found good, and agreement between reviewers.

"unsure" never counts as the intended label: a pair with one is not a true flip, and
judgments answered unsure are left out of the kappas (which compare yes / no).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from dvsynth.records import EXPECTED

Z95 = 1.959963984540054
JUDGMENTS = (("a", "a"), ("a", "b"), ("b", "b"), ("b", "a"))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of successes / n (None for n = 0)."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels; None when it is undefined (no pairs, or
    both raters gave one and the same label throughout, so chance agreement is 1)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected >= 1.0:
        return None
    return round((observed - expected) / (1 - expected), 4)


def _share(k: int, n: int) -> dict[str, Any]:
    return {"n": n, "count": k, "share": round(k / n, 4) if n else None, "wilson95": wilson(k, n)}


def intended(view: str, doc: str) -> str:
    return "yes" if EXPECTED[(view, doc)] else "no"


def labels_by_reviewer(data: dict[str, Any]) -> dict[str, dict[tuple[str, str, str], str]]:
    """reviewer -> (seed_id, view, doc) -> label, from the answers and each item's order."""
    by_item = {i["item"]: i for i in data["items"]}
    out: dict[str, dict[tuple[str, str, str], str]] = {}
    for answer in data["answers"]:
        item = by_item.get(answer["item"])
        if item is None:
            continue
        first, second = ("a", "b") if item["doc_1"] == "a" else ("b", "a")
        into = out.setdefault(answer["reviewer"], {})
        into[(item["seed_id"], item["view"], first)] = answer["doc_1"]
        into[(item["seed_id"], item["view"], second)] = answer["doc_2"]
    return out


def _figures_of(labels: list[tuple[str, dict]], data: dict[str, Any]) -> dict[str, Any]:
    """Figures over (reviewer, labels) units: each audited pair of each reviewer counts."""
    kinds = {i["seed_id"]: i["kind"] for i in data["items"]}
    flips = {"verified": [0, 0], "rejected": [0, 0]}
    views = {"a": [0, 0], "b": [0, 0]}
    judge: dict[tuple[str, str], list[tuple[str, str]]] = {j: [] for j in JUDGMENTS}
    for _, found in labels:
        for seed_id, kind in kinds.items():
            four = {(v, d): found.get((seed_id, v, d)) for v, d in JUDGMENTS}
            if any(label is None for label in four.values()):
                continue  # not every item of this pair answered
            flip = all(four[j] == intended(*j) for j in JUDGMENTS)
            flips[kind][0] += flip
            flips[kind][1] += 1
            if kind == "verified":
                for view in "ab":
                    right = all(four[(view, d)] == intended(view, d) for d in "ab")
                    views[view][0] += right
                    views[view][1] += 1
            verdicts = data["pairs"].get(seed_id, {}).get("judge", {})
            for j in JUDGMENTS:
                said = verdicts.get(j)
                if said is not None and four[j] in ("yes", "no"):
                    judge[j].append(("yes" if said else "no", four[j]))
    return {
        "true_flip": _share(*flips["verified"]),
        "rejected_found_good": _share(*flips["rejected"]) if data["sample"]["rejected"] else None,
        "view_accuracy": {f"view_{v}": _share(*views[v]) for v in "ab"},
        "judge_kappa": {
            f"view_{v}:doc_{d}": {
                "n": len(judge[(v, d)]),
                "agreement": round(sum(a == b for a, b in judge[(v, d)]) / len(judge[(v, d)]), 4)
                if judge[(v, d)]
                else None,
                "kappa": kappa(judge[(v, d)]),
            }
            for v, d in JUDGMENTS
        },
    }


def figures(data: dict[str, Any], run: str = "") -> dict[str, Any]:
    """Per reviewer and pooled figures, reviewer agreement and the disagreements."""
    by_reviewer = labels_by_reviewer(data)
    reviewers = sorted(by_reviewer)
    result: dict[str, Any] = {
        "run": run,
        "sample": {
            **data["sample"],
            "pairs": len({i["seed_id"] for i in data["items"]}),
            "items": len(data["items"]),
        },
        "reviewers": {r: _figures_of([(r, by_reviewer[r])], data) for r in reviewers},
        "pooled": _figures_of([(r, by_reviewer[r]) for r in reviewers], data),
        "reviewer_agreement": [],
        "disagreements": disagreements(data, by_reviewer),
    }
    for one, two in itertools.combinations(reviewers, 2):
        both = [
            (label, by_reviewer[two][key])
            for key, label in by_reviewer[one].items()
            if key in by_reviewer[two]
        ]
        result["reviewer_agreement"].append(
            {"reviewers": [one, two], "labels": len(both), "kappa": kappa(both)}
        )
    dates = sorted(a["answered_at"] for a in data["answers"])
    result["answered"] = {"first": dates[0][:10], "last": dates[-1][:10]} if dates else None
    return result


def disagreements(
    data: dict[str, Any], by_reviewer: dict[str, dict[tuple[str, str, str], str]]
) -> list[dict[str, Any]]:
    """Every judgment where a person's label differs from the intended one, the judge's,
    or another person's; with the viewer path of the pair."""
    kinds = {i["seed_id"]: i["kind"] for i in data["items"]}
    out = []
    for seed_id, kind in kinds.items():
        verdicts = data["pairs"].get(seed_id, {}).get("judge", {})
        for view, doc in JUDGMENTS:
            people = {
                r: found[(seed_id, view, doc)]
                for r, found in sorted(by_reviewer.items())
                if (seed_id, view, doc) in found
            }
            if not people:
                continue
            said = verdicts.get((view, doc))
            judge = None if said is None else ("yes" if said else "no")
            want = intended(view, doc)
            if len(set(people.values())) > 1 or any(
                label != want or (judge is not None and label != judge) for label in people.values()
            ):
                out.append(
                    {
                        "seed_id": seed_id,
                        "kind": kind,
                        "judgment": f"view_{view}:doc_{doc}",
                        "intended": want,
                        "judge": judge,
                        "people": people,
                        "path": f"pair?src=0&id={seed_id}",
                    }
                )
    return out


def _pct(share: dict[str, Any] | None) -> str:
    if not share or share["share"] is None:
        return "no pairs answered"
    low, high = share["wilson95"]
    return (
        f"{100 * share['share']:.1f}% ({share['count']} of {share['n']}; Wilson 95% "
        f"{100 * low:.1f}-{100 * high:.1f}%)"
    )


def print_report(result: dict[str, Any], say: Callable[[str], None]) -> None:
    """The report as lines of text."""
    sample = result["sample"]
    say(
        f"audit of {result['run']}: {sample['verified']} verified pairs (seed {sample['seed']})"
        + (f" + {sample['rejected']} judge-rejected" if sample["rejected"] else "")
        + f", {sample['items']} blind items, drawn {sample['created_at'][:10]}"
    )
    parts = [("pooled", result["pooled"])] + list(result["reviewers"].items())
    for name, fig in parts:
        say(f"{name}:")
        say(f"  true flip (all four labels as intended): {_pct(fig['true_flip'])}")
        for view, share in fig["view_accuracy"].items():
            say(f"  {view} accuracy: {_pct(share)}")
        if fig["rejected_found_good"] is not None:
            say(f"  judge-rejected pairs people found good: {_pct(fig['rejected_found_good'])}")
        for judgment, k in fig["judge_kappa"].items():
            shown = "undefined" if k["kappa"] is None else f"{k['kappa']:.3f}"
            agree = "" if k["agreement"] is None else f", agreement {100 * k['agreement']:.1f}%"
            say(f"  judge vs people {judgment}: kappa {shown} over {k['n']}{agree}")
    for pair in result["reviewer_agreement"]:
        shown = "undefined" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
        say(
            f"reviewers {' / '.join(pair['reviewers'])}: kappa {shown} over {pair['labels']} labels"
        )
    if result["disagreements"]:
        count = len(result["disagreements"])
        say(f"disagreements ({count}; open with `dvsynth view RUN`, then the path):")
        for d in result["disagreements"]:
            people = ", ".join(f"{r} {label}" for r, label in d["people"].items())
            say(
                f"  {d['seed_id']} {d['judgment']} ({d['kind']}): intended {d['intended']}, "
                f"judge {d['judge'] or '-'}, {people}  -> {d['path']}"
            )
