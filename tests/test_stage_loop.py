"""How a stage's event loop runs (issue 18): uvloop where installed, asyncio's loop where
not, the GC settings given back afterwards, and WAL checkpoints off the loop's thread."""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import pytest

from dvsynth.runs import checkpoints
from dvsynth.runs.loop import YOUNG_COLLECTION_EVERY, run_stage_loop
from dvsynth.runs.store import DATABASE, RunStore


async def _loop_class_and_threshold() -> tuple[str, int]:
    return type(asyncio.get_running_loop()).__module__, gc.get_threshold()[0]


def test_the_stage_runs_on_uvloop_with_fewer_collections_then_settings_return():
    pytest.importorskip("uvloop")
    before = gc.get_threshold()
    module, threshold = run_stage_loop(_loop_class_and_threshold())
    assert module.startswith("uvloop")
    assert threshold == YOUNG_COLLECTION_EVERY
    assert gc.get_threshold() == before


def test_without_uvloop_asyncios_own_loop_runs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    module, _ = run_stage_loop(_loop_class_and_threshold())
    assert module.startswith("asyncio")


def test_an_error_in_the_stage_still_gives_the_gc_settings_back():
    before = gc.get_threshold()

    async def fails() -> None:
        raise RuntimeError("fatal")

    with pytest.raises(RuntimeError):
        run_stage_loop(fails())
    assert gc.get_threshold() == before


def test_checkpoints_run_in_the_background_and_the_store_takes_them_back(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "INTERVAL_S", 0.05)
    store = RunStore.open(tmp_path / "run", {"identity": {}, "identity_sha256": "x"})
    database = store.run_dir / DATABASE
    with store.background_checkpoints():
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        size_before = database.stat().st_size
        store._db.execute("CREATE TABLE filler (x TEXT)")
        store._db.executemany("INSERT INTO filler VALUES (?)", [("x" * 4000,)] * 300)
        deadline = time.monotonic() + 10
        while database.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.stat().st_size > size_before  # the thread copied the log back
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    store.close()
