"""Deterministic sharding of any seed stream by seed_id.

`--shard i/N` keeps the seeds whose id hashes to i modulo N, so N machines (or N Ray
tasks) can each run an ordinary run directory over the same source with no coordination,
and the union of the shards is exactly the unsharded run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from dvsynth.errors import UserError
from dvsynth.records import Seed, SeedError


class Shard(NamedTuple):
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: Where `--shard auto` finds i and N: Slurm job arrays, then torchrun-style launchers.
ARRAY_VARIABLES = (
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ("RANK", "WORLD_SIZE"),
)


def shard_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """`--shard auto`: i/N of this task of a Slurm array (ids taken from
    SLURM_ARRAY_TASK_MIN, so `--array=1-8` works) or of a RANK / WORLD_SIZE launch."""
    env = os.environ if environ is None else environ
    for index_var, count_var in ARRAY_VARIABLES:
        if index_var in env and count_var in env:
            try:
                index, count = int(env[index_var]), int(env[count_var])
                if index_var.startswith("SLURM"):
                    index -= int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                    step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
                    index //= step
            except ValueError:
                raise UserError(
                    f"--shard auto: {index_var}={env[index_var]!r} and {count_var}="
                    f"{env[count_var]!r} are not whole numbers"
                ) from None
            if not 0 <= index < count:
                raise UserError(
                    f"--shard auto: {index_var} gives task {index}, not within 0..{count - 1} "
                    f"({count_var}={count})"
                )
            return f"{index}/{count}"
    names = " or ".join(f"{i}/{c}" for i, c in ARRAY_VARIABLES)
    raise UserError(f"--shard auto: none of {names} is set; give --shard i/N")


def parse_shard(spec: str | None) -> Shard | None:
    if not spec:
        return None
    if spec == "auto":
        spec = shard_from_environment()
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
