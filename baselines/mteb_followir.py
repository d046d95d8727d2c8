"""FollowIR through mteb's own tasks and evaluation, so that a number from evaluate.py
is the MTEB leaderboard's number.

The leaderboard's FollowIR columns come from mteb's Robust04/News21/Core17
InstructionRetrieval tasks (main score p-MRR) on `mteb/*InstructionRetrieval` at the
dataset revisions pinned in mteb. Running those tasks with `mteb.evaluate` instead of
our own reader means the data, the join of query and instruction and the metrics are
mteb's; results.json records mteb's version and each task's dataset revision, so a
change in mteb's data shows up as a changed revision. With `--data-dir` the same tasks
read local copies (`baselines/mteb_tasks.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from baselines import mteb_tasks
from baselines.mteb_tasks import MTEB_PIN, mteb_version  # noqa: F401  (re-exported)

#: subset -> mteb task name
TASKS = dict(zip(("robust04", "news21", "core17"), mteb_tasks.BENCHMARKS["followir"], strict=True))
#: subset -> the og-run metric the FollowIR paper reports (key in mteb's "og" scores)
OG_METRIC = {"robust04": "map_at_1000", "news21": "ndcg_at_5", "core17": "map_at_1000"}


def load_tasks(subsets: Sequence[str], data_dir: Path | None = None) -> dict:
    """Each subset's (mteb task with its data loaded, facts), or the reason it was
    skipped (mteb missing, Hub unreachable, no local copy)."""
    loaded: dict = {}
    for name in subsets:
        task, facts = mteb_tasks.load_task(
            TASKS[name], data_dir, f"FollowIR {name}", hint="pass --data-dir or --followir-dir"
        )
        loaded[name] = facts if task is None else (task, facts)
    return loaded


def evaluate_tasks(model, tasks: dict, out: Path, batch_size: int = 32) -> dict:
    """Per subset: mteb's main score (p-MRR) and the og-run metric, x100 and rounded as
    the leaderboard shows them, with the unrounded values, the dataset, its revision and
    mteb's result file. A task mteb fails on is skipped with mteb's message."""
    report = {}
    for name, got in mteb_tasks.run(model, tasks, out, batch_size).items():
        if "skipped" in got:
            report[name] = got
            continue
        scores, metric = got.pop("scores"), OG_METRIC[name]
        report[name] = {
            "metric": metric,
            "score": round(100 * scores["og"][metric], 2),
            "p_mrr": got["main_score"],
            "mteb_task": got["mteb_task"],
            "mteb_main_score": got["mteb_main_score"],
            "mteb_og_score": scores["og"][metric],
            **{k: got[k] for k in ("dataset", "revision", "result_file")},
            **{k: got[k] for k in ("local_copy", "local_revision") if k in got},
        }
    return report
