"""A run killed with SIGKILL mid-way, then rerun, equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from dvsynth.testing import FakeLLMServer
from tests.conftest import comparable_rows, generate_args, read_rows, write_jsonl

N_SEEDS = 120


def _seeds(path):
    rows = []
    for i in range(N_SEEDS):
        row = {
            "id": f"k{i:03d}",
            "query": f"kill test query {i}",
            "positive": f"passage {i} for",
            "negative": f"passage {i} against",
        }
        if i % 3:
            row["instruction"] = f"Only sources from {2000 + i}."
        rows.append(row)
    return write_jsonl(path, rows)


def _command(server, seeds, out):
    return [
        sys.executable,
        "-m",
        "dvsynth.cli",
        *generate_args(server, seeds, out, "--concurrency", "4"),
    ]


def _row_count(out) -> int:
    try:
        with sqlite3.connect(out / "dvsynth.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path):
    seeds = _seeds(tmp_path / "seeds.jsonl")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FakeLLMServer() as server:
        done = subprocess.run(
            _command(server, seeds, tmp_path / "whole"),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    reference = comparable_rows(read_rows(tmp_path / "whole"))
    assert len(reference) == N_SEEDS

    out = tmp_path / "killed"
    with FakeLLMServer(latency=0.05) as server:
        proc = subprocess.Popen(
            _command(server, seeds, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while _row_count(out) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        finished_before_kill = {r["query"] for r in read_rows(out)}
        assert 30 <= len(finished_before_kill) < N_SEEDS

        rerun = subprocess.run(
            _command(server, seeds, out), env=env, capture_output=True, text=True, timeout=300
        )
        assert rerun.returncode == 0, rerun.stderr
        # No finished row's call was made again.
        for query in finished_before_kill:
            assert server.requests_by_query[query] == 1, query
        assert server.total_requests <= N_SEEDS + 4  # at most the calls in flight repeat

    resumed = comparable_rows(read_rows(out))
    assert resumed == reference
    assert len({r["seed_id"] for r in resumed}) == N_SEEDS  # nothing duplicated
