"""Finished rows wait a few milliseconds to share one commit, and count as done only then.

A commit cost about 0.3 ms of CPU (B-trees, WAL frames) whatever it held: at 128 calls
in flight against a 500 ms server, rows finish one at a time, so each paid a commit of
its own, a fifth of dvsynth's CPU per row (benchmarks/README.md, throughput). Here the
first finished row opens a window, rows finishing within it join, and one transaction
commits them all when it closes.

The window closes once four rows are in (at the end of that wake-up of the event
loop, so rows finishing together still join), else after about the time four rows
take to arrive at the current pace, never more than 4% of the stage's own time per row
(a running average) nor 50 ms: where rows already finish together (hundreds in flight)
nobody waits, and calls in flight lose at most a few percent of their time to it. A row
keeps its `--concurrency` slot until committed (its task ends only then), so a kill
still loses at most `--concurrency` rows' calls, as when each row was committed alone,
and nothing reported done is ever lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

SHARE_OF_ROW_TIME = 0.04
MAX_WAIT_S = 0.05
ROWS_PER_COMMIT = 4  # what the window waits for, at the current pace
MAX_ROWS = 1024  # per transaction: a bound on the time one commit takes
_SMOOTHING = 0.1  # weight of the newest row in the running average of row time


class CommitWindow(Generic[T]):
    """Collects finished items and hands them to `write` (one transaction) in groups."""

    def __init__(
        self, write: Callable[[list[T]], None], concurrency: int = ROWS_PER_COMMIT
    ) -> None:
        self._write = write
        # Rows enough to commit without waiting: fewer where fewer can be in flight (at
        # --concurrency 1 no other row could join, so none waits).
        self._enough = max(1, min(ROWS_PER_COMMIT, concurrency))
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._closing = False  # the flush is due at the end of this wake-up
        self._row_time_s: float | None = None
        self._last_s: float | None = None  # when the previous row arrived (loop time)
        self._gap_s: float | None = None  # running average time between rows

    @property
    def wait_s(self) -> float:
        """How long the first row of a group waits for others: 0 (the end of the event
        loop's current wake-up) until a row's time is known."""
        if self._row_time_s is None or self._gap_s is None:
            return 0.0
        return min(MAX_WAIT_S, SHARE_OF_ROW_TIME * self._row_time_s, ROWS_PER_COMMIT * self._gap_s)

    async def commit(self, item: T, row_time_s: float) -> None:
        """Return once `item` is committed; `row_time_s` is how long the stage took on it."""
        loop = asyncio.get_running_loop()
        self._row_time_s = _average(self._row_time_s, row_time_s)
        now = loop.time()
        if self._last_s is not None:
            self._gap_s = _average(self._gap_s, now - self._last_s)
        self._last_s = now
        waiter: asyncio.Future[None] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        enough = len(self._items) >= self._enough
        if len(self._items) >= MAX_ROWS:
            self.flush()
        elif self._timer is None:
            wait = 0.0 if enough else self.wait_s
            self._timer = loop.call_later(wait, self.flush) if wait else loop.call_soon(self.flush)
            self._closing = not wait
        elif enough and not self._closing:
            # Enough rows: close the window at the end of this wake-up of the loop (rows
            # finishing in it still join), not when its time is up.
            self._timer.cancel()
            self._timer = loop.call_soon(self.flush)
            self._closing = True
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelled (a fatal error elsewhere, Ctrl-C) while waiting: commit now, so the
            # row is kept and reported like every row finished before the interrupt.
            error = self.flush()
            if waiter.done() and not waiter.cancelled():
                waiter.result()  # committed before the interrupt, or its commit's error
            elif error is not None:
                raise error from None

    def flush(self) -> BaseException | None:
        """Commit what waits, now; the error that stopped the commit, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return None
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        try:
            self._write(items)
        except Exception as exc:  # each waiting row's task raises it: the stage fails
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return exc
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return None


def _average(average: float | None, value: float) -> float:
    return value if average is None else average + _SMOOTHING * (value - average)
