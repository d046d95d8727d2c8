"""FollowIR through mteb's own tasks and evaluation, so that a number from evaluate.py
is the MTEB leaderboard's number.

The leaderboard's FollowIR columns come from mteb's Robust04/News21/Core17
InstructionRetrieval tasks (main score p-MRR) on `mteb/*InstructionRetrieval` at the
dataset revisions pinned in mteb. Running those tasks with `mteb.evaluate` instead of
our own reader means the data, the join of query and instruction and the metrics are
mteb's; results.json records mteb's version and each task's dataset revision, so a
change in mteb's data shows up as a changed revision.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

#: subset -> mteb task name
TASKS = {
    "robust04": "Robust04InstructionRetrieval",
    "news21": "News21InstructionRetrieval",
    "core17": "Core17InstructionRetrieval",
}
#: subset -> the og-run metric the FollowIR paper reports (key in mteb's "og" scores)
OG_METRIC = {"robust04": "map_at_1000", "news21": "ndcg_at_5", "core17": "map_at_1000"}
MTEB_PIN = "mteb==2.26.24"


def _skip(name: str, reason: str) -> str:
    print(f"FollowIR {name} skipped: {reason}; pass --followir-dir", file=sys.stderr)
    return reason


def load_tasks(subsets: Sequence[str]) -> dict:
    """Each subset's mteb task with its data loaded, or the reason it was skipped (mteb
    missing, Hub unreachable). Loaded before the model, so a skip costs no model load."""
    try:
        import mteb
    except ImportError:
        return {n: _skip(n, f"mteb is not installed (pip install {MTEB_PIN})") for n in subsets}
    loaded: dict = {}
    for name in subsets:
        task = mteb.get_task(TASKS[name])
        dataset = task.metadata.dataset
        try:
            task.load_data()
        except Exception as exc:  # offline, gated, renamed: say so and go on
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            where = f"{dataset['path']}@{dataset['revision'][:7]}"
            loaded[name] = _skip(name, f"{where} unreachable ({type(exc).__name__}: {first})")
            continue
        loaded[name] = task
    return loaded


def evaluate_tasks(model, tasks: dict, out: Path, batch_size: int = 32) -> dict:
    """Run the loaded tasks with `mteb.evaluate`; mteb's own result files go under
    OUT/mteb/results/<model>/<revision>/<task>.json. Per subset: mteb's main score
    (p-MRR) and the og-run metric, x100 and rounded as the leaderboard shows them, with
    the unrounded values, the dataset and its revision. A task mteb fails on (its
    qrel_diff, read only when scoring, unreachable) is skipped with mteb's message."""
    if not tasks:
        return {}
    import mteb

    result = mteb.evaluate(
        model,
        list(tasks.values()),
        cache=mteb.ResultCache(cache_path=out / "mteb"),
        overwrite_strategy="always",
        raise_error=False,
        encode_kwargs={"batch_size": batch_size},
        show_progress_bar=False,
        co2_tracker=False,
    )
    by_task = {r.task_name: r for r in result.task_results}
    errors = {e.task_name: e.exception for e in result.exceptions}
    report: dict = {}
    for name, task in tasks.items():
        if task.metadata.name not in by_task:
            first = (errors.get(task.metadata.name) or "no result").strip().splitlines()[0]
            report[name] = {"skipped": _skip(name, f"mteb failed: {first[:160]}")}
            continue
        task_result = by_task[task.metadata.name]
        (scores,) = task_result.scores["test"]
        metric = OG_METRIC[name]
        report[name] = {
            "metric": metric,
            "score": round(100 * scores["og"][metric], 2),
            "p_mrr": round(100 * scores["main_score"], 2),
            "mteb_task": task.metadata.name,
            "mteb_main_score": scores["main_score"],
            "mteb_og_score": scores["og"][metric],
            "dataset": task.metadata.dataset["path"],
            "revision": task_result.dataset_revision,
            "result_file": _result_file(out / "mteb", task.metadata.name),
        }
    return report


def _result_file(folder: Path, task_name: str) -> str:
    """The result file mteb just wrote (the newest of that name: OUT may hold older runs)."""
    found = sorted((folder / "results").rglob(f"{task_name}.json"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else ""


def mteb_version() -> str | None:
    try:
        import mteb
    except ImportError:
        return None
    return mteb.__version__
