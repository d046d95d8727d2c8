"""Training pairs for the baselines, and the three arms built from them.

A pair is both views of one dual-view record: view a (query + instruction_a, doc_a,
doc_b) and view b (query + instruction_b, doc_b, doc_a). Sources: a `dvsynth export`
folder or a Hub dataset id (its `triplets` config), or a gold-set JSONL file.

Arms, for N pairs (the paper's names in brackets):
- `orig`: view a of every pair, N rows [Ins-orig];
- `dv`: both views of half the pairs, N rows: the same budget, half the original rows
  replaced by the complementary views of the pairs kept [Ins-DV];
- `dv-add`: both views of every pair, 2N rows [All-DV].
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dvsynth.errors import UserError
from dvsynth.evaluate.gold import GoldPair, read_gold
from dvsynth.records import doc_text

ARMS = ("orig", "dv", "dv-add")


@dataclass(frozen=True)
class View:
    anchor: str
    positive: str
    negative: str


@dataclass(frozen=True)
class TrainPair:
    pair_id: str
    a: View
    b: View


def pair_from_gold(gold: GoldPair) -> TrainPair:
    """The gold pair's two views, from `DualView.views()` as `dvsynth export` writes them."""
    row = gold.as_dual_view()
    a, b = (
        View(view.anchor(row.query), doc_text(view.positive), doc_text(view.negative))
        for view in row.views()
    )
    return TrainPair(row.pair_id, a, b)


def pairs_from_triplets(rows: Iterable[dict], source: str) -> list[TrainPair]:
    """Rows of the `triplets` config (view a then view b per pair_id) -> pairs.

    A pair missing one of its views is an error naming the source and pair: the export
    always writes both, so a gap means a truncated or hand-edited dataset."""
    views: dict[str, dict[str, View]] = {}
    for row in rows:
        views.setdefault(row["pair_id"], {})[row["view"]] = View(
            row["anchor"], row["positive"], row["negative"]
        )
    pairs = []
    for pair_id, by_view in views.items():
        if set(by_view) != {"a", "b"}:
            raise UserError(f"{source}: pair {pair_id} lacks view a or b in the triplets config")
        pairs.append(TrainPair(pair_id, by_view["a"], by_view["b"]))
    return pairs


def load_pairs(source: str, split: str = "train", revision: str | None = None) -> list[TrainPair]:
    """Pairs from a gold JSONL file, a `dvsynth export` folder, or a Hub dataset id (at
    `revision`: a version tag such as v1.0.0 pins the data)."""
    path = Path(source)
    if path.suffix == ".jsonl" or path.is_file():
        return [pair_from_gold(g) for g in read_gold(path)]
    import datasets

    try:
        rows = datasets.load_dataset(str(source), "triplets", split=split, revision=revision)
    except Exception as exc:  # a missing folder, an unknown Hub id, no triplets config
        where = "folder" if path.exists() else "dataset"
        raise UserError(
            f"--data {source}: cannot load the {where}'s triplets config, split {split} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    missing = {"anchor", "positive", "negative", "pair_id", "view"} - set(rows.column_names)
    if missing:
        raise UserError(f"--data {source}: triplets config lacks columns {sorted(missing)}")
    return pairs_from_triplets(rows, source)


def arm_groups(pairs: Sequence[TrainPair], arm: str, seed: int = 0) -> list[list[View]]:
    """The arm's training rows, grouped: both views of a pair form one group, which the
    batch sampler keeps in one batch; an `orig` row is a group of one."""
    if arm == "orig":
        return [[p.a] for p in pairs]
    if arm == "dv-add":
        return [[p.a, p.b] for p in pairs]
    if arm == "dv":
        chosen = list(pairs)
        random.Random(seed).shuffle(chosen)
        return [[p.a, p.b] for p in chosen[: len(pairs) // 2]]
    raise UserError(f"--arm {arm}: choose one of {', '.join(ARMS)}")
