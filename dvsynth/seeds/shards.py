"""Deterministic sharding of any seed stream by seed_id.

`--shard i/N` keeps the seeds whose id hashes to i modulo N, so N machines (or N Ray
tasks) can each run an ordinary run directory over the same source with no coordination,
and the union of the shards is exactly the unsharded run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from dvsynth.errors import UserError
from dvsynth.records import Seed, SeedError


class Shard(NamedTuple):
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str | None) -> Shard | None:
    if not spec:
        return None
    index, sep, count = spec.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard.index < shard.count:
        raise UserError(f"--shard: '{spec}' must be i/N with 0 <= i < N, e.g. --shard 0/4")
    return shard


def shard_of(key: str, count: int) -> int:
    """A stable bucket for a key: the same on every machine and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


def select_shard(
    items: Iterable[Seed | SeedError], shard: Shard | None
) -> Iterator[Seed | SeedError]:
    """Keep this shard's seeds; bad rows go to the shard of their location, reported once."""
    for item in items:
        key = item.seed_id if isinstance(item, Seed) else item.location
        if shard is None or shard_of(key, shard.count) == shard.index:
            yield item
