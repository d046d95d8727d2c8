"""Several self-hosted servers behind one client: each call goes to the server with the
fewest calls in flight, at most `per_server` at once on each.

A total cap of `per_server x servers` with the least-busy choice is enough: if every
server were full the total would exceed the cap, so the chosen one always has room.
Ties go round-robin, so servers that answer equally fast share the work evenly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ServerPool:
    def __init__(self, servers: int, per_server: int) -> None:
        self.in_flight = [0] * servers
        self.sent = [0] * servers  # calls each server was given, for reports and tests
        self._cap = asyncio.Semaphore(per_server * servers)
        self._turn = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait for room, then hold one call's place on the least busy server."""
        async with self._cap:
            count = len(self.in_flight)
            start = self._turn
            self._turn = (self._turn + 1) % count
            index = min(((start + k) % count for k in range(count)), key=self.in_flight.__getitem__)
            self.in_flight[index] += 1
            self.sent[index] += 1
            try:
                yield index
            finally:
                self.in_flight[index] -= 1
