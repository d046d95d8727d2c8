"""A row's life is explicit: only verified rows ship, faults are retried, ids stay apart.

Each test here is a path a user takes (extend a validated run, export before validating,
kill a re-validate, validate shards together, a provider outage, duplicate seed ids) and
failed on the code before the row-state rework.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from dvsynth.runs.dirs import iter_runs
from dvsynth.seeds.shards import shard_of
from dvsynth.testing import FakeLLMServer
from tests.conftest import MSMARCO, generate_args, validate_args, write_jsonl


def seed_rows(n: int, prefix: str = "s", others: bool = False) -> list[dict]:
    """Seeds over real MS MARCO queries (distinct enough that dedup keeps them all) whose
    pairs the fake judge confirms (distinct kw words per passage)."""
    rows = []
    for i, query in enumerate(_queries(prefix)[:n]):
        row = {
            "id": f"{prefix}{i:02d}",
            "query": query,
            "positive": f"kw{prefix}pos{i} passage on the topic",
            "negative": f"kw{prefix}neg{i} another passage on the topic",
        }
        if others:
            row["other_negatives"] = [f"unrelated note {i}"]
        rows.append(row)
    return rows


def _queries(prefix: str) -> list[str]:
    lines = (MSMARCO / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = random.Random(prefix).sample(lines, 60)  # each prefix its own queries
    return [json.loads(line)["text"] for line in chosen]


def export_args(run, out, *extra) -> list[str]:
    return [
        "export",
        *map(str, run if isinstance(run, list) else [run]),
        "--out",
        str(out),
        "--license",
        "cc-by-4.0",
        "--val-share",
        "0",
        *map(str, extra),
    ]


def final_rows(*runs) -> dict:
    return {row.seed_id: row for row in iter_runs([Path(r) for r in runs])}


def stages_of(folder: Path) -> list[str]:
    """The `stage` of every triplet row, read from the parquet files themselves (datasets'
    cache may hold an earlier export of a folder with the same name)."""
    files = sorted((folder / "triplets").glob("*.parquet"))
    return [stage for f in files for stage in pq.read_table(f).column("stage").to_pylist()]


# ---------------------------------------------------------------- export ships verified rows


def test_a_run_extended_after_validation_is_refused_until_validated(run_cli, fake_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(7))
    run, out = tmp_path / "run", tmp_path / "dataset"
    assert run_cli(*generate_args(fake_server, seeds, run, "--limit", "3")).code == 0
    assert run_cli(*validate_args(run, fake_server)).code == 0
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0  # extend to all 7

    refused = run_cli(*export_args(run, out))
    assert refused.code == 2
    assert "4 of 7 generated pairs are not verified" in refused.err
    assert "dvsynth validate" in refused.err and "--allow-unvalidated" in refused.err
    assert not out.exists()

    allowed = run_cli(*export_args(run, out, "--allow-unvalidated"))
    assert allowed.code == 0, allowed.err
    assert sorted(stages_of(out)) == ["generate"] * 8 + ["verified"] * 6
    card = (out / "README.md").read_text()
    assert "Not every pair here is verified" in card and "4 last at `generate`" in card

    assert run_cli(*validate_args(run, fake_server)).code == 0
    assert run_cli(*export_args(run, out)).code == 0
    assert stages_of(out) == ["verified"] * 14
    card = (out / "README.md").read_text()
    assert "Every pair passed every validation stage" in card


def test_a_run_never_validated_is_refused(run_cli, fake_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(3))
    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    refused = run_cli(*export_args(run, tmp_path / "out"))
    assert refused.code == 2
    assert "3 of 3 generated pairs are not verified (never validated)" in refused.err
    assert f"dvsynth validate {run} --judge-model MODEL" in refused.err


def test_a_killed_revalidation_is_refused_then_finished_by_the_rerun(tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(30))
    run, out = tmp_path / "run", tmp_path / "out"
    cli = [sys.executable, "-m", "dvsynth.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FakeLLMServer(latency=0.05) as server:
        assert subprocess.run([*cli, *generate_args(server, seeds, run)], env=env).returncode == 0
        assert subprocess.run([*cli, *validate_args(run, server)], env=env).returncode == 0
        assert subprocess.run([*cli, *export_args(run, out)], env=env).returncode == 0
        # New settings (another judge: real calls), killed part-way: old verdicts must not
        # ship as if the new judge had made them.
        command = [
            *cli,
            *validate_args(run, server, "--concurrency", "2", judge="openai/judge2"),
        ]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and proc.poll() is None
            and judged_by(run, "openai/judge2") < 5
        ):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert 5 <= judged_by(run, "openai/judge2") < 30
        refused = subprocess.run(
            [*cli, *export_args(run, out)], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 2
        assert "generated pairs are not verified" in refused.stderr
        assert stages_of(out) == ["verified"] * 60  # the previous export is untouched
        assert subprocess.run(command, env=env, capture_output=True).returncode == 0
        done = subprocess.run(
            [*cli, *export_args(run, out)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    rows = final_rows(run)
    assert all(r.verified and r.provenance.judge_model == "openai/judge2" for r in rows.values())


def judged_by(run: Path, judge: str) -> int:
    try:
        with sqlite3.connect(run / "dvsynth.sqlite") as db:
            return db.execute(
                "SELECT COUNT(*) FROM rows WHERE "
                "json_extract(checked, '$.provenance.judge_model') = ?",
                (judge,),
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_failed_export_leaves_the_previous_one_and_foreign_folders_are_refused(
    run_cli, fake_server, tmp_path
):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(3))
    run, out = tmp_path / "run", tmp_path / "dataset"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    assert run_cli(*validate_args(run, fake_server)).code == 0
    assert run_cli(*export_args(run, out)).code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    empty = write_jsonl(tmp_path / "none.jsonl", [{**seed_rows(1, "z")[0], "query": "q [none]"}])
    refusing = tmp_path / "refusing"
    assert run_cli(*generate_args(fake_server, empty, refusing)).code == 0
    assert run_cli(*validate_args(refusing, fake_server)).code == 0
    failed = run_cli(*export_args(refusing, out))
    assert failed.code == 2 and "no verified pairs" in failed.err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]  # no leftovers

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "README.md").write_text("my own notes")
    refused = run_cli(*export_args(run, foreign))
    assert refused.code == 2 and "not a dvsynth export" in refused.err
    assert (foreign / "README.md").read_text() == "my own notes"


# ---------------------------------------------------------------- one event loop per command


@pytest.mark.parametrize("transport", ["http", "litellm"])
@pytest.mark.parametrize("count", [2, 3])
def test_several_runs_validated_in_one_command(run_cli, fake_server, tmp_path, count, transport):
    runs = []
    for index in range(count):
        seeds = write_jsonl(tmp_path / f"seeds{index}.jsonl", seed_rows(6, prefix=f"r{index}x"))
        run = tmp_path / f"run{index}"
        assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
        runs.append(run)
    result = run_cli(
        *validate_args(
            runs[0], fake_server, *runs[1:], "--concurrency", "4", "--transport", transport
        )
    )
    assert result.code == 0, result.err
    rows = final_rows(*runs)
    assert len(rows) == 6 * count
    # Before: every run after the first lost rows as judge:internal:RuntimeError (a
    # semaphore bound to the first run's event loop).
    assert [r.reasons for r in rows.values() if r.status != "kept"] == []
    assert all(r.verified for r in rows.values())


# ---------------------------------------------------------------- transient faults are retried


def test_a_generate_outage_is_retried_by_the_rerun(run_cli, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(20))
    run = tmp_path / "run"
    with FakeLLMServer(faults={"500": 0.3, "429": 0.2}, fault_attempts=1) as server:
        first = run_cli(*generate_args(server, seeds, run, "--max-retries", "0"))
        assert first.code == 0
        rows = final_rows(run)
        failed = {k for k, r in rows.items() if r.status == "failed"}
        assert failed and all(r.status == "kept" for k, r in rows.items() if k not in failed)
        assert {r.reasons[0] for k, r in rows.items() if k in failed} <= {
            "llm:InternalServerError",
            "llm:RateLimitError",
        }
        calls = dict(server.requests_by_query)
        again = run_cli(*generate_args(server, seeds, run, "--max-retries", "0"))
        assert again.code == 0
        rows = final_rows(run)
        assert all(r.status == "kept" for r in rows.values())
        for key, row in rows.items():  # failed rows called once more, finished ones never
            assert server.requests_by_query[row.query] == calls[row.query] + (key in failed)


def test_a_judge_outage_is_retried_by_the_rerun_and_blocks_export(run_cli, fake_server, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_rows(16))
    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    with FakeLLMServer(faults={"500": 0.4}, fault_attempts=1) as judge:
        assert run_cli(*validate_args(run, judge)).code == 0
        failed = [r for r in final_rows(run).values() if r.status == "failed"]
        assert failed and all(r.reasons[0].startswith(("judge:llm:", "check:llm:")) for r in failed)
        stats = json.loads(run_cli("stats", str(run), "--json").out)
        assert sum(stats["failed_will_retry"].values()) == len(failed)
        assert "rejected" not in stats["status"]
        refused = run_cli(*export_args(run, tmp_path / "out"))
        assert refused.code == 2 and f"{len(failed)} of 16" in refused.err
        assert run_cli(*validate_args(run, judge)).code == 0
    rows = final_rows(run)
    assert all(r.verified for r in rows.values())
    assert run_cli(*export_args(run, tmp_path / "out")).code == 0


def test_permanent_verdicts_are_never_repeated(run_cli, fake_server, tmp_path):
    rows = seed_rows(2) + [{**seed_rows(1, "n")[0], "query": "refuse [none]"}]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    calls = fake_server.total_requests
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    assert fake_server.total_requests == calls
    assert final_rows(run)["n00"].reasons == ["generator:none"]


# ---------------------------------------------------------------- negatives per view


def test_view_b_keeps_only_negatives_the_judge_rejects(run_cli, fake_server, tmp_path):
    rows = seed_rows(2)
    # The second other negative carries doc_b's keyword: instruction b admits it.
    for i, row in enumerate(rows):
        row["other_negatives"] = [f"unrelated note {i}", f"kwsneg{i} look-alike of doc b"]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    run, out = tmp_path / "run", tmp_path / "out"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    assert run_cli(*validate_args(run, fake_server)).code == 0
    for row in final_rows(run).values():
        assert row.verified
        assert [d.text for d in row.views()[1].other_negatives] == [
            f"unrelated note {int(row.seed_id[1:])}"
        ]
        assert len(row.views()[0].other_negatives) == 2
    assert run_cli(*export_args(run, out)).code == 0
    triplets = datasets.load_dataset(str(out), "triplets", split="train")
    by_view = {(r["pair_id"], r["view"]): r["negatives"] for r in triplets}
    assert all(len(v) == (2 if view == "a" else 1) for (_, view), v in by_view.items())

    off = tmp_path / "off"
    assert run_cli(*generate_args(fake_server, seeds, off)).code == 0
    assert run_cli(*validate_args(off, fake_server, "--no-judge-negatives")).code == 0
    for row in final_rows(off).values():
        assert row.verified and row.views()[1].other_negatives == []


# ---------------------------------------------------------------- duplicate seed ids


def test_duplicate_ids_are_reported_and_never_counted_as_resumed(run_cli, fake_server, tmp_path):
    rows = seed_rows(3)
    dup_a = {**rows[0], "query": "a different question"}
    dup_b = {**rows[1], "query": "yet another question"}
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [rows[0], rows[1], dup_a, rows[2], dup_b])
    run = tmp_path / "run"
    first = run_cli(*generate_args(fake_server, seeds, run))
    assert first.code == 0
    assert "2 seed rows reuse an id" in first.err
    assert f"{seeds}:3" in first.err and f"{seeds}:5" in first.err
    assert {r.query for r in final_rows(run).values()} == {r["query"] for r in rows}
    again = run_cli(*generate_args(fake_server, seeds, run)[:-1])  # not quiet: the table
    assert again.code == 0
    assert "0 new (0 retried), 3 resumed" in again.out
    assert "2 seed rows reuse an id" in again.err


def test_mine_ids_cannot_collide():
    from dvsynth.seeds.mine import pair_seed_id

    assert pair_seed_id("q1-2", "3") != pair_seed_id("q1", "2-3")
    assert pair_seed_id("what is a cat", "d1") != pair_seed_id("what is a dog", "d1")


def test_shards_validated_together_dedup_across_them(run_cli, fake_server, tmp_path):
    ids = [f"dup{i}" for i in range(50)]
    first = next(i for i in ids if shard_of(i, 2) == 0)
    second = next(i for i in ids if shard_of(i, 2) == 1)
    base = {"query": "same query", "positive": "kwone text", "negative": "kwtwo text"}
    seeds = write_jsonl(tmp_path / "s.jsonl", [{"id": first, **base}, {"id": second, **base}])
    runs = [tmp_path / "a", tmp_path / "b"]
    for shard, run in enumerate(runs):
        assert run_cli(*generate_args(fake_server, seeds, run, "--shard", f"{shard}/2")).code == 0
    assert run_cli(*validate_args(runs[0], fake_server, runs[1])).code == 0
    rows = final_rows(*runs)
    assert sorted(r.status for r in rows.values()) == ["kept", "rejected"]
    assert sum(r.verified for r in rows.values()) == 1
