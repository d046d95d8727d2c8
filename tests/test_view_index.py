"""The viewer's own index and its counts by chunks: the same answers as the rows read
directly and as `dvsynth stats`, also after a commit that changes only some rows, and
after dedup, which moves no `updated_at`."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import pytest

from dvsynth.runs.dirs import iter_runs
from dvsynth.runs.stats import StatsCollector, compute_stats, recorded_stages
from dvsynth.view import chunks
from dvsynth.view.counts import Counts
from dvsynth.view.queries import Catalog, Filter
from dvsynth.view.sources import Sources
from tests.viewing import TOKEN, make_run, viewing

FILTERS = [
    Filter(),
    Filter(outcome="rejected"),
    Filter(outcome="verified", q="query number 1"),
    Filter(q="NUMBER 2"),
    Filter(q="nu"),
    Filter(q='"x'),
    Filter(stage="judge"),
    Filter(stage="verified"),
    Filter(reason="judge"),
    Filter(reason="judge:view_a"),
    Filter(mode="reverse"),
    Filter(mode="bootstrap"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("index"))


def _answers(catalog: Catalog) -> list:
    out = []
    for where in FILTERS:
        listed = [(r.src, r.seed_id, r.stage, r.reasons, r.mode) for r in catalog.page(where, 0)]
        first = listed[len(listed) // 2][:2] if listed else (0, "s20")
        out.append((catalog.count(where), listed, catalog.neighbours(where, *first)))
    return [*out, catalog.stages()]


def _both(database) -> tuple[list, list]:
    """(answers read from the rows, answers read from the index)."""
    catalog = Catalog([database], index=True)
    try:
        direct = _answers(catalog)
        catalog.refresh_index()
        assert catalog.indexed()
        return direct, _answers(catalog)
    finally:
        catalog.close()


def test_the_index_answers_as_the_rows_do(run):
    direct, indexed = _both(run / "dvsynth.sqlite")
    assert direct == indexed
    assert any(count for count, _, _ in direct[:-1]) and direct[-1]


def test_a_refresh_reads_the_changes_a_dedup_made_without_updated_at(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    database = copy / "dvsynth.sqlite"
    catalog = Catalog([database], index=True)
    counts = Counts(Sources([copy]).items)
    try:
        catalog.refresh_index()
        counts.summarize()
        with sqlite3.connect(database) as db:  # as `RunStore.finish_dedup` writes
            db.execute(
                "UPDATE rows SET dedup = 'dedup:near:p1', outcome = 'rejected' "
                "WHERE seed_id = 's01'"
            )
        assert not catalog.indexed()
        catalog.refresh_index()
        assert catalog.count(Filter(reason="dedup:near")) == 1
        assert catalog.count(Filter(stage="dedup")) == 1
        summary = counts.summarize()
    finally:
        catalog.close()
        counts.close()
    stats = compute_stats([copy])
    assert summary["all"]["stats"]["reasons"] == stats["reasons"]
    assert summary["all"]["stats"]["verified"] == stats["verified"]
    assert stats["reasons"].get("dedup:near") == 1


def test_counts_by_chunks_add_up_to_stats(run, tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "BITS", 2)  # chunks of 4 rows: many to add up
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    counts = Counts(Sources([copy]).items)
    try:
        first = counts.summarize()["all"]["stats"]
        with sqlite3.connect(copy / "dvsynth.sqlite") as db:
            db.execute("DELETE FROM rows WHERE seed_id IN ('s02', 's17')")
        second = counts.summarize()["all"]["stats"]
    finally:
        counts.close()
    for got, rows in ((first, 30), (second, 28)):
        assert got["rows"] == rows
    expected = compute_stats([copy])
    for key in ("status", "reasons", "stages", "verified", "judge_agreement", "generator"):
        assert second[key] == expected[key], key
    assert second["instruction_words_kept"] == expected["instruction_words_kept"]


def test_merged_collectors_equal_one_pass(run):
    stages = recorded_stages([run])
    whole, halves = StatsCollector(stages), [StatsCollector(stages), StatsCollector(stages)]
    for i, row in enumerate(iter_runs([run])):
        whole.add(row)
        halves[i % 2].add(row)
    halves[0].merge(halves[1])
    assert halves[0].result([run]) == whole.result([run])


def test_the_first_overview_says_how_far_the_count_got_then_shows_it(run, monkeypatch):
    from dvsynth.view import server

    release = threading.Event()
    original = Counts.summarize

    def slow(self, stop=None):  # a run too large to count within the first wait
        release.wait(30)
        return original(self, stop)

    monkeypatch.setattr(Counts, "summarize", slow)
    monkeypatch.setattr(server, "FIRST_WAIT_S", 0.05)
    with viewing(run) as pages:
        [(status, first, _)] = pages.get(f"/{TOKEN}/")
        [(_, rows, _)] = pages.get(f"/{TOKEN}/rows")  # rows are browsed meanwhile
        release.set()
        pages_seen = [first]
        while 'id="counting"' in pages_seen[-1] and len(pages_seen) < 200:
            time.sleep(0.05)
            pages_seen.append(pages.get(f"/{TOKEN}/")[0][1])
    assert status == 200 and 'id="counting"' in first and 'http-equiv="refresh"' in first
    assert '<span id="total">30</span>' in rows
    final = pages_seen[-1]
    assert 'id="counting"' not in final and 'http-equiv="refresh"' not in final
    assert '<tr data-step="seeds (rows)"><td>seeds (rows)</td><td class="n">30</td>' in final
