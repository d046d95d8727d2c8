"""train.py --rows N --mix SOURCE:SHARE: general triples at a share of a fixed budget
(baselines/mix.py), a pair's two views in one batch whatever the mix, and one-line
errors for a bad --mix."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from baselines import train as train_script
from baselines.mix import Mix, budget_groups, parse_mix, split_budget
from baselines.pairs import arm_groups, pair_from_gold
from baselines.sampler import DualViewBatchSampler
from dvsynth.errors import UserError
from dvsynth.evaluate.gold import read_gold

ROOT = Path(__file__).resolve().parents[1]
MSMARCO_GOLD = ROOT / "benchmarks" / "gold" / "msmarco-gold.jsonl"


@pytest.fixture(scope="module")
def pairs():
    return [pair_from_gold(g) for g in read_gold(MSMARCO_GOLD)]


def write_general(path: Path, pairs, count: int, seed: int = 0) -> Path:
    """General triples over the same passages as the pairs, so that their texts meet
    the pairs' in batches (the sampler must keep them apart)."""
    rng = random.Random(seed)
    docs = [p.a.positive for p in pairs] + [p.b.positive for p in pairs]
    rows = []
    for i in range(count):
        positive, negative = rng.sample(docs, 2)
        rows.append({"query": f"general query {i}", "positive": positive, "negative": negative})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("arm", ["orig", "dv", "dv-add"])
@pytest.mark.parametrize("share", [0.1, 0.25, 0.5, 0.9])
def test_the_budget_is_exact_and_split_at_the_share(tmp_path, pairs, arm, share):
    general = write_general(tmp_path / "general.jsonl", pairs, 200)
    mix = Mix(str(general), share)
    for rows in (40, 41, 100):
        groups, counts = budget_groups(pairs, arm, 0, rows, mix)
        assert sum(map(len, groups)) == rows == counts["instruction_rows"] + counts["general_rows"]
        assert abs(counts["general_rows"] - share * rows) <= 1.5  # whole pairs for dv arms
        singles = [g for g in groups if len(g) == 1]
        if arm == "orig":
            assert counts["general_rows"] == round(share * rows)
        else:
            assert 2 * sum(len(g) == 2 for g in groups) == counts["instruction_rows"]
            assert len(singles) == counts["general_rows"]
            for a, b in (g for g in groups if len(g) == 2):  # both views, labels swapped
                assert (a.positive, a.negative) == (b.negative, b.positive)


def test_without_a_mix_the_arms_are_unchanged(pairs):
    for arm in ("orig", "dv", "dv-add"):
        groups, counts = budget_groups(pairs, arm, 3)
        assert groups == arm_groups(pairs, arm, 3) and counts["general_rows"] == 0
    groups, _ = budget_groups(pairs, "orig", 0, rows=10)
    assert groups == [[p.a] for p in pairs[:10]]


@pytest.mark.parametrize("seed", range(12))
def test_the_sampler_keeps_a_pair_s_views_together_whatever_the_mix(tmp_path, pairs, seed):
    import datasets

    rng = random.Random(seed)
    share = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])
    arm = rng.choice(["dv", "dv-add"])
    rows = rng.randint(20, 2 * len(pairs))
    batch_size = rng.choice([2, 3, 4, 8, 16, 32])
    general = write_general(tmp_path / "general.jsonl", pairs, 400, seed)
    groups, _ = budget_groups(pairs, arm, seed, rows, Mix(str(general), share))
    columns, index_groups = train_script.rows_and_groups(groups)
    dataset = datasets.Dataset.from_dict(columns)
    sampler = DualViewBatchSampler(dataset, batch_size, False, seed=seed, groups=index_groups)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(rows))  # each row once
        where = {i: n for n, b in enumerate(batches) for i in b}
        for group in index_groups:
            assert len({where[i] for i in group}) == 1  # a pair's views share a batch
        for batch in batches:
            assert len(batch) <= batch_size
            owner: dict[str, int] = {}
            group_of = {i: g for g, members in enumerate(index_groups) for i in members}
            for i in batch:  # no text of one group repeated by another in the batch
                for column in ("anchor", "positive", "negative"):
                    assert owner.setdefault(columns[column][i], group_of[i]) == group_of[i]


def test_train_with_a_mix_records_the_split_and_trains(tmp_path, pairs):
    general = write_general(tmp_path / "general.jsonl", pairs, 50)
    out = tmp_path / "model"
    code = train_script.main(
        [
            "--data", str(MSMARCO_GOLD), "--arm", "dv", "--rows", "24",
            "--mix", f"{general}:0.25", "--out", str(out), "--batch-size", "8",
            "--max-seq-length", "32", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "dvsynth_train.json").read_text())
    assert (record["rows"], record["instruction_rows"], record["general_rows"]) == (24, 18, 6)
    assert record["mix"] == {
        "source": str(general),
        "share": 0.25,
        "config": None,
        "split": "train",
    }


def test_parse_mix_and_budget_errors(tmp_path, pairs):
    assert parse_mix("sentence-transformers/msmarco-bm25:0.5", "triplet") == Mix(
        "sentence-transformers/msmarco-bm25", 0.5, "triplet"
    )
    assert parse_mix("C:/data/triples.jsonl:0.2").source == "C:/data/triples.jsonl"
    with pytest.raises(UserError, match="the orig arm needs 300 instruction rows"):
        split_budget("orig", 165, 600, 0.5)
    with pytest.raises(UserError, match="add --mix for the other 1"):
        budget_groups(pairs, "dv", 0, rows=11)
    small = write_general(tmp_path / "small.jsonl", pairs, 3)
    with pytest.raises(UserError, match="10 general rows wanted, the source has 3"):
        budget_groups(pairs, "orig", 0, 20, Mix(str(small), 0.5))


@pytest.mark.parametrize(
    "mix, says",
    [
        ("triples.jsonl", "--mix triples.jsonl: expected FILE_OR_HUB_ID:SHARE"),
        ("triples.jsonl:1.5", "expected FILE_OR_HUB_ID:SHARE with 0 < SHARE < 1"),
        ("{missing}:0.5", "missing.jsonl: no such file"),
        ("{nocolumn}:0.5", "needs columns anchor (or query), positive, negative; has"),
    ],
)
def test_a_bad_mix_is_one_line_and_exit_2(tmp_path, mix, says):
    nocolumn = tmp_path / "nocolumn.jsonl"
    nocolumn.write_text('{"query": "q", "positive": "p"}\n')
    mix = mix.format(missing=tmp_path / "missing.jsonl", nocolumn=nocolumn)
    done = subprocess.run(
        [sys.executable, str(ROOT / "baselines" / "train.py"), "--data", str(MSMARCO_GOLD),
         "--out", str(tmp_path / "m"), "--rows", "20", "--mix", mix],
        capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and says in lines[0]
