"""Evaluate a retriever: FollowIR (Robust04 MAP@1000, News21 nDCG@5, Core17 MAP@1000,
p-MRR on each) and `dvsynth eval-retriever` on a gold set.

    python baselines/evaluate.py --model PATH_OR_NAME --out DIR [--followir-dir DIR]

Without --followir-dir the subsets come from the Hub (jhu-clsp/*-instructions); a subset
that cannot be fetched is reported as skipped. DIR gets results.json, results.md and
runs/<subset>.{og,changed}.trec.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.followir import (  # noqa: E402
    SUBSETS,
    FollowIRSubset,
    hub_folder,
    read_subset,
    rerank,
    score,
    write_trec_run,
)
from dvsynth.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


def load_subsets(subsets: Sequence[str], folder: Path | None) -> dict[str, FollowIRSubset | str]:
    """Each subset's data, or the reason it was skipped (Hub unreachable). Read before the
    model loads, so a bad folder fails fast."""
    loaded: dict[str, FollowIRSubset | str] = {}
    for name in subsets:
        if folder is not None:
            source = folder / name
        else:
            try:
                source = hub_folder(name)
            except Exception as exc:  # offline, gated, renamed: say so and go on
                reason = f"{SUBSETS[name][0]} unreachable ({type(exc).__name__})"
                print(f"FollowIR {name} skipped: {reason}; pass --followir-dir", file=sys.stderr)
                loaded[name] = reason
                continue
        loaded[name] = read_subset(source, name)
    return loaded


def followir_results(
    model, loaded: dict[str, FollowIRSubset | str], out: Path, batch_size: int = 32
) -> dict:
    results: dict = {}
    for name, subset in loaded.items():
        if isinstance(subset, str):
            results[name] = {"skipped": subset}
            continue
        og_runs, changed_runs = rerank(subset, model, batch_size)
        write_trec_run(og_runs, out / "runs" / f"{name}.og.trec", "og")
        write_trec_run(changed_runs, out / "runs" / f"{name}.changed.trec", "changed")
        results[name] = score(subset, og_runs, changed_runs)
    scored = [r for r in results.values() if "skipped" not in r]
    if scored:
        results["average"] = {
            "p_mrr": round(statistics.fmean(r["p_mrr"] for r in scored), 2),
            "score": round(statistics.fmean(r["score"] for r in scored), 2),
            "subsets": len(scored),
        }
    return results


def markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['model']}", ""]
    followir = report.get("followir", {})
    if followir:
        lines += [
            "## FollowIR (x100)",
            "",
            "| subset | metric | score | p-MRR |",
            "|---|---|---|---|",
        ]
        for name, r in followir.items():
            if "skipped" in r:
                lines.append(f"| {name} | skipped: {r['skipped']} | | |")
            elif name == "average":
                lines.append(f"| average ({r['subsets']}) | | {r['score']} | {r['p_mrr']} |")
            else:
                lines.append(f"| {name} | {r['metric']} | {r['score']} | {r['p_mrr']} |")
        lines.append("")
    gold = report.get("gold")
    if gold:
        lines += [f"## Gold pairs ({gold['file']})", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in gold["summary"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model name or path (default: bundled MiniLM)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--followir-dir", type=Path, help="local FollowIR folder (offline)")
    parser.add_argument("--subsets", nargs="+", choices=list(SUBSETS), default=list(SUBSETS))
    parser.add_argument("--no-followir", action="store_true")
    parser.add_argument("--gold", type=Path, help="gold JSONL (default: msmarco gold set)")
    parser.add_argument("--no-gold", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="for models with their own code"
    )
    args = parser.parse_args(argv)
    from dvsynth.evaluate.embed import load_embedder
    from dvsynth.evaluate.eval_retriever import embedding_scorer, evaluate_pairs, summarize
    from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold

    try:
        loaded = {} if args.no_followir else load_subsets(args.subsets, args.followir_dir)
        gold = None
        if not args.no_gold:
            gold = args.gold or (MSMARCO_GOLD if MSMARCO_GOLD.exists() else BUNDLED_GOLD)
            pairs = list(read_gold(gold))
        if gold is None and all(isinstance(v, str) for v in loaded.values()):
            raise UserError("nothing to evaluate: no FollowIR subset could be read, and --no-gold")
        model = load_embedder(args.model, args.trust_remote_code)
        report: dict = {"model": args.model or "all-MiniLM-L6-v2 (bundled)"}
        if loaded:
            report["followir"] = followir_results(model, loaded, args.out, args.batch_size)
        if gold is not None:
            summary = summarize(evaluate_pairs(pairs, embedding_scorer(model, args.batch_size)))
            report["gold"] = {"file": str(gold), "summary": summary}
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
