"""Evaluate a retriever: FollowIR (Robust04 MAP@1000, News21 nDCG@5, Core17 MAP@1000,
p-MRR on each) and `dvsynth eval-retriever` on a gold set.

    python baselines/evaluate.py --model PATH_OR_NAME --out DIR [--followir-dir DIR]

Without --followir-dir FollowIR is mteb's own tasks (Robust04/News21/Core17
InstructionRetrieval) run by `mteb.evaluate`, the MTEB leaderboard's numbers; mteb's
result files go to DIR/mteb/ and results.json records mteb's version and each dataset
revision. A task whose data cannot be fetched is reported as skipped. With
--followir-dir (no Hub) a local copy is read in mteb's or jhu-clsp's layout and scored
here (same metrics as mteb), and the runs go to DIR/runs/<subset>.{og,changed}.trec.
DIR gets results.json and results.md.
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

from baselines import mteb_followir  # noqa: E402
from baselines.followir import (  # noqa: E402
    SUBSETS,
    FollowIRSubset,
    read_subset,
    rerank,
    score,
    write_trec_run,
)
from dvsynth.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


def load_subsets(subsets: Sequence[str], folder: Path | None) -> dict:
    """Each subset's data (a local folder read here, or an mteb task with its data loaded),
    or the reason it was skipped. Read before the model loads, so a bad folder fails fast."""
    if folder is None:
        return mteb_followir.load_tasks(subsets)
    return {name: read_subset(folder / name, name) for name in subsets}


def followir_results(model, loaded: dict, out: Path, batch_size: int = 32) -> dict:
    results: dict = {name: {"skipped": v} for name, v in loaded.items() if isinstance(v, str)}
    tasks = {n: v for n, v in loaded.items() if not isinstance(v, str | FollowIRSubset)}
    results |= mteb_followir.evaluate_tasks(model, tasks, out, batch_size)
    for name, subset in loaded.items():
        if not isinstance(subset, FollowIRSubset):
            continue
        og_runs, changed_runs = rerank(subset, model, batch_size)
        write_trec_run(og_runs, out / "runs" / f"{name}.og.trec", "og")
        write_trec_run(changed_runs, out / "runs" / f"{name}.changed.trec", "changed")
        results[name] = score(subset, og_runs, changed_runs)
    results = {name: results[name] for name in loaded}  # in the order asked
    scored = [r for r in results.values() if "skipped" not in r]
    if scored:
        results["average"] = {
            "p_mrr": round(statistics.fmean(r["p_mrr"] for r in scored), 2),
            "score": round(statistics.fmean(r["score"] for r in scored), 2),
            "subsets": len(scored),
        }
    return results


def followir_source(folder: Path | None) -> dict:
    """Where the FollowIR numbers come from: mteb's tasks (its version here; each
    subset's entry names its dataset revision) or a local folder scored here."""
    if folder is not None:
        return {"evaluation": "dvsynth (mteb's metrics)", "folder": str(folder)}
    return {"evaluation": "mteb", "mteb_version": mteb_followir.mteb_version()}


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
        source = report.get("followir_source", {})
        if source.get("mteb_version"):
            lines.append(f"\nmteb {source['mteb_version']}, leaderboard tasks; datasets:")
            lines += [
                f"- {r['mteb_task']}: {r['dataset']}@{r['revision']}"
                for r in followir.values()
                if "mteb_task" in r
            ]
        elif source.get("folder"):
            lines.append(f"\nlocal copy: {source['folder']} (scored here, mteb's metrics)")
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
            report["followir_source"] = followir_source(args.followir_dir)
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
