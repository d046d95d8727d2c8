"""The Overview page's figures: the counts of `dvsynth stats` (the same collector, so the
funnel and the reasons equal `stats --json`), the instruction-length histograms, and the
chart geometry the templates draw as SVG.

Counting parses every row, so it is kept by chunks (`view.counts`) and runs off the
event loop; until it is done the page shows the previous figures, said to be old.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dvsynth.records import DualView
from dvsynth.runs.dirs import iter_runs
from dvsynth.runs.stats import StatsCollector, recorded_stages
from dvsynth.view.queries import attach_uri
from dvsynth.view.sources import Source

BINS = 20


class Stopped(Exception):
    """The server stops: a summary being computed is abandoned."""


def audits(sources: list[Source]) -> list[dict[str, Any]]:
    """The audit report (`dvsynth audit --report`) of each run that has one."""
    from dvsynth.view.audit import report

    return [
        {"source": s.index, "label": s.label, **report(s.path)}
        for s in sources
        if s.kind == "run" and _has_audit(s.database)
    ]


def _has_audit(database: Path) -> bool:
    from dvsynth.view.audit import has_audit

    db = sqlite3.connect(attach_uri(database), uri=True)
    try:
        return has_audit(db)
    finally:
        db.close()


def collect_once(sources: list[Source], stop: threading.Event) -> dict[str, Any]:
    """The figures of `sources` in one pass (a pair in two runs counts once)."""
    runs = [s.path for s in sources if s.kind == "run"]
    collector = StatsCollector(recorded_stages(runs) if runs else None)
    streams = [iter_runs(runs)] if runs else []
    streams += [_export_rows(s.database) for s in sources if s.kind == "export"]
    for stream in streams:
        for row in stream:
            if stop.is_set():
                stream.close()
                raise Stopped
            collector.add(row)
    return figures(collector, runs)


def figures(collector: StatsCollector, runs: list[Path]) -> dict[str, Any]:
    """What the page shows of a collector: `stats`, the funnel, the histograms."""
    stats = collector.result(runs)
    return {
        "stats": stats,
        "funnel": funnel(stats),
        "histograms": {name: histogram(v) for name, v in collector.lengths.items()},
    }


def _export_rows(database: Path) -> Iterator[DualView]:
    db = sqlite3.connect(attach_uri(database), uri=True)
    try:
        for record, outcome in db.execute("SELECT record, outcome FROM rows ORDER BY ordinal"):
            yield export_row(record, outcome)
    finally:
        db.close()


def export_row(record: str, outcome: str) -> DualView:
    """A row of an export folder's database (`view.sources`) as a DualView."""
    data = json.loads(record)
    for doc in (data["doc_a"], data["doc_b"]):
        doc["text"] = doc["text"] or "-"  # a rejected row's text is not exported
    row = DualView.model_validate(data)
    row.verified = outcome == "verified"
    return row


def funnel(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars: rows read, each stage's passed count in its order, then verified; each with
    its share of the rows and its width in the chart (0..1)."""
    rows = stats["rows"]
    bars = [{"label": "seeds (rows)", "count": rows}]
    for name, stage in stats["stages"].items():
        if stage["entered"]:
            label = "generated" if name == "generate" else name
            bars.append({"label": label, "count": stage["passed"], "entered": stage["entered"]})
    bars.append({"label": "verified", "count": stats["verified"]})
    for bar in bars:
        bar["share"] = bar["count"] / rows if rows else 0.0
    return bars


def histogram(values: list[int]) -> dict[str, Any]:
    """Counts of instruction lengths in at most BINS bins of whole words."""
    if not values:
        return {"bins": [], "max": 0, "count": 0}
    low, high = min(values), max(values)
    width = max(1, math.ceil((high - low + 1) / BINS))
    counts = [0] * ((high - low) // width + 1)
    for value in values:
        counts[(value - low) // width] += 1
    peak = max(counts)
    bins = [
        {
            "low": low + i * width,
            "high": low + (i + 1) * width - 1,
            "count": n,
            "height": n / peak if peak else 0.0,
        }
        for i, n in enumerate(counts)
    ]
    return {"bins": bins, "max": peak, "count": len(values)}


def spend_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Tokens and cost per stage and engine: online generator and judge (the judge's
    usage includes its instruction check), then each stage's batch answers."""
    from dvsynth.runs.stats import format_cost

    out = []
    for stage in ("generator", "judge"):
        spent = stats[stage]
        out.append(
            {
                "stage": stage,
                "engine": "online",
                "prompt_tokens": spent["prompt_tokens"],
                "completion_tokens": spent["completion_tokens"],
                "cost": format_cost(spent["cost_usd"], spent["unpriced_rows"]),
            }
        )
    for stage, spent in (stats.get("batch") or {}).items():
        out.append(
            {
                "stage": stage,
                "engine": "batch",
                "prompt_tokens": spent["prompt_tokens"],
                "completion_tokens": spent["completion_tokens"],
                "cost": format_cost(spent["cost_usd"], spent["unpriced"]),
            }
        )
    return out
