"""The Overview's counts kept by chunks of rows (`view.chunks`): each chunk's collector
is kept with its mark, so after a commit to the run only the chunks it changed are
counted again (parsing a row is what costs: about 0.1 ms each), and the figures are the
chunks' collectors added up (`StatsCollector.merge`), equal to one pass of `stats`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

from dvsynth.records import DualView
from dvsynth.runs.stats import StatsCollector, recorded_stages
from dvsynth.runs.store import final_row
from dvsynth.view import chunks
from dvsynth.view.overview import Stopped, audits, collect_once, export_row, figures
from dvsynth.view.queries import attach_uri
from dvsynth.view.sources import Source


class Counts:
    """Each source's chunks, counted once and again only when their rows change."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self._dbs = [
            sqlite3.connect(attach_uri(s.database), uri=True, check_same_thread=False)
            for s in sources
        ]
        self._chunks: list[dict[int, tuple[bytes, StatsCollector]]] = [{} for _ in sources]
        self._stages: list[dict[str, str] | None] = [None for _ in sources]
        self.progress = (0, 0)  # (chunks counted, chunks to count) of the current pass

    def close(self) -> None:
        for db in self._dbs:
            db.close()

    def summarize(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Stats over all sources, and per source when there are several; `stop`, once
        set, abandons the pass (Stopped), so Ctrl-C never waits for it."""
        stop = stop or threading.Event()
        if len(self.sources) == 1:
            source = self.sources[0]
            total = figures(self._count(0, stop), [source.path] if source.kind == "run" else [])
        else:  # a pair in two runs counts once (`iter_runs`): one pass over them all
            total = collect_once(self.sources, stop)
        summary = {"all": total, "per_source": []}
        if len(self.sources) > 1:
            summary["per_source"] = [
                {
                    "source": s.index,
                    "label": s.label,
                    **figures(self._count(i, stop), [s.path] if s.kind == "run" else []),
                }
                for i, s in enumerate(self.sources)
            ]
        summary["audits"] = audits(self.sources)
        return summary

    def _count(self, i: int, stop: threading.Event) -> StatsCollector:
        source, db = self.sources[i], self._dbs[i]
        stages = recorded_stages([source.path]) if source.kind == "run" else None
        if stages != self._stages[i]:
            self._chunks[i], self._stages[i] = {}, stages
        kept = self._chunks[i]
        db.execute("BEGIN")  # the marks and the rows read from one snapshot
        try:
            found = chunks.marks(db, "main")
            current = db.execute(f"SELECT {chunks.CURRENT.format(schema='main')}").fetchone()[0]
            todo = list(chunks.changes({c: m for c, (m, _) in kept.items()}, found))
            for done, chunk in enumerate(todo):
                self.progress = (done, len(todo))
                if chunk not in found:
                    del kept[chunk]
                    continue
                collector = StatsCollector(stages)
                for row in _chunk_rows(db, source.kind, chunk, current):
                    if stop.is_set():
                        raise Stopped
                    collector.add(row)
                kept[chunk] = (found[chunk], collector)
        finally:
            db.execute("COMMIT")
        total = StatsCollector(stages)
        for chunk in sorted(kept):
            total.merge(kept[chunk][1])
        return total


def _chunk_rows(
    db: sqlite3.Connection, kind: str, chunk: int, current: str | None
) -> Iterator[DualView]:
    low, high = chunks.bounds(chunk)
    where = "WHERE rowid BETWEEN ? AND ? ORDER BY ordinal, seed_id"
    if kind == "export":
        for record, outcome in db.execute(f"SELECT record, outcome FROM rows {where}", (low, high)):
            yield export_row(record, outcome)
        return
    found = db.execute(
        f"SELECT record, validation, checked, dedup, outcome FROM rows {where}", (low, high)
    )
    for row in found:
        yield final_row(*row, current)


def summarize(sources: list[Source], stop: threading.Event | None = None) -> dict[str, Any]:
    """The figures of `sources` counted once (`Counts` keeps them for the next change)."""
    counts = Counts(sources)
    try:
        return counts.summarize(stop)
    finally:
        counts.close()
