"""Rows that finish close together share one commit (issue 18), and a row counts as done
only once committed: calls in flight plus rows waiting for their commit never exceed
--concurrency, so a kill loses no more than it did with a commit per row."""

from __future__ import annotations

import asyncio
import random

import pytest

from dvsynth.records import Doc, DualView, Provenance, Seed
from dvsynth.runs import commit_window
from dvsynth.runs.commit_window import CommitWindow
from dvsynth.runs.pipeline import run_stage
from dvsynth.runs.store import RunStore


def test_rows_within_the_window_share_one_write_and_wait_for_it():
    writes: list[list[int]] = []
    returned: list[int] = []

    async def main() -> None:
        window: CommitWindow[int] = CommitWindow(writes.append)

        async def finish(i: int) -> None:
            await asyncio.sleep(0.003 * i)  # a row every 3 ms, each 0.5 s long
            await window.commit(i, row_time_s=0.5)
            assert any(i in group for group in writes)  # written before it returns
            returned.append(i)

        await asyncio.gather(*(finish(i) for i in range(30)))

    asyncio.run(main())
    assert sorted(i for group in writes for i in group) == list(range(30))
    assert len(writes) <= 12  # groups of several rows, not a commit per row
    assert max(len(group) for group in writes) >= 3
    assert sorted(returned) == list(range(30))


def test_the_window_waits_for_a_few_rows_at_most_a_share_of_the_row_time():
    async def window_after(gap_s: float, row_time_s: float, rows: int = 40) -> float:
        window: CommitWindow[int] = CommitWindow(lambda items: None)
        assert window.wait_s == 0  # nothing known yet: the end of this wake-up
        for i in range(rows):
            asyncio.ensure_future(window.commit(i, row_time_s))
            await asyncio.sleep(gap_s)
        window.flush()
        return window.wait_s

    # Rows every 2 ms, 0.5 s each: wait for ~4 rows (8 ms), well under 4% of 0.5 s.
    assert asyncio.run(window_after(0.002, 0.5)) == pytest.approx(0.008, rel=0.6)
    # Rows every 20 ms: four would take 80 ms; 4% of the row time (20 ms) caps it.
    assert asyncio.run(window_after(0.02, 0.5, rows=15)) == pytest.approx(0.02)
    # Slow rows, slow pace: never more than 50 ms.
    assert asyncio.run(window_after(0.05, 60.0, rows=10)) == commit_window.MAX_WAIT_S


def test_a_failed_write_fails_every_row_that_waited_for_it():
    def write(items: list[int]) -> None:
        raise OSError("disk full")

    async def main() -> list[object]:
        window: CommitWindow[int] = CommitWindow(write)
        return await asyncio.gather(
            *(window.commit(i, 0.1) for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [type(r) for r in results] == [OSError] * 3


def test_a_row_cancelled_while_waiting_is_committed_and_not_lost():
    writes: list[list[int]] = []

    async def main() -> object:
        window: CommitWindow[int] = CommitWindow(writes.append)
        task = asyncio.ensure_future(window.commit(7, row_time_s=1.0))  # a 40 ms window
        await asyncio.sleep(0.005)
        task.cancel()  # an interrupt while the row waits
        return await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(main()) == [None]  # it finished normally: the row is reported
    assert writes == [[7]]


def _seed(i: int) -> Seed:
    doc = Doc(doc_id=f"d{i}", text=f"passage {i}")
    return Seed(seed_id=f"s{i}", query=f"q{i}", positive=doc, negative=doc)


def _row(seed: Seed) -> DualView:
    provenance = Provenance(
        generator_model="m", prompt_name="p", prompt_sha256="x", dvsynth_version="0", created_at="t"
    )
    return DualView(
        pair_id=seed.seed_id, seed_id=seed.seed_id, query=seed.query, instruction_a="a",
        doc_a=seed.positive, instruction_b="b", doc_b=seed.negative, mode="bootstrap",
        status="kept", provenance=provenance,
    )  # fmt: skip


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_calls_in_flight_and_rows_awaiting_commit_never_exceed_concurrency(tmp_path, concurrency):
    store = RunStore.open(tmp_path / "run", {"identity": {}, "identity_sha256": "x"})
    written = [0]
    started = [0]
    worst = [0]
    put_rows = store.put_rows

    def counting_put_rows(rows):
        put_rows(rows)
        written[0] += len(rows)

    store.put_rows = counting_put_rows  # type: ignore[method-assign]
    rng = random.Random(concurrency)

    async def stage(seed: Seed) -> DualView:
        started[0] += 1
        worst[0] = max(worst[0], started[0] - written[0])  # rows a kill now would lose
        await asyncio.sleep(rng.uniform(0.02, 0.1))
        return _row(seed)

    seeds = [_seed(i) for i in range(60)]
    stats = asyncio.run(run_stage(seeds, stage, store, concurrency=concurrency))
    store.close()
    assert stats.kept == 60 and written[0] == 60
    assert worst[0] <= concurrency


def test_four_rows_in_close_the_window_without_waiting_out_its_time():
    writes: list[list[int]] = []

    async def main() -> float:
        window: CommitWindow[int] = CommitWindow(writes.append)
        for i in range(3):  # slow rows, a slow pace: a 50 ms window
            asyncio.ensure_future(window.commit(i, row_time_s=10.0))
            await asyncio.sleep(0.03)
        window.flush()
        assert window.wait_s == commit_window.MAX_WAIT_S
        writes.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(window.commit(i, 10.0) for i in range(10, 16)))
        return loop.time() - started

    took = asyncio.run(main())
    assert writes == [[10, 11, 12, 13, 14, 15]]  # the whole wake-up, in one commit
    assert took < commit_window.MAX_WAIT_S / 2


def test_a_row_cancelled_after_its_commit_failed_still_raises_the_error():
    def write(items: list[int]) -> None:
        raise OSError("disk full")

    async def main() -> list[object]:
        window: CommitWindow[int] = CommitWindow(write)
        task = asyncio.ensure_future(window.commit(1, row_time_s=1.0))
        await asyncio.sleep(0)  # the row waits for its window
        window.flush()  # the commit fails; the task has not resumed yet
        task.cancel()
        return await asyncio.gather(task, return_exceptions=True)

    [result] = asyncio.run(main())
    assert isinstance(result, OSError)


def test_at_concurrency_one_a_row_never_waits_for_others():
    writes: list[list[int]] = []

    async def main() -> float:
        window: CommitWindow[int] = CommitWindow(writes.append, concurrency=1)
        for i in range(3):  # slow rows: the window would be 50 ms
            await window.commit(i, row_time_s=10.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await window.commit(3, row_time_s=10.0)
        return loop.time() - started

    assert asyncio.run(main()) < commit_window.MAX_WAIT_S / 2
    assert writes == [[0], [1], [2], [3]]
