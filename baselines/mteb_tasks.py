"""Any mteb task, run by mteb itself, from the Hub or from a local copy.

The instruction-following benchmarks the field reports (FollowIR, InstructIR, IFIR,
mFollowIR) and any general retrieval task are mteb tasks; running them with
`mteb.evaluate` means the data, the join of query and instruction and the main score
are mteb's, so a number here is the leaderboard's number.

Offline, `--data-dir DIR` holds copies of the tasks' Hub datasets in mteb's layout at
DIR/<dataset id> (`hf download <id> --repo-type dataset --revision <pinned> --local-dir
DIR/<id>`). The task's dataset path is pointed at that folder for this run only; its
pinned revision is kept (mteb records it in its result file), and the copy's own
revision, when `hf download` left it in `.cache/huggingface/download/`, is checked
against the pin.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dvsynth.errors import UserError

MTEB_PIN = "mteb==2.26.24"
#: --benchmark -> mteb task names (the instruction-following benchmarks in mteb)
BENCHMARKS = {
    "followir": (
        "Robust04InstructionRetrieval",
        "News21InstructionRetrieval",
        "Core17InstructionRetrieval",
    ),
    "instructir": ("InstructIR",),
    "ifir": (
        "IFIRAila",
        "IFIRCds",
        "IFIRFiQA",
        "IFIRFire",
        "IFIRNFCorpus",
        "IFIRPm",
        "IFIRScifact",
    ),
    "mfollowir": ("mFollowIR", "mFollowIRCrossLingual"),
}


def benchmark_tasks(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """--benchmark values (with `all`) -> {benchmark: its task names}, in a stable order."""
    wanted = list(BENCHMARKS) if "all" in names else list(dict.fromkeys(names))
    return {name: BENCHMARKS[name] for name in wanted}


def skip(label: str, reason: str, hint: str = "pass --data-dir") -> str:
    print(f"{label} skipped: {reason}" + (f"; {hint}" if hint else ""), file=sys.stderr)
    return reason


def local_revision(folder: Path) -> str | None:
    """The commit `hf download --local-dir` recorded for the copy (first line of each
    `.cache/huggingface/download/*.metadata`), or None when the copy says nothing."""
    found = set()
    for meta in (folder / ".cache" / "huggingface" / "download").rglob("*.metadata"):
        lines = meta.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines and lines[0].strip():
            found.add(lines[0].strip())
    return found.pop() if len(found) == 1 else None


def same_revision(a: str, b: str) -> bool:
    """mteb pins some revisions by a short hash (IFIR: 7 characters)."""
    return a.startswith(b) or b.startswith(a)


def get_task(name: str, option: str = "--mteb-task"):
    import mteb

    try:
        return mteb.get_task(name)
    except KeyError:
        raise UserError(f"{option} {name}: not an mteb task (see mteb.get_tasks())") from None


def point_at_copy(task, data_dir: Path) -> dict | str:
    """Point the task at DIR/<dataset id> (this task object only); the local-copy facts
    for results.json, or the reason there is no usable copy."""
    dataset = task.metadata.dataset
    folder = data_dir / dataset["path"]
    if not folder.is_dir():
        return (
            f"no copy of {dataset['path']} at {folder} (hf download {dataset['path']} "
            f"--repo-type dataset --revision {dataset['revision']} --local-dir {folder})"
        )
    copy = local_revision(folder)
    if copy is not None and not same_revision(copy, dataset["revision"]):
        print(
            f"warning: {folder} is {dataset['path']}@{copy[:12]}, mteb pins "
            f"{dataset['revision'][:12]}: numbers are not the leaderboard's",
            file=sys.stderr,
        )
    task.metadata = task.metadata.model_copy(update={"dataset": {**dataset, "path": str(folder)}})
    return {"local_copy": str(folder), "local_revision": copy}


def load_task(
    name: str,
    data_dir: Path | None,
    label: str | None = None,
    option: str = "--mteb-task",
    hint: str = "pass --data-dir",
):
    """(task with its data loaded, facts) or (None, the reason it was skipped, said on
    stderr as `LABEL skipped: REASON; HINT`). Loaded before the model, so a skip costs
    no model load."""
    label = label or f"mteb task {name}"
    try:
        import mteb  # noqa: F401
    except ImportError:
        return None, skip(label, f"mteb is not installed (pip install {MTEB_PIN})", hint)
    task = get_task(name, option)
    dataset = dict(task.metadata.dataset)
    facts: dict = {"dataset": dataset["path"], "revision": dataset["revision"]}
    if data_dir is not None:
        pointed = point_at_copy(task, data_dir)
        if isinstance(pointed, str):
            return None, skip(label, pointed, "download it first")
        facts |= pointed
    try:
        task.load_data()
    except Exception as exc:  # offline, gated, renamed, a broken copy: say so and go on
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        where = facts.get("local_copy") or f"{dataset['path']}@{dataset['revision'][:7]}"
        verb = "unreadable" if data_dir is not None else "unreachable"
        return None, skip(label, f"{where} {verb} ({type(exc).__name__}: {first})", hint)
    return task, facts | {"label": label, "hint": hint}


def run(model, tasks: dict, out: Path, batch_size: int = 32) -> dict:
    """Run loaded tasks ({key: (task, facts)}) with `mteb.evaluate`; mteb's result files
    go under OUT/mteb/results/. Per key: the task's main score as mteb defines it (x100,
    rounded; `mteb_main_score` unrounded), per subset for multi-subset tasks, mteb's
    scores dict (`scores`), the dataset and its pinned revision, and mteb's result file.
    A task mteb fails on is `{"skipped": mteb's message}`."""
    if not tasks:
        return {}
    import mteb

    result = mteb.evaluate(
        model,
        [task for task, _ in tasks.values()],
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
    for key, (task, facts) in tasks.items():
        name = task.metadata.name
        facts = dict(facts)
        label, hint = facts.pop("label", f"mteb task {name}"), facts.pop("hint", "")
        if name not in by_task:
            first = (errors.get(name) or "no result").strip().splitlines()[0]
            report[key] = {"skipped": skip(label, f"mteb failed: {first[:160]}", hint)}
            continue
        task_result = by_task[name]
        entries = [s for split in task_result.scores.values() for s in split]
        report[key] = {
            "mteb_task": name,
            "main_score_name": task.metadata.main_score,
            "main_score": round(100 * task_result.get_score(), 2),
            "mteb_main_score": task_result.get_score(),
            **facts,
            "revision": task_result.dataset_revision,
            "result_file": result_file(out / "mteb", name),
        }
        if len(entries) > 1:
            report[key]["subsets"] = {
                s["hf_subset"]: round(100 * s["main_score"], 2) for s in entries
            }
        else:
            report[key]["scores"] = entries[0]  # callers take what they need, then drop it
    return report


def result_file(folder: Path, task_name: str) -> str:
    """The result file mteb just wrote (the newest of that name: OUT may hold older runs)."""
    found = sorted((folder / "results").rglob(f"{task_name}.json"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else ""


def mteb_version() -> str | None:
    try:
        import mteb
    except ImportError:
        return None
    return mteb.__version__
