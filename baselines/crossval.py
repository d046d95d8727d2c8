"""Offline demonstration on CPU: 5-fold cross-validation over a gold set.

    python baselines/crossval.py [--gold benchmarks/gold/msmarco-gold.jsonl] [--folds 5]
                                 [--seeds 0 1 2]

For each fold and seed: train the bundled all-MiniLM-L6-v2 on the other folds' pairs
with the `orig` arm and with the `dv` arm (same number of rows), then score base, orig
and dv on the held-out pairs with `dvsynth eval-retriever`'s measures (per-view and dual
accuracy, p-MRR over the pair's documents). Folds split by query, so no query is on both
sides. Writes baselines/out/crossval.json and prints a markdown table (mean and standard
deviation over the fold x seed runs) and how often dv beats orig on the same fold and
seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.pairs import pair_from_gold  # noqa: E402
from baselines.train import TrainConfig, train  # noqa: E402
from dvsynth.evaluate.embed import load_embedder  # noqa: E402
from dvsynth.evaluate.eval_retriever import embedding_scorer, evaluate_pairs, summarize  # noqa: E402
from dvsynth.evaluate.gold import GoldPair, read_gold  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASURES = ("dual_accuracy", "accuracy_view_a", "accuracy_view_b", "p_mrr")


def folds_by_query(pairs: list[GoldPair], k: int) -> list[list[GoldPair]]:
    """k folds; a query's pairs share a fold (assigned by a hash of the query)."""
    queries = sorted({p.query for p in pairs}, key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    fold_of = {q: i % k for i, q in enumerate(queries)}
    return [[p for p in pairs if fold_of[p.query] == i] for i in range(k)]


def paired(results: dict[str, list[dict]], measure: str) -> dict[str, int]:
    """dv against orig on the same fold and seed: wins, ties, losses."""
    counts = {"wins": 0, "ties": 0, "losses": 0}
    for dv, orig in zip(results["dv"], results["orig"], strict=True):
        key = (
            "wins"
            if dv[measure] > orig[measure]
            else "ties"
            if dv[measure] == orig[measure]
            else "losses"
        )
        counts[key] += 1
    return counts


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| model | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    for name, folds in results.items():
        cells = []
        for measure in MEASURES:
            values = [f[measure] for f in folds]
            cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", type=Path, default=ROOT / "benchmarks/gold/msmarco-gold.jsonl")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=ROOT / "baselines/out/crossval.json")
    args = parser.parse_args()
    pairs = list(read_gold(args.gold))
    folds = folds_by_query(pairs, args.folds)
    results: dict[str, list[dict]] = {"base": [], "orig": [], "dv": []}
    started = time.perf_counter()
    base_scorer = embedding_scorer(load_embedder(None))
    work = Path(tempfile.mkdtemp(prefix="dvsynth-crossval-"))
    for i, held_out in enumerate(folds):
        train_pairs = [pair_from_gold(p) for j, f in enumerate(folds) if j != i for p in f]
        base = summarize(evaluate_pairs(held_out, base_scorer))
        for seed in args.seeds:
            results["base"].append({**base, "fold": i, "seed": seed})  # no training: same
            for arm in ("orig", "dv"):
                config = TrainConfig(
                    arm=arm,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    learning_rate=args.lr,
                    max_seq_length=args.max_seq_length,
                    seed=seed,
                )
                out = train(train_pairs, config, work / f"fold{i}-seed{seed}-{arm}", quiet=True)
                scorer = embedding_scorer(load_embedder(str(out)))
                summary = summarize(evaluate_pairs(held_out, scorer))
                results[arm].append({**summary, "fold": i, "seed": seed})
                shutil.rmtree(out)
            print(
                f"fold {i + 1}/{len(folds)} seed {seed} done, "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
    report = {
        "gold": str(args.gold.relative_to(ROOT) if args.gold.is_relative_to(ROOT) else args.gold),
        "pairs": len(pairs),
        "fold_sizes": [len(f) for f in folds],
        "settings": {k: v for k, v in vars(args).items() if k not in ("gold", "out")},
        "wall_s": round(time.perf_counter() - started, 1),
        "runs": results,
        "table": table(results),
        "dv_vs_orig": {m: paired(results, m) for m in ("dual_accuracy", "p_mrr")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report["table"])
    print("dv vs orig, same fold and seed:", json.dumps(report["dv_vs_orig"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
