"""One writer per run (issue 25): two commands on one run never both pay for its calls.

Through the real CLI, as two processes: the second writer is refused with one line that
names the first one's PID, exit 2, while the first finishes its work alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvsynth.errors import UserError
from dvsynth.runs import lock
from dvsynth.runs.store import DATABASE, RunStore
from dvsynth.testing import FakeLLMServer
from tests.conftest import generate_args, validate_args, write_seeds

SEED_COUNT = 30


@pytest.fixture
def seeds(tmp_path) -> Path:
    """Enough seeds that a run at 0.15 s a call lasts while a second command starts."""
    return write_seeds(tmp_path / "seeds.jsonl", SEED_COUNT)


def _dvsynth(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dvsynth.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lock(run: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until `proc` holds the run's lock (its PID is in the lock file)."""
    deadline = time.monotonic() + timeout
    path = run / lock.LOCK_FILE
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip() == str(proc.pid):
            return
        if proc.poll() is not None:
            raise AssertionError(f"first command ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the first command never took the lock")


def test_two_generates_on_one_run_pay_once(tmp_path, seeds):
    with FakeLLMServer(latency=0.15) as server:
        run = tmp_path / "twin"
        first = _dvsynth(*generate_args(server, seeds, run, "--concurrency", "2"))
        _wait_for_lock(run, first)
        second = _dvsynth(*generate_args(server, seeds, run, "--concurrency", "2"))
        out2, err2 = second.communicate(timeout=120)
        out1, err1 = first.communicate(timeout=120)
        assert second.returncode == 2, err2
        assert f"PID {first.pid}" in err2 and str(run) in err2
        assert len(err2.strip().splitlines()) == 1 and "Traceback" not in err2
        assert first.returncode == 0, err1
        assert server.total_requests == SEED_COUNT  # each seed's call paid once
        assert max(server.requests_by_query.values()) == 1


def test_validate_while_generate_writes_is_refused(tmp_path, seeds):
    with FakeLLMServer(latency=0.15) as server:
        run = tmp_path / "run"
        first = _dvsynth(*generate_args(server, seeds, run, "--concurrency", "1"))
        _wait_for_lock(run, first)
        while not (run / "manifest.json").exists():
            time.sleep(0.05)
        second = _dvsynth(*validate_args(run, server))
        _, err2 = second.communicate(timeout=120)
        first.communicate(timeout=120)
        assert second.returncode == 2
        assert f"PID {first.pid}" in err2


def test_sigkill_leaves_no_stale_lock(tmp_path, seeds):
    with FakeLLMServer(latency=0.3) as server:
        run = tmp_path / "run"
        first = _dvsynth(*generate_args(server, seeds, run, "--concurrency", "1"))
        _wait_for_lock(run, first)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
        again = _dvsynth(*generate_args(server, seeds, run))
        _, err = again.communicate(timeout=120)
        assert again.returncode == 0, err


def test_readers_need_no_lock(tmp_path, seeds, run_cli, fake_server):
    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    holder = RunStore.open_existing(run, writer=True)
    try:
        stats = run_cli("stats", run, "--json")
        assert stats.code == 0, stats.err
        assert json.loads(stats.out)
    finally:
        holder.close()


def test_lock_is_counted_within_a_process(tmp_path, seeds, run_cli, fake_server):
    run = tmp_path / "run"
    assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    a = RunStore.open_existing(run, writer=True)
    b = RunStore.open_existing(run, writer=True)
    a.close()
    assert lock.holds(run)
    b.close()
    assert not lock.holds(run)
    b.close()  # a second close releases nothing more


def test_a_refused_open_of_several_runs_releases_the_others(tmp_path, seeds, run_cli, fake_server):
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    for run in (r1, r2):
        assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
    (r2 / DATABASE).write_bytes(b"not a database at all, random bytes" * 40)
    with pytest.raises(UserError, match="not a readable dvsynth database"):
        RunStore.open_many([r1, r2], writer=True)
    assert not lock.holds(r1)


def test_fresh_databases_never_migrate(tmp_path, monkeypatch):
    """Two fresh runs opened at once raced on ALTER TABLE ('duplicate column name'): a
    new database has every column from the start, so opening one alters nothing."""
    statements: list[str] = []
    real_connect = __import__("sqlite3").connect

    def traced(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr("dvsynth.runs.store.sqlite3.connect", traced)
    store = RunStore.open(tmp_path / "fresh", {"identity_sha256": "x", "identity": {}})
    store.close()
    assert statements and not [s for s in statements if s.lstrip().upper().startswith("ALTER")]


def test_racing_fresh_opens_are_locked_not_corrupted(tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dvsynth.errors import UserError\n"
        "from dvsynth.runs.store import RunStore\n"
        "try:\n"
        "    s = RunStore.open(Path(sys.argv[1]), {'identity_sha256': 'x', 'identity': {}})\n"
        "except UserError as exc:\n"
        "    print('refused', exc); sys.exit(2)\n"
        "s.close()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "race")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    assert all(err == "" for _, err, _ in results), results
    assert all(rc == 0 or "is writing this run" in out for out, _, rc in results), results
    assert any(rc == 0 for _, _, rc in results)
