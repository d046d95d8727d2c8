"""Runs a stage over a seed stream with bounded concurrency, committing rows as they finish.

The stream is consumed lazily: at most `concurrency` rows are in flight, so memory does
not grow with the seed count. Rows already in the store are skipped, which is all that
resuming takes: a row is found by its seed id alone, never by its position in the
source (`runs.seen_ids` tells a duplicate id from a resumed row). The pipeline knows
nothing of files, terminals or the CLI: it reports each finished row to a callback.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dvsynth.errors import AwaitingBatch, UserError
from dvsynth.llm.batch.session import current_row
from dvsynth.records import DualView, Seed, SeedError
from dvsynth.runs.commit_window import CommitWindow
from dvsynth.runs.seen_ids import SeenIds
from dvsynth.runs.store import RunStore


@dataclass
class RunStats:
    """What one invocation did; the store holds the totals across invocations."""

    seeds_seen: int = 0
    already_done: int = 0
    retried: int = 0  # rows whose last attempt failed transiently, tried again now
    duplicates: int = 0
    duplicate_locations: list[str] = field(default_factory=list)  # the first few
    bad_seeds: int = 0
    filtered: int = 0  # rows the adapter skipped on purpose (no instruction negative)
    kept: int = 0
    rejected: int = 0
    failed: int = 0  # transient faults: retried by the next run of the same command
    waiting: int = 0  # rows waiting on a batch's answers (batch mode): not committed
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: int = 0  # rows whose provider price litellm does not know
    stopped_by_cost: bool = False  # --max-cost reached: no new rows were started
    reasons: Counter[str] = field(default_factory=Counter)
    batch: Any = None  # llm.batch.rounds.BatchRound, in batch mode
    estimate: Any = None  # llm.cost.CostEstimate, in a dry run

    def merge(self, later: RunStats) -> None:
        """Add a later pass over the same seeds (a batch round): rows finished in either
        count; what is seen and waiting is the later pass's own."""
        for name in ("retried", "kept", "rejected", "failed", "cached_calls", "bad_seeds"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in ("prompt_tokens", "completion_tokens", "cost_usd", "cost_unknown"):
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in ("seeds_seen", "already_done", "duplicates", "waiting", "filtered"):
            setattr(self, name, getattr(later, name))
        self.duplicate_locations = later.duplicate_locations
        self.stopped_by_cost = self.stopped_by_cost or later.stopped_by_cost
        self.reasons.update(later.reasons)

    @property
    def done_now(self) -> int:
        return self.kept + self.rejected + self.failed

    def add(self, row: DualView) -> None:
        if row.status == "kept":
            self.kept += 1
        else:
            self.failed += row.status == "failed"
            self.rejected += row.status == "rejected"
            self.reasons.update(row.reasons)
        prov = row.provenance
        if prov.cached:
            self.cached_calls += 1
            return  # a cached answer costs nothing this time
        self.prompt_tokens += prov.usage.prompt_tokens
        self.completion_tokens += prov.usage.completion_tokens
        if prov.cost_usd is None:
            self.cost_unknown += 1
        else:
            self.cost_usd += prov.cost_usd


Stage = Callable[[Seed], Awaitable[DualView]]
MAX_REPORTED_DUPLICATES = 5
T = TypeVar("T")
R = TypeVar("R")


async def bounded_map(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    concurrency: int,
    on_done: Callable[[T, R], None],
) -> None:
    """`work(item)` for every item, at most `concurrency` at once; `on_done(item, result)`
    as each finishes. Items are pulled lazily, so a stream of any length fits in memory.

    An error from `work` (or from the iterator) cancels what is in flight; results that
    finished meanwhile still reach `on_done`, so a fatal error or an interrupt loses
    nothing that was done.
    """
    in_flight: dict[asyncio.Future[R], T] = {}
    # Tasks that finished, in order, and the future drain() sleeps on: O(1) per row, where
    # asyncio.wait adds and removes a callback on every task in flight at each wake-up
    # (hundreds of them, for one or two finished rows).
    finished: deque[asyncio.Future[R]] = deque()
    wakeup: list[asyncio.Future[None]] = []

    def on_finished(task: asyncio.Future[R]) -> None:
        finished.append(task)
        if wakeup and not wakeup[0].done():
            wakeup[0].set_result(None)

    async def drain(below: int) -> None:
        while len(in_flight) >= below and in_flight:
            if not finished:
                wakeup[:] = [asyncio.get_running_loop().create_future()]
                try:
                    await wakeup[0]
                finally:
                    wakeup.clear()
            while finished:
                task = finished.popleft()
                on_done(in_flight.pop(task), task.result())  # an error propagates here

    try:
        for item in items:
            task = asyncio.ensure_future(work(item))
            task.add_done_callback(on_finished)
            in_flight[task] = item
            await drain(concurrency)
        await drain(1)
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            results = await asyncio.gather(*in_flight, return_exceptions=True)
            for item, result in zip(list(in_flight.values()), results, strict=True):
                if not isinstance(result, BaseException):
                    on_done(item, result)


async def run_stage(
    seeds: Iterable[Seed | SeedError],
    stage: Stage,
    store: RunStore,
    *,
    concurrency: int,
    limit: int | None = None,
    strict: bool = False,
    max_cost: float | None = None,
    on_row: Callable[[DualView, RunStats], None] | None = None,
    on_bad_seed: Callable[[SeedError], None] | None = None,
    commit: bool = True,
) -> RunStats:
    """Apply `stage` to every seed not yet in `store`; return what this invocation did.
    `commit` False (a dry run): rows are made, counted and dropped."""
    stats = RunStats()
    spent_before = store.total_cost() if max_cost is not None else 0.0
    seen = SeenIds()  # a row is its seed id: the first location with an id owns it
    reported = store.reported_locations()  # bad rows and duplicates of earlier passes

    def report_anew(location: str) -> None:
        """What an earlier pass reported at `location` goes: it is read again now."""
        if location in reported:
            reported.discard(location)
            store.drop_reports(location)

    def duplicate(item: Seed, location: str, first: str) -> None:
        """A second row with an id the source already used: reported and kept apart."""
        stats.duplicates += 1
        if len(stats.duplicate_locations) < MAX_REPORTED_DUPLICATES:
            stats.duplicate_locations.append(
                f"{location} (id {item.seed_id!r}, first used by {first})"
            )
        store.put_duplicate(location, item.seed_id)

    def to_start() -> Iterator[tuple[Seed, int]]:
        """The seeds to generate, with their ordinal (their order in the run's listings,
        not their identity); counts what it skips."""
        for item in seeds:
            if isinstance(item, SeedError):
                report_anew(item.location)
                store.put_seed_error(item)
                stats.bad_seeds += 1
                if strict:
                    raise UserError(f"{item.location}: {item.reason} (--strict)")
                if on_bad_seed:
                    on_bad_seed(item)
                continue
            if limit is not None and stats.seeds_seen >= limit:
                return
            ordinal = stats.seeds_seen
            stats.seeds_seen += 1
            location = item.location or f"seed #{ordinal + 1}"
            report_anew(location)
            first = seen.first_location(item.seed_id, location)
            if first is not None:
                duplicate(item, location, first)
                continue
            status = store.generated_status(item.seed_id)
            if status is not None:
                if status != "failed":
                    stats.already_done += 1
                    continue
            if max_cost is not None and spent_before + stats.cost_usd >= max_cost:
                stats.stopped_by_cost = True  # only a row that would call stops at the cap
                return
            if status is not None:
                stats.retried += 1  # a transient fault last time: try again
            yield item, ordinal

    window: CommitWindow[tuple[DualView, int]] = CommitWindow(store.put_rows, concurrency)

    async def generate(item: tuple[Seed, int]) -> DualView | None:
        """The row, committed with the answers it used before it counts as done: its
        slot of `concurrency` stays taken until then (`runs.commit_window`)."""
        seed, ordinal = item
        started = time.perf_counter()
        row = await unless_waiting(stage, seed, seed.seed_id)
        if row is not None and commit:
            await window.commit((row, ordinal), time.perf_counter() - started)
        return row

    def finished(item: tuple[Seed, int], row: DualView | None) -> None:
        if row is None:  # waits on a batch: the next pass finishes it
            stats.waiting += 1
            return
        stats.add(row)
        if on_row:
            on_row(row, stats)

    try:
        with store.background_checkpoints():
            await bounded_map(to_start(), generate, concurrency, finished)
    finally:
        window.flush()
        seen.close()
    return stats


async def unless_waiting(work: Callable[[T], Awaitable[R]], item: T, row_id: str) -> R | None:
    """`work(item)`, or None when the row waits on a batch (`AwaitingBatch`); the row's
    id names the batch requests its calls queue."""
    current_row.set(row_id)
    try:
        return await work(item)
    except AwaitingBatch:
        return None
