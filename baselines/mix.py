"""General (instruction-free) training pairs mixed into an arm at a share of a fixed row
budget: the paper's head-to-head arms at matched data budgets.

`--mix SOURCE:SHARE` with `--rows N`: N training rows in all, round(SHARE x N) of them
general triples (query, positive, negative; MS MARCO triples, say) and the rest the arm's
own rows (`orig`: view a of that many pairs; `dv`, `dv-add`: both views of half as many
pairs). Without `--rows` the budget is the arm's own row count, so `--mix` swaps a share
of the arm's rows for general ones. A general row is a group of one for the batch
sampler, which keeps a pair's two views in one batch whatever the mix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from baselines.pairs import TrainPair, View, arm_groups
from dvsynth.errors import UserError

FILE_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
ANCHOR_COLUMNS = ("anchor", "query")


@dataclass(frozen=True)
class Mix:
    source: str
    share: float
    config: str | None = None
    split: str = "train"


def parse_mix(text: str, config: str | None = None, split: str = "train") -> Mix:
    source, sep, share = text.rpartition(":")
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not sep or not source or not 0 < value < 1:
        raise UserError(f"--mix {text}: expected FILE_OR_HUB_ID:SHARE with 0 < SHARE < 1")
    return Mix(source, value, config, split)


def _load(mix: Mix):
    import datasets

    path = Path(mix.source)
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # stderr is for this script's one-line messages
    try:
        if path.suffix.lower() in FILE_BUILDERS:
            if not path.is_file():
                raise UserError(f"--mix {mix.source}: no such file")
            builder = FILE_BUILDERS[path.suffix.lower()]
            extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            return datasets.load_dataset(builder, data_files=str(path), split="train", **extra)
        return datasets.load_dataset(mix.source, mix.config, split=mix.split)
    except UserError:
        raise
    except Exception as exc:  # unknown id, no such config or split, unreadable file
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(
            f"--mix {mix.source}: cannot load ({type(exc).__name__}: {first})"
        ) from None
    finally:
        if shown:
            datasets.enable_progress_bars()


def load_general(mix: Mix, count: int, seed: int = 0) -> list[View]:
    """`count` general triples drawn at random (seeded) from the source; one line naming
    the source when it lacks a column, holds too few rows, or has an empty text."""
    if count == 0:
        return []
    rows = _load(mix)
    columns = set(rows.column_names)
    anchor = next((c for c in ANCHOR_COLUMNS if c in columns), None)
    if anchor is None or not {"positive", "negative"} <= columns:
        raise UserError(
            f"--mix {mix.source}: needs columns anchor (or query), positive, negative; "
            f"has {sorted(columns)}"
        )
    if len(rows) < count:
        raise UserError(
            f"--mix {mix.source}: {count} general rows wanted, the source has {len(rows)}"
        )
    picked = sorted(random.Random(seed).sample(range(len(rows)), count))
    views = []
    for i, row in zip(picked, rows.select(picked), strict=True):
        texts = [row[anchor], row["positive"], row["negative"]]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise UserError(f"--mix {mix.source}: row {i} has an empty or non-text field")
        views.append(View(*texts))
    return views


def split_budget(arm: str, pairs: int, rows: int | None, share: float) -> tuple[int, int]:
    """(instruction rows, general rows) for the budget; the arm's rows come in whole
    pairs for dv and dv-add, and general rows take what is left, so the total is exact."""
    natural = {"orig": pairs, "dv": 2 * (pairs // 2), "dv-add": 2 * pairs}[arm]
    budget = natural if rows is None else rows
    if budget < 1:
        raise UserError("--rows: at least 1")
    instruction = budget - round(share * budget)
    if arm != "orig":
        instruction -= instruction % 2
    most = pairs if arm == "orig" else 2 * pairs
    if instruction > most:
        raise UserError(
            f"--rows {budget}: the {arm} arm needs {instruction} instruction rows, "
            f"the data gives at most {most}"
        )
    return instruction, budget - instruction


def budget_groups(
    pairs: Sequence[TrainPair],
    arm: str,
    seed: int = 0,
    rows: int | None = None,
    mix: Mix | None = None,
) -> tuple[list[list[View]], dict]:
    """The arm's groups within the budget plus the general rows, and the counts for the
    training record. Without --rows and --mix: the arm exactly as `arm_groups` gives it."""
    if rows is None and mix is None:
        groups = arm_groups(pairs, arm, seed)
        return groups, {"instruction_rows": sum(map(len, groups)), "general_rows": 0}
    instruction, general = split_budget(arm, len(pairs), rows, mix.share if mix else 0.0)
    if mix is None and general:
        raise UserError(
            f"--rows {rows}: the {arm} arm gives {instruction} of them (whole pairs); "
            f"add --mix for the other {general}"
        )
    if arm == "orig":
        groups = [[p.a] for p in pairs[:instruction]]
    else:
        chosen = list(pairs)
        if arm == "dv":
            random.Random(seed).shuffle(chosen)
        groups = [[p.a, p.b] for p in chosen[: instruction // 2]]
    groups += [[view] for view in load_general(mix, general, seed)] if mix else []
    return groups, {"instruction_rows": instruction, "general_rows": general}
