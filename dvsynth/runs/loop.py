"""The event loop a stage runs on: uvloop where it is installed, with fewer GC passes.

At hundreds of requests in flight the loop itself (its transports, callbacks and
timers) is a large share of the CPU per row; uvloop (libuv, in C) does the same work in
about 0.1 ms less per request (benchmarks/README.md, throughput). Where it is missing
(Windows has no wheel) asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def run_stage_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop where it is installed, under `fewer_collections`."""
    with fewer_collections():
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main)
        return uvloop.run(main)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run a stage with the cyclic garbage collector doing less, restored afterwards.

    Everything imported so far is frozen (exempt): litellm and friends leave ~400k
    long-lived objects, and every full collection walked them all; at hundreds of rows a
    second those walks took a fifth of the run's time (benchmarks/README.md). And the
    young generation is collected every 20,000 allocations instead of 700: with hundreds
    of rows in flight each young collection walked their live objects again, ~4% of the
    CPU per row (benchmarks/README.md, throughput). What a row leaves is freed by
    reference counting as before; only cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


YOUNG_COLLECTION_EVERY = 20_000
