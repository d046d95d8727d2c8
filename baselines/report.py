"""results.json's `summary` and results.md: the two halves of the paper's claim side by
side for one model, instruction sensitivity (FollowIR p-MRR, the other benchmarks' main
scores) and general retrieval (NanoBEIR nDCG@10, mteb tasks' main scores)."""

from __future__ import annotations

import statistics


def _mean(entries: list[dict], key: str) -> float | None:
    values = [e[key] for e in entries if "skipped" not in e]
    return round(statistics.fmean(values), 2) if values else None


def summary(report: dict) -> dict:
    """One headline number per benchmark: FollowIR's mean p-MRR over its subsets; the mean
    main score over a benchmark's tasks; NanoBEIR's mean nDCG@10; each --mteb-task's main
    score. None where nothing was scored (all skipped)."""
    instruction: dict = {}
    followir = report.get("followir")
    if followir:
        average = followir.get("average", {})
        instruction["followir"] = {
            "metric": "p-MRR",
            "score": average.get("p_mrr"),
            "tasks": average.get("subsets", 0),
        }
    for bench, tasks in report.get("benchmarks", {}).items():
        scored = [t for t in tasks.values() if "skipped" not in t]
        metrics = sorted({t["main_score_name"] for t in scored})
        instruction[bench] = {
            "metric": "/".join(metrics) or None,
            "score": _mean(list(tasks.values()), "main_score"),
            "tasks": len(scored),
        }
    general: dict = {}
    nano = report.get("general", {}).get("nano_beir")
    if nano is not None:
        general["nano_beir"] = {
            "metric": "nDCG@10",
            "score": nano.get("ndcg_at_10"),
            "tasks": len(nano.get("datasets", {})),
        }
    for name, task in report.get("general", {}).get("mteb", {}).items():
        general[name] = {
            "metric": task.get("main_score_name"),
            "score": task.get("main_score"),
            "tasks": 0 if "skipped" in task else 1,
        }
    return {"instruction": instruction, "general": general}


def _cell(entry: dict) -> str:
    return "skipped" if entry["score"] is None else f"{entry['score']}"


def summary_table(summary: dict) -> list[str]:
    lines = [
        "| instruction following | metric | score | general retrieval | metric | score |",
        "|---|---|---|---|---|---|",
    ]
    left = list(summary["instruction"].items())
    right = list(summary["general"].items())
    for i in range(max(len(left), len(right), 1)):
        row = []
        for side in (left, right):
            if i < len(side):
                name, entry = side[i]
                row += [f"{name} ({entry['tasks']})", entry["metric"] or "", _cell(entry)]
            else:
                row += ["", "", ""]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _followir_lines(report: dict) -> list[str]:
    followir = report["followir"]
    lines = ["## FollowIR (x100)", "", "| subset | metric | score | p-MRR |", "|---|---|---|---|"]
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
            + (f" (local copy {r['local_copy']})" if r.get("local_copy") else "")
            for r in followir.values()
            if "mteb_task" in r
        ]
    elif source.get("folder"):
        lines.append(f"\nlocal copy: {source['folder']} (scored here, mteb's metrics)")
    return [*lines, ""]


def _task_lines(title: str, tasks: dict) -> list[str]:
    lines = [f"## {title} (mteb, x100)", "", "| task | main score | value | dataset |"]
    lines.append("|---|---|---|---|")
    for name, t in tasks.items():
        if "skipped" in t:
            lines.append(f"| {name} | skipped: {t['skipped']} | | |")
            continue
        value = t["main_score"]
        if t.get("subsets"):
            value = f"{value} ({', '.join(f'{k} {v}' for k, v in t['subsets'].items())})"
        data = f"{t['dataset']}@{t['revision']}"
        lines.append(f"| {name} | {t['main_score_name']} | {value} | {data} |")
    return [*lines, ""]


def markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['model']}", ""]
    if report.get("summary") and (report["summary"]["instruction"] or report["summary"]["general"]):
        lines += ["## Both halves (x100)", "", *summary_table(report["summary"]), ""]
    if report.get("followir"):
        lines += _followir_lines(report)
    for bench, tasks in report.get("benchmarks", {}).items():
        lines += _task_lines(bench, tasks)
    general = report.get("general", {})
    nano = general.get("nano_beir")
    if nano is not None:
        lines += ["## NanoBEIR (sentence-transformers' NanoBEIREvaluator, x100)", ""]
        if "skipped" in nano:
            lines += [f"skipped: {nano['skipped']}", ""]
        else:
            lines += ["| dataset | nDCG@10 |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in nano["datasets"].items()]
            lines += [f"| mean | {nano['ndcg_at_10']} |", ""]
            where = nano.get("local_copy") or nano["dataset"]
            lines += [f"data: {where} (revision {nano.get('revision') or 'not recorded'})", ""]
    if general.get("mteb"):
        lines += _task_lines("General retrieval", general["mteb"])
    gold = report.get("gold")
    if gold:
        lines += [f"## Gold pairs ({gold['file']})", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in gold["summary"].items()]
        lines.append("")
    return "\n".join(lines)
