"""A batch sampler that keeps both views of a pair in one batch and never puts the same
text in a batch twice across pairs.

With in-batch negatives (MultipleNegativesRankingLoss), the two views of a pair are
each other's hardest contrast: the same query and documents, labels swapped. Keeping
them in one batch is the paper's setup. A text repeated across pairs would be a false
in-batch negative, so a group whose texts meet the batch's waits for a later batch.
Within a pair the documents do repeat by design (doc_a is view a's positive and view
b's negative); `PairAwareMNRLoss` masks those copies.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence

from sentence_transformers.base.sampler import DefaultBatchSampler


class _Batch:
    def __init__(self, size: int) -> None:
        self.size, self.rows, self.texts = size, [], set()

    def take(self, rows: Sequence[int], texts: frozenset) -> bool:
        """Add the group if it fits and shares no text with the batch."""
        if len(self.rows) + len(rows) > self.size or not self.texts.isdisjoint(texts):
            return False
        self.rows.extend(rows)
        self.texts.update(texts)
        return True


def plan_batches(
    groups: Sequence[Sequence[int]],
    texts: Sequence[frozenset],
    batch_size: int,
    drop_last: bool,
    seed: int,
    lookahead: int = 1024,
) -> list[list[int]]:
    """Shuffle the groups, then fill batches greedily. A group that does not fit (too big
    for the room left, or sharing a text with the batch) waits, first in line for the
    next batch. At most `lookahead` new groups are passed over for one batch, so a batch
    that cannot be filled closes short instead of scanning the whole epoch: linear time.
    `drop_last` drops only a short final batch."""
    if any(len(group) > batch_size for group in groups):
        raise ValueError(f"batch size {batch_size} is smaller than a pair's two views")
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    queue = deque(order)
    waiting: list[int] = []
    batches: list[list[int]] = []
    while queue or waiting:
        batch = _Batch(batch_size)
        passed = [g for g in waiting if not batch.take(groups[g], texts[g])]
        misses = 0
        while queue and len(batch.rows) < batch_size and misses < lookahead:
            g = queue.popleft()
            if not batch.take(groups[g], texts[g]):
                passed.append(g)
                misses += 1
        waiting = passed
        batches.append(batch.rows)
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class DualViewBatchSampler(DefaultBatchSampler):
    """`groups` lists dataset row indices that must share a batch (a pair's two views).

    Pass it to the trainer as `functools.partial(DualViewBatchSampler, groups=...)`:
    sentence-transformers calls the partial with the dataset and its batch settings."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator=None,
        seed: int = 0,
        *,
        groups: Sequence[Sequence[int]],
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        columns = [c for c in dataset.column_names if c not in (valid_label_columns or [])]
        row_texts: list[tuple[int, ...]] = []  # hashes: 8 bytes a text, not the text
        for chunk in dataset.select_columns(columns).iter(batch_size=10_000):
            row_texts.extend(zip(*(map(hash, chunk[c]) for c in columns), strict=True))
        self.groups = [list(group) for group in groups]
        self.texts = [frozenset(h for i in group for h in row_texts[i]) for group in groups]
        self._plans: dict[int, list[list[int]]] = {}

    def _plan(self) -> list[list[int]]:
        if self.epoch not in self._plans:
            self._plans = {
                self.epoch: plan_batches(
                    self.groups, self.texts, self.batch_size, self.drop_last, self.seed + self.epoch
                )
            }
        return self._plans[self.epoch]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._plan()

    def __len__(self) -> int:
        return len(self._plan())
