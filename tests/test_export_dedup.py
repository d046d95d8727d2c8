"""Export dedups over exactly the runs it exports, and its card counts what it holds."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import generate_args, validate_args, write_jsonl

#: The fake's instructions differ in a few characters: only exact copies are duplicates.
NEAR = ("--near-threshold", "99.5")


def _seed(i: int, prefix: str = "s") -> dict:
    return {
        "id": f"{prefix}{i:02d}",
        "query": f"dedup query {i}",
        "positive": f"kwp{i} passage about topic {i}",
        "negative": f"kwn{i} other passage {i}",
    }


def _table(out: Path, config: str) -> list[dict]:
    return [
        row
        for f in sorted((out / config).glob("*.parquet"))
        for row in pq.read_table(f).to_pylist()
    ]


def _export(run_cli, out: Path, *runs: Path):
    result = run_cli("export", *map(str, runs), "--out", str(out), "--license", "mit")
    assert result.code == 0, result.err
    return _table(out, "pairs"), _table(out, "rejected"), (out / "README.md").read_text()


def _texts(pairs: list[dict]) -> list[tuple]:
    return [(p["query"], p["instruction_a"], p["instruction_b"]) for p in pairs]


def _card_modes(card: str) -> int:
    found = re.search(r"Pairs by mode: ([\d,]+) ", card)
    assert found, card
    return int(found.group(1).replace(",", ""))


def test_runs_validated_apart_are_deduplicated_at_export(run_cli, fake_server, tmp_path):
    """`validate rE`, `validate rE5` (the same seeds under new ids), `export rE rE5`."""
    one = write_jsonl(tmp_path / "e.jsonl", [_seed(i, "e") for i in range(12)])
    two = write_jsonl(tmp_path / "e5.jsonl", [_seed(i, "f") for i in range(12)])
    runs = [tmp_path / "rE", tmp_path / "rE5"]
    for seeds, run in zip((one, two), runs, strict=True):
        assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
        assert run_cli(*validate_args(run, fake_server, *NEAR)).code == 0
    alone, _, _ = _export(run_cli, tmp_path / "alone", runs[0])
    pairs, rejected, card = _export(run_cli, tmp_path / "both", *runs)
    assert len(pairs) == len(alone) > 0
    assert len(set(_texts(pairs))) == len(pairs)  # every exported pair is distinct
    dropped = [r for r in rejected if any(x.startswith("dedup:exact:") for x in r["reasons"])]
    assert len(dropped) == len(alone) and {r["stage"] for r in dropped} == {"dedup"}
    survivors = {p["pair_id"] for p in pairs}
    assert all(r["reasons"][-1].split(":", 2)[2] in survivors for r in dropped)
    assert _card_modes(card) == len(pairs)
    assert "exact and near-duplicate removal" in card


def test_revalidating_one_shard_keeps_the_dedup_of_the_export(run_cli, fake_server, tmp_path):
    """Shards validated together, then one shard again alone: the export is unchanged."""
    rows = [_seed(i) for i in range(24)]
    rows += [{**_seed(i), "id": f"t{i:02d}"} for i in range(0, 24, 2)]  # 12 duplicates
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        assert run_cli(*generate_args(fake_server, seeds, shard, "--shard", f"{i}/2")).code == 0
    together_args = validate_args(shards[0], fake_server, *NEAR)
    together_args[1:2] = map(str, shards)
    assert run_cli(*together_args).code == 0
    together, _, _ = _export(run_cli, tmp_path / "together", *shards)
    assert run_cli(*validate_args(shards[0], fake_server, *NEAR)).code == 0  # shard 0 alone
    pairs, rejected, card = _export(run_cli, tmp_path / "after", *shards)
    assert sorted(p["pair_id"] for p in pairs) == sorted(p["pair_id"] for p in together)
    assert len(set(_texts(pairs))) == len(pairs) < 36
    assert _card_modes(card) == len(pairs)
    # The same runs export the same bytes, dedup included.
    again, _, _ = _export(run_cli, tmp_path / "again", *shards)
    assert again == pairs


def test_runs_with_different_dedup_settings_are_refused(run_cli, fake_server, tmp_path):
    seeds = write_jsonl(tmp_path / "s.jsonl", [_seed(i) for i in range(6)])
    runs = [tmp_path / "a", tmp_path / "b"]
    for run, extra in zip(
        runs, (["--near-threshold", "99.5"], ["--near-threshold", "99"]), strict=True
    ):
        assert run_cli(*generate_args(fake_server, seeds, run)).code == 0
        assert run_cli(*validate_args(run, fake_server, *extra)).code == 0
    result = run_cli("export", *map(str, runs), "--out", str(tmp_path / "o"), "--license", "mit")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "dvsynth validate" in result.err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """Kept, judge-rejected and duplicate rows in one run."""
    import subprocess
    import sys

    from dvsynth.testing import FakeLLMServer

    root = tmp_path_factory.mktemp("card")
    rows = []
    for i in range(30):
        row = _seed(i % 24)
        row["id"] = f"s{i:02d}"
        if i % 10 == 3:
            row["negative"] += f" kwp{i % 24}"  # the judge rejects it
        rows.append(row)
    seeds = write_jsonl(root / "seeds.jsonl", rows)
    run = root / "run"
    with FakeLLMServer() as server:
        cli = [sys.executable, "-m", "dvsynth.cli"]
        assert subprocess.run([*cli, *generate_args(server, seeds, run)]).returncode == 0
        assert subprocess.run([*cli, *validate_args(run, server, *NEAR)]).returncode == 0
    return run


def test_card_counts_are_those_of_the_export(run_cli, mixed_run, tmp_path):
    pairs, rejected, card = _export(run_cli, tmp_path / "o", mixed_run)
    assert rejected and pairs
    assert _card_modes(card) == len(pairs)
    stages = dict(re.findall(r"^\| (\w+) \| (\d+) \| \d+ \|", card, re.MULTILINE))
    assert int(stages["generate"]) == len(pairs) + len(rejected)
    reasons = dict(re.findall(r"^\| `([\w:]+)` \| (\d+) \|", card, re.MULTILINE))
    assert sum(map(int, reasons.values())) >= len(rejected)
    assert "`rejected`" in card.split("Rejections by reason")[1].splitlines()[0]
