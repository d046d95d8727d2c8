"""Several self-hosted servers behind one client: each call goes to the server with the
fewest calls in flight, at most `per_server` at once on each.

A total cap of `per_server x servers` with the least-busy choice is enough: if every
server were full the total would exceed the cap, so the chosen one always has room.
Ties go round-robin, so servers that answer equally fast share the work evenly.
"""

from __future__ import annotations

import asyncio


class ServerPool:
    def __init__(self, servers: int, per_server: int) -> None:
        self.in_flight = [0] * servers
        self.sent = [0] * servers  # calls each server was given, for reports and tests
        self._cap = asyncio.Semaphore(per_server * servers)
        self._turn = 0

    def slot(self) -> _Slot:
        """`async with pool.slot() as index`: wait for room, then hold one call's place
        on the least busy server (a plain class, not `asynccontextmanager`: its generator
        and wrapper were a visible share of the CPU of a call at hundreds a second)."""
        return _Slot(self)

    def _take(self) -> int:
        count = len(self.in_flight)
        start = self._turn
        self._turn = (self._turn + 1) % count
        if count == 1:
            index = 0
        else:
            index = min(((start + k) % count for k in range(count)), key=self.in_flight.__getitem__)
        self.in_flight[index] += 1
        self.sent[index] += 1
        return index


class _Slot:
    __slots__ = ("_pool", "_index")

    def __init__(self, pool: ServerPool) -> None:
        self._pool = pool
        self._index = -1

    async def __aenter__(self) -> int:
        await self._pool._cap.acquire()
        self._index = self._pool._take()  # nothing awaits between: no place is lost
        return self._index

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool.in_flight[self._index] -= 1
        self._pool._cap.release()
