"""--shard i/N splits a seed source deterministically; the shards' union is the whole run."""

from __future__ import annotations

import pytest

from dvsynth.errors import UserError
from dvsynth.runs.dirs import iter_runs
from dvsynth.seeds.shards import parse_shard, shard_of
from tests.conftest import read_rows, write_jsonl


def test_parse_shard_rejects_nonsense():
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None) is None
    for bad in ("4/4", "-1/2", "a/b", "3", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_shard_of_is_stable_and_spreads_keys():
    assert shard_of("seed-42", 8) == shard_of("seed-42", 8)
    buckets = [shard_of(f"seed-{i}", 4) for i in range(4000)]
    assert all(800 < buckets.count(b) < 1200 for b in range(4))


def test_shards_partition_the_run_and_read_back_as_one(fake_server, run_cli, tmp_path):
    rows = [
        {"id": f"s{i}", "query": f"shard query {i}", "positive": "p", "negative": "n"}
        for i in range(40)
    ]
    rows.insert(7, {"id": "bad", "query": "", "positive": "p", "negative": "n"})
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    base = [
        "generate",
        "--seeds",
        seeds,
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.api_base,
        "--quiet",
    ]
    assert run_cli(*base, "--out", tmp_path / "whole").code == 0
    for i in range(3):
        assert run_cli(*base, "--out", tmp_path / f"shard{i}", "--shard", f"{i}/3").code == 0
    shard_ids = [{r["seed_id"] for r in read_rows(tmp_path / f"shard{i}")} for i in range(3)]
    assert all(shard_ids) and sum(map(len, shard_ids)) == 40
    assert set.union(*shard_ids) == {f"s{i}" for i in range(40)}
    merged = list(iter_runs([tmp_path / f"shard{i}" for i in range(3)]))
    whole = {r["seed_id"]: r["instruction_b"] for r in read_rows(tmp_path / "whole")}
    assert {r.seed_id: r.instruction_b for r in merged} == whole
    # The same run twice is read once; a folder that is not a run is refused.
    assert len(list(iter_runs([tmp_path / "shard0", tmp_path / "shard0"]))) == len(shard_ids[0])
    with pytest.raises(UserError, match="not a dvsynth run directory"):
        list(iter_runs([tmp_path / "shard0", tmp_path]))
    bad = run_cli(*base, "--out", tmp_path / "x", "--shard", "3/3")
    assert bad.code == 2 and "--shard: '3/3'" in bad.err
