"""Evaluate a retriever on both halves of the paper's claim: instruction sensitivity
(FollowIR p-MRR and the other instruction-following benchmarks in mteb) and general
retrieval (NanoBEIR nDCG@10, optionally full mteb retrieval tasks), plus `dvsynth
eval-retriever` on a gold set.

    python baselines/evaluate.py --model PATH_OR_NAME --out DIR
        [--benchmark followir|instructir|ifir|mfollowir|all ...] [--general nano-beir|none]
        [--mteb-task NAME ...] [--data-dir COPIES] [--followir-dir DIR]

Benchmarks and --mteb-task run as mteb's own tasks (`mteb.evaluate`: the leaderboard's
main score at the dataset revision mteb pins); NanoBEIR runs through
sentence-transformers' own NanoBEIREvaluator. With --data-dir they read local copies,
DIR/<Hub dataset id> as `hf download --local-dir` writes them. mteb's result files go to
OUT/mteb/. A benchmark whose data cannot be had is reported as skipped, one line each.
--followir-dir (no Hub) reads FollowIR in mteb's or jhu-clsp's layout and scores it
here with mteb's metrics; its runs go to OUT/runs/<subset>.{og,changed}.trec.
OUT gets results.json and results.md (both halves side by side in `summary`).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import mteb_followir, mteb_tasks, nanobeir  # noqa: E402
from baselines.cli import Parser  # noqa: E402
from baselines.followir import (  # noqa: E402
    SUBSETS,
    FollowIRSubset,
    read_subset,
    rerank,
    score,
    write_trec_run,
)
from baselines.report import markdown  # noqa: E402
from baselines.report import summary as summary_of  # noqa: E402
from dvsynth.errors import UserError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


def load_subsets(subsets: Sequence[str], folder: Path | None, data_dir: Path | None = None) -> dict:
    """Each subset's data (a local folder read here, or an mteb task with its data loaded),
    or the reason it was skipped. Read before the model loads, so a bad folder fails fast."""
    if folder is None:
        return mteb_followir.load_tasks(subsets, data_dir)
    return {name: read_subset(folder / name, name) for name in subsets}


def followir_results(model, loaded: dict, out: Path, batch_size: int = 32) -> dict:
    results: dict = {name: {"skipped": v} for name, v in loaded.items() if isinstance(v, str)}
    tasks = {n: v for n, v in loaded.items() if isinstance(v, tuple)}
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


def followir_source(folder: Path | None, data_dir: Path | None = None) -> dict:
    """Where the FollowIR numbers come from: mteb's tasks (its version here; each
    subset's entry names its dataset revision) or a local folder scored here."""
    if folder is not None:
        return {"evaluation": "dvsynth (mteb's metrics)", "folder": str(folder)}
    source = {"evaluation": "mteb", "mteb_version": mteb_tasks.mteb_version()}
    return source | ({"data_dir": str(data_dir)} if data_dir is not None else {})


def load_benchmarks(names: Sequence[str], data_dir: Path | None) -> dict:
    """{benchmark: {task name: (task, facts) or the skip reason}} for the benchmarks
    other than FollowIR (which keeps its own subsets and offline reader)."""
    loaded: dict = {}
    for bench, task_names in mteb_tasks.benchmark_tasks(names).items():
        if bench == "followir":
            continue
        loaded[bench] = {}
        for name in task_names:
            task, facts = mteb_tasks.load_task(name, data_dir, f"{bench} {name}", "--benchmark")
            loaded[bench][name] = facts if task is None else (task, facts)
    return loaded


def load_mteb_tasks(names: Sequence[str], data_dir: Path | None) -> dict:
    loaded = {}
    for name in dict.fromkeys(names):
        task, facts = mteb_tasks.load_task(name, data_dir)
        loaded[name] = facts if task is None else (task, facts)
    return loaded


def run_loaded(model, loaded: dict, out: Path, batch_size: int) -> dict:
    """Score the loaded ones with mteb; a skip stays `{"skipped": reason}`."""
    tasks = {k: v for k, v in loaded.items() if isinstance(v, tuple)}
    done = mteb_tasks.run(model, tasks, out, batch_size)
    for entry in done.values():
        entry.pop("scores", None)
    return {k: done[k] if k in done else {"skipped": v} for k, v in loaded.items()}


def parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model name or path (default: bundled MiniLM)")
    p.add_argument("--out", type=Path, help="folder for results.json, results.md, mteb/")
    p.add_argument(
        "--benchmark",
        action="append",
        choices=[*mteb_tasks.BENCHMARKS, "all"],
        help="instruction-following benchmark, repeatable (default: followir)",
    )
    p.add_argument(
        "--general",
        choices=["nano-beir", "none"],
        default="nano-beir",
        help="general retrieval suite (default: nano-beir)",
    )
    p.add_argument("--nanobeir-datasets", nargs="+", help="NanoBEIR datasets (default: all 13)")
    p.add_argument(
        "--mteb-task", action="append", default=[], help="an mteb retrieval task, repeatable"
    )
    p.add_argument("--data-dir", type=Path, help="local copies: DIR/<Hub dataset id> (offline)")
    p.add_argument("--followir-dir", type=Path, help="local FollowIR folder, scored here")
    p.add_argument(
        "--print-downloads",
        type=Path,
        metavar="DIR",
        help="print the `hf download` lines that fill DIR for --data-dir, and exit",
    )
    p.add_argument("--subsets", nargs="+", choices=list(SUBSETS), default=list(SUBSETS))
    p.add_argument("--no-followir", action="store_true", help="leave FollowIR out")
    p.add_argument("--gold", type=Path, help="gold JSONL (default: msmarco gold set)")
    p.add_argument("--no-gold", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--trust-remote-code", action="store_true", help="for models with their own code"
    )
    return p


def _scored(loaded) -> bool:
    if isinstance(loaded, dict):
        return any(_scored(v) for v in loaded.values())
    return not isinstance(loaded, str)


def evaluate(args) -> dict:
    """Load every data source first (bad input fails before the model loads), then the
    model, then score; the report for results.json."""
    from dvsynth.evaluate.embed import load_embedder
    from dvsynth.evaluate.eval_retriever import embedding_scorer, evaluate_pairs, summarize
    from dvsynth.evaluate.gold import BUNDLED_GOLD, read_gold

    if args.data_dir is not None and not args.data_dir.is_dir():
        raise UserError(f"--data-dir: {args.data_dir} is not a folder")
    if args.batch_size < 1:
        raise UserError("--batch-size: at least 1")
    benchmarks = args.benchmark or ["followir"]
    with_followir = not args.no_followir and ("followir" in benchmarks or "all" in benchmarks)
    loaded = load_subsets(args.subsets, args.followir_dir, args.data_dir) if with_followir else {}
    others = load_benchmarks(benchmarks, args.data_dir)
    general = load_mteb_tasks(args.mteb_task, args.data_dir)
    nano = None
    if args.general == "nano-beir":
        nano = nanobeir.load(args.nanobeir_datasets, args.data_dir, args.batch_size)
    gold = None
    if not args.no_gold:
        gold = args.gold or (MSMARCO_GOLD if MSMARCO_GOLD.exists() else BUNDLED_GOLD)
        pairs = list(read_gold(gold))
    if gold is None and not any(
        (_scored(loaded), _scored(others), _scored(general), nano is not None and nano[0])
    ):
        raise UserError("nothing to evaluate: no benchmark could be read, and --no-gold")
    model = load_embedder(args.model, args.trust_remote_code)
    report: dict = {"model": args.model or "all-MiniLM-L6-v2 (bundled)"}
    if loaded:
        report["followir"] = followir_results(model, loaded, args.out, args.batch_size)
        report["followir_source"] = followir_source(args.followir_dir, args.data_dir)
    if others:
        report["benchmarks"] = {
            bench: run_loaded(model, tasks, args.out, args.batch_size)
            for bench, tasks in others.items()
        }
    if nano is not None or general:
        report["general"] = {}
    if nano is not None:
        evaluator, facts = nano
        report["general"]["nano_beir"] = (
            {"skipped": facts} if evaluator is None else nanobeir.evaluate(model, evaluator, facts)
        )
    if general:
        report["general"]["mteb"] = run_loaded(model, general, args.out, args.batch_size)
    if gold is not None:
        summary = summarize(evaluate_pairs(pairs, embedding_scorer(model, args.batch_size)))
        report["gold"] = {"file": str(gold), "summary": summary}
    if any(k in report for k in ("followir", "benchmarks", "general")):
        report["mteb_version"] = mteb_tasks.mteb_version()
        report["summary"] = summary_of(report)
    return report


def write_report(report: dict, out: Path) -> None:
    """results.json then results.md, each written whole (a temporary file renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps(report, indent=2) + "\n"),
        ("results.md", markdown(report)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def downloads(args) -> list[str]:
    """`hf download` lines for every dataset this command would read, into DIR/<id>."""
    ids: dict[str, str | None] = {}
    names = [
        n
        for tasks in mteb_tasks.benchmark_tasks(args.benchmark or ["followir"]).values()
        for n in tasks
    ]
    for name in [*names, *args.mteb_task]:
        dataset = mteb_tasks.get_task(name).metadata.dataset
        ids[dataset["path"]] = dataset["revision"]
    if args.general == "nano-beir":
        ids[nanobeir.DATASET_ID] = None
    folder = args.print_downloads
    return [
        f"hf download {i} --repo-type dataset"
        + (f" --revision {rev}" if rev else "")
        + f" --local-dir {folder / i}"
        for i, rev in ids.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.out is None and args.print_downloads is None:
        p.error("the following arguments are required: --out")
    if args.print_downloads is not None:
        try:
            print("\n".join(downloads(args)))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        report = evaluate(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_report(report, args.out)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
