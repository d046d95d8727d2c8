"""A row is its seed id: not its position in the file, and not blind to the file changing.

Resuming finds a seed's row by its id alone, so fixing a bad line (which shifts the
position of every good row after it) retries what failed instead of calling those rows
duplicates; a seed file changed since the run began is refused unless the user says so.
"""

from __future__ import annotations

import json
import os
import sqlite3

from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, read_rows


def _rows(n: int, text: str = "text") -> list[dict]:
    return [
        {
            "id": f"s{i:02d}",
            "query": f"query number {i} about rivers",
            "positive": f"positive {text} {i}",
            "negative": f"negative {text} {i}",
        }
        for i in range(n)
    ]


def _write(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _table(run, sql: str) -> list[tuple]:
    with sqlite3.connect(run / "dvsynth.sqlite") as db:
        return db.execute(sql).fetchall()


def test_fixing_a_bad_line_retries_the_failed_rows_not_duplicates(run_cli, tmp_path):
    lines = [json.dumps(row) for row in _rows(20)]
    fixed = lines[2]
    lines[2] = fixed[:-8]  # line 3: cut short, invalid JSON
    seeds, run = tmp_path / "s.jsonl", tmp_path / "run"
    _write(seeds, lines)
    # 40% of the queries fail once with HTTP 500; no retries: those rows fail this time.
    with FakeLLMServer(faults={"500": 0.4}, fault_attempts=1) as server:
        args = generate_args(server, seeds, run, "--max-retries", "0")
        first = run_cli(*args)
        assert first.code == 0, first.err
        failed = [r["seed_id"] for r in read_rows(run) if r["status"] == "failed"]
        assert failed and len(read_rows(run)) == 19
        assert _table(run, "SELECT location FROM seed_errors") == [(f"{seeds}:3",)]

        lines[2] = fixed  # fix line 3 as the message asks
        _write(seeds, lines)
        second = run_cli(*args, "--resume-changed")
    assert second.code == 0, second.err
    assert "reuse an id" not in second.err
    status = {r["seed_id"]: r["status"] for r in read_rows(run)}
    assert len(status) == 20 and all(status[seed_id] == "kept" for seed_id in failed)
    # What was reported about line 3 went with the fix; no duplicate was recorded.
    assert _table(run, "SELECT location FROM seed_errors") == []
    assert _table(run, "SELECT * FROM duplicates") == []


def test_a_duplicate_id_is_told_by_the_first_location_that_used_it(run_cli, fake_server, tmp_path):
    rows = _rows(4)
    lines = [json.dumps(r) for r in [*rows[:3], {**rows[1], "query": "another"}, rows[3]]]
    seeds, run = tmp_path / "s.jsonl", tmp_path / "run"
    _write(seeds, lines)
    args = generate_args(fake_server, seeds, run)
    for attempt in range(2):  # the same on a fresh run and on a resumed one
        result = run_cli(*args)
        assert result.code == 0, result.err
        assert "1 seed rows reuse an id an earlier row has" in result.err, attempt
        assert f"{seeds}:4 (id 's01', first used by {seeds}:2)" in result.err, attempt
    assert sorted(r["query"] for r in read_rows(run)) == sorted(r["query"] for r in rows)
    assert _table(run, "SELECT location, seed_id FROM duplicates") == [(f"{seeds}:4", "s01")]
    # Once the file is fixed, the duplicate is no longer reported, nor recorded.
    _write(seeds, [json.dumps(r) for r in rows])
    result = run_cli(*args, "--resume-changed")
    assert result.code == 0 and "reuse an id" not in result.err
    assert _table(run, "SELECT * FROM duplicates") == []


def test_a_changed_seed_file_is_refused_unless_resume_changed(run_cli, fake_server, tmp_path):
    seeds, run = tmp_path / "s.jsonl", tmp_path / "run"
    _write(seeds, [json.dumps(r) for r in _rows(5)])
    args = generate_args(fake_server, seeds, run)
    assert run_cli(*args).code == 0
    before = seeds.stat().st_mtime_ns
    # Rewritten in place: the same ids, new text of the same length.
    _write(seeds, [json.dumps(r) for r in _rows(5, text="TEXT")])
    os.utime(seeds, ns=(before + 10**9, before + 10**9))
    refused = run_cli(*args)
    assert refused.code == 2
    assert refused.err.startswith(f"error: {seeds}: changed since this run began (modified ")
    assert "--resume-changed" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert fake_server.total_requests == 5

    resumed = run_cli(*args[:-1], "--resume-changed")  # not quiet: the table
    assert resumed.code == 0, resumed.err
    assert "resuming (--resume-changed): rows already made keep the old contents" in resumed.err
    assert "5 resumed" in resumed.out and fake_server.total_requests == 5
    assert all(" text " in r["doc_a"]["text"] for r in read_rows(run))
    # The run now records the file as it is: the next rerun resumes without the option.
    again = run_cli(*args)
    assert again.code == 0, again.err
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed_source"]["mtime_ns"] == before + 10**9
    assert [s["mtime_ns"] for s in manifest["seed_source_earlier"]] == [before]
    # A size change is one too.
    _write(seeds, [json.dumps(r) for r in _rows(6)])
    grown = run_cli(*args)
    assert grown.code == 2 and "bytes " in grown.err


def test_an_edit_that_keeps_size_and_mtime_is_still_a_change(run_cli, fake_server, tmp_path):
    """`cp -p` of another version, or `touch -r`: only the content says it changed."""
    seeds, run = tmp_path / "s.jsonl", tmp_path / "run"
    _write(seeds, [json.dumps(r) for r in _rows(5)])
    args = generate_args(fake_server, seeds, run)
    assert run_cli(*args).code == 0
    stat = seeds.stat()
    _write(seeds, [json.dumps(r) for r in _rows(5, text="TEXT")])
    os.utime(seeds, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert seeds.stat().st_size == stat.st_size
    refused = run_cli(*args)
    assert refused.code == 2 and "content sha256" in refused.err, refused.err
    assert fake_server.total_requests == 5
